//! The documents generated from the code are in step with it: docs/metrics.md
//! is the table of metric families (src/export/metrics/families.rs) rendered
//! as markdown. The file is written by this test, never by hand:
//! `UPDATE_DOCS=1 cargo test --test docs`, then review the diff. And the
//! README links the two contracts, docs/metrics.md and
//! docs/report.schema.json, and only files that exist.

use std::path::Path;

use closewatch::export::metrics::families::{self, Family};

/// Text for one table cell: a `|` would end it.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn family_row(f: &Family) -> String {
    let labels: Vec<String> = f.labels.iter().map(|l| format!("`{l}`")).collect();
    format!(
        "| `{}` | {} | {} | {} |\n",
        f.name,
        f.kind.type_name(),
        labels.join(", "),
        cell(f.help)
    )
}

/// docs/metrics.md: every family, in the table's order.
fn metrics_md() -> String {
    let mut md = String::from(
        "<!-- Generated from src/export/metrics/families.rs by \
         `UPDATE_DOCS=1 cargo test --test docs`: change the table there, never this file. -->\n\
         \n\
         # Metrics\n\
         \n\
         Every metric family the closewatch agent serves on `/metrics` (Prometheus \
         text format 0.0.4), in the order of the table that declares them, \
         [`src/export/metrics/families.rs`](../src/export/metrics/families.rs). \
         The help is the `# HELP` line the agent sends. Series labelled `pid`, \
         `comm` and `unit` exist only for the processes worth a look, at most \
         `--max-processes` of them ([README: Metrics](../README.md#metrics)).\n\
         \n\
         | metric | type | labels | help |\n\
         |---|---|---|---|\n",
    );
    for f in families::ALL {
        md.push_str(&family_row(f));
    }
    md
}

/// Compares with the file at `name`, or rewrites it under UPDATE_DOCS=1.
fn generated(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, actual).expect("write the document");
        eprintln!("rewrote {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (generate it with UPDATE_DOCS=1 cargo test --test docs)",
            path.display()
        )
    });
    if expected != actual {
        let expected_lines: Vec<&str> = expected.lines().collect();
        let actual_lines: Vec<&str> = actual.lines().collect();
        let diff: Vec<String> = (0..expected_lines.len().max(actual_lines.len()))
            .filter_map(|i| {
                let (e, a) = (expected_lines.get(i), actual_lines.get(i));
                (e != a).then(|| {
                    format!(
                        "line {}:\n  file: {}\n  code: {}",
                        i + 1,
                        e.unwrap_or(&"(none)"),
                        a.unwrap_or(&"(none)")
                    )
                })
            })
            .take(10)
            .collect();
        panic!(
            "{} is out of step with the code it is generated from:\n{}\n\
             Regenerate it, never edit it by hand: UPDATE_DOCS=1 cargo test --test docs",
            path.display(),
            diff.join("\n")
        );
    }
}

#[test]
fn metrics_md_is_the_table_of_metric_families() {
    generated("docs/metrics.md", &metrics_md());
}

#[test]
fn every_family_is_one_row_of_metrics_md() {
    let md = metrics_md();
    for f in families::ALL {
        let rows = md
            .lines()
            .filter(|l| l.starts_with(&format!("| `{}` |", f.name)))
            .count();
        assert_eq!(rows, 1, "{}", f.name);
    }
}

/// The relative link targets of a markdown text: `](path)` or
/// `](path#anchor)`, not URLs nor anchors of the page itself.
fn relative_links(md: &str) -> Vec<&str> {
    md.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target))
        .map(|target| target.split_once('#').map_or(target, |(path, _)| path))
        .filter(|t| !t.is_empty() && !t.contains("://"))
        .collect()
}

#[test]
fn the_readme_links_both_contracts_and_only_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let links = relative_links(&readme);
    for doc in ["docs/report.schema.json", "docs/metrics.md"] {
        assert!(links.contains(&doc), "README.md does not link {doc}");
    }
    for link in links {
        assert!(
            root.join(link).exists(),
            "README.md links {link}, which does not exist"
        );
    }
}
