//! docs/report.schema.json, the JSON report's contract: every report a test
//! parses is validated against it, so a field the report gains without the
//! schema, or a type that changes, fails the test that saw it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json")
}

/// The schema, read once per test binary.
pub fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = path();
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
    })
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(schema())
            .unwrap_or_else(|e| panic!("{} is not a valid JSON Schema: {e}", path().display()))
    })
}

/// Every way `report` breaks the schema, one line each: where, and what.
/// Empty when it matches.
pub fn violations(report: &Value) -> Vec<String> {
    validator()
        .iter_errors(report)
        .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
        .collect()
}

/// Violations listed in a failure; one field wrong in every process of a
/// host-wide report would otherwise fill the screen.
const SHOWN: usize = 20;

/// Panics, listing the violations, unless `report` matches the schema.
/// `context` is shown with them (the run's stderr).
pub fn assert_valid(report: &Value, context: &str) {
    let violations = violations(report);
    if violations.is_empty() {
        return;
    }
    let more = match violations.len().saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!("\n  … and {n} more"),
    };
    panic!(
        "the JSON report does not match docs/report.schema.json:\n  {}{more}\n\
         (a field added to or changed in src/report/json.rs must be described \
         in the schema)\n{context}",
        violations[..violations.len().min(SHOWN)].join("\n  ")
    );
}
