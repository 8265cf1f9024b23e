//! CIDRs as rules and bans take them: an error or a network that reads
//! back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match tollgate::policy::parse_cidr(s) {
        Ok(net) => {
            let again = tollgate::policy::parse_cidr(&net.to_string())
                .unwrap_or_else(|e| panic!("{net} (from {s:?}) does not read back: {e}"));
            assert_eq!(again, net, "{s:?}");
        }
        Err(e) => assert!(!e.is_empty(), "an empty error for {s:?}"),
    }
});
