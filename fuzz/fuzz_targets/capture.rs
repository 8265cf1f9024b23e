//! The capture reader (pcap and pcapng) on any bytes: frames or an error
//! naming what is wrong, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut frames = 0usize;
    let result = tollgate::capture::read_from("fuzz.pcap", data, |f| {
        frames += 1;
        assert!(f.data.len() <= 1 << 20, "a frame of {} bytes", f.data.len());
        Ok(())
    });
    if let Ok(n) = result {
        assert_eq!(n, frames);
    }
});
