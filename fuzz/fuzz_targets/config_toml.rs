//! The config file: TOML text → file config → validated settings; settings
//! that pass must render (as `--check-config` prints them) to a config that
//! loads back to the same settings.
#![no_main]

use std::path::{Path, PathBuf};

use closewatch::cli::Cli;
use closewatch::config;
use libfuzzer_sys::fuzz_target;

const PATH: &str = "/etc/closewatch/closewatch.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = config::parse_str(text, Path::new(PATH)) else {
        return;
    };
    let Ok(settings) = config::merge(file, Some(PathBuf::from(PATH)), &Cli::default()) else {
        return;
    };
    let rendered = config::render(&settings);
    let again = config::parse_str(&rendered, Path::new(PATH))
        .and_then(|file| config::merge(file, Some(PathBuf::from(PATH)), &Cli::default()));
    match again {
        Ok(again) => assert_eq!(again, settings, "{rendered}"),
        Err(e) => panic!("rendered settings do not load: {e}\n{rendered}"),
    }
});
