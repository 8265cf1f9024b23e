//! A control-socket request line, as a client could send it: a request
//! or an error that says what to send instead, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = tollgate::control::parse_request(line) {
        assert!(!e.is_empty(), "an empty error for {line:?}");
    }
});
