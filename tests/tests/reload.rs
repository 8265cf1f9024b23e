//! Policy swaps under live traffic: while four sources send (one of them
//! denied by the config, one IPv6), a client of the control socket adds
//! and removes a rule over and over, every few milliseconds, each change
//! a swap of the whole kernel policy. Afterwards every source's count is
//! exactly what it sent, the denied source had every packet dropped (no
//! moment without its rule), and the others none.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use lab::daemon::Daemon;
use tollgate::control::{Client, Request};

const SOURCES: [&str; 4] = ["192.0.2.21", "192.0.2.22", "192.0.2.40", "2001:db8::23"];
/// `lab::daemon::config`'s own deny rule.
const DENIED: &str = "192.0.2.40";

#[test]
fn policy_swaps_every_few_milliseconds_leave_nothing_unenforced_and_every_count_exact() {
    let d = Daemon::new(
        "rld",
        &SOURCES,
        "[default_limit]\npackets_per_second = 100000\nburst_packets = 100000\n",
    );
    let sending = AtomicBool::new(true);
    let (d, sending) = (&d, &sending);
    let (sent, swaps) = std::thread::scope(|s| {
        let senders: Vec<_> = SOURCES
            .iter()
            .map(|src| s.spawn(move || d.send(src, 6_000, 2_000)))
            .collect();
        let swapper = s.spawn(move || {
            let mut c = Client::connect(&d.socket()).expect("the control socket");
            let mut swaps = 0u64;
            let start = Instant::now();
            while sending.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
                let add = Request::RulesAdd {
                    cidr: "198.51.100.0/24".into(),
                    action: "deny".into(),
                    limit: Default::default(),
                    monitor: false,
                    comment: None,
                    force: false,
                };
                let remove = Request::RulesRemove {
                    cidr: "198.51.100.0/24".into(),
                };
                for r in [add, remove] {
                    let _: serde_json::Value = c.call(r).expect("a rule change");
                    swaps += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            swaps
        });
        let sent: Vec<u64> = senders.into_iter().map(|h| h.join().unwrap()).collect();
        sending.store(false, Ordering::Relaxed);
        (sent, swapper.join().unwrap())
    });
    eprintln!(
        "{swaps} policy swaps while {} packets were sent",
        sent.iter().sum::<u64>()
    );
    assert!(swaps >= 200, "only {swaps} policy swaps during the traffic");
    for (src, n) in SOURCES.iter().zip(&sent) {
        // IPv6 sources are /64s by default, and `top` shows them so.
        let shown = if src.contains(':') {
            "2001:db8::/64"
        } else {
            src
        };
        let (packets, dropped) = d.source(shown, *n);
        assert_eq!(packets, *n, "{src}: every packet counted");
        let want = if *src == DENIED { *n } else { 0 };
        assert_eq!(
            dropped, want,
            "{src}: {dropped} of {n} dropped across {swaps} policy swaps"
        );
    }
}
