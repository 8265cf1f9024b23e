//! The config parser on any text: an error or a config, never a panic;
//! a config it accepts compiles to a policy.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match tollgate::config::parse(Path::new("fuzz.toml"), text, false) {
        Ok(config) => {
            let _ = config.policy(&[]);
        }
        Err(e) => assert!(!e.to_string().is_empty(), "an error that says nothing"),
    }
});
