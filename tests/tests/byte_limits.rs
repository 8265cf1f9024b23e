//! Byte buckets live: a source sending large datagrams meets its byte
//! limit long before its packet limit, is dropped under
//! `rate_limited_bytes`, and passes no more bytes than the bucket allows;
//! a source of small datagrams at the same packet rate is untouched.

use std::time::{Duration, Instant};

use lab::{daemon::Daemon, traffic};

const BIG: &str = "192.0.2.51";
const SMALL: &str = "192.0.2.52";
/// 100 kB/s with a 20 kB burst, and packets enough not to matter.
const LIMIT: &str = "[default_limit]\npackets_per_second = 100000\nburst_packets = 100000\nbytes_per_second = \"100kB\"\nburst_bytes = \"20kB\"\n";

#[test]
fn large_datagrams_meet_the_byte_limit_and_small_ones_do_not() {
    let d = Daemon::new("bytes", &[BIG, SMALL], LIMIT);
    let send = |src: &str, payload: usize| {
        let began = Instant::now();
        let sent = traffic::udp(
            d.lab.client(),
            src.parse().unwrap(),
            d.lab.server_v4(),
            9,
            2_000,
            1_000,
            payload,
            Duration::from_secs(20),
        )
        .expect("sending")
        .packets;
        (sent, began.elapsed().as_secs_f64())
    };
    // 2,000 frames of 1,042 bytes in about 2 s: 1 MB/s, ten times the rate.
    let (sent, secs) = send(BIG, 1_000);
    let (counted, dropped) = d.source(BIG, sent);
    assert_eq!(counted, sent, "every packet counted");
    let frame = 1_000 + 8 + 20 + 14;
    let passed_bytes = (sent - dropped) as f64 * frame as f64;
    let allowed = 20_000.0 + 100_000.0 * (secs + 0.01);
    assert!(
        dropped > sent / 2 && passed_bytes <= allowed + frame as f64,
        "{dropped} of {sent} dropped; {passed_bytes} bytes passed in {secs:.2} s, allowed {allowed}"
    );
    let status = d.json(&["status"]);
    assert_eq!(
        status["by_reason"]["rate_limited_bytes"].as_u64(),
        Some(dropped),
        "dropped under the byte limit: {status}"
    );
    // 2,000 frames of 64 bytes at the same rate: 64 kB/s, under it.
    let (sent, _) = send(SMALL, 10);
    assert_eq!(d.source(SMALL, sent), (sent, 0));
}
