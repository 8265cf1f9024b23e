//! Rates, sizes and durations as operators write them: a value or an
//! error that says what is wrong, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::units;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for result in [
        units::count(s).map(drop),
        units::bytes(s).map(drop),
        units::duration(s).map(drop),
    ] {
        if let Err(e) = result {
            assert!(!e.is_empty(), "an empty error for {s:?}");
        }
    }
});
