//! `tollgate explain ADDR` against a running daemon on live traffic, for
//! an allowed, a limited (its bucket drained), a banned, a denied, a
//! management and an unknown address, over IPv4 and IPv6: the rule, ban,
//! limit, bucket level and counters it reports, and what it says the next
//! packet gets, checked against what the kernel then does to one.

use std::net::IpAddr;

use lab::{
    Lab,
    daemon::{Daemon, config},
};
use serde_json::Value;

/// One family's addresses, by what applies to them.
struct Family {
    allowed: &'static str,
    denied: &'static str,
    limited: &'static str,
    banned: &'static str,
    unknown: &'static str,
    /// The prefix length the rules are written with.
    host: u8,
}

const V4: Family = Family {
    allowed: "192.0.2.10",
    // The lab config's own deny rule.
    denied: "192.0.2.40",
    limited: "192.0.2.30",
    banned: "192.0.2.45",
    unknown: "192.0.2.99",
    host: 32,
};
const V6: Family = Family {
    allowed: "2001:db8::10",
    denied: "2001:db8::40",
    limited: "2001:db8::30",
    banned: "2001:db8::45",
    unknown: "2001:db8::99",
    host: 128,
};

fn next(e: &Value) -> (&str, &str) {
    (
        e["next_packet"]["verdict"].as_str().unwrap(),
        e["next_packet"]["reason"].as_str().unwrap(),
    )
}

#[test]
fn explain_says_what_applies_and_what_the_next_packet_gets() {
    let addrs: Vec<IpAddr> = [&V4, &V6]
        .iter()
        .flat_map(|f| [f.allowed, f.denied, f.limited, f.banned])
        .map(|a| a.parse().unwrap())
        .collect();
    let lab = Lab::new("xpl", &addrs).expect("building the lab");
    let d = Daemon::in_lab(lab, "xpl", |dir| {
        config(dir, "").replace("[sources]\n", "[sources]\nipv6_prefix = 128\n")
    });
    d.json(&[
        "rules",
        "add",
        &format!("{}/128", V6.denied),
        "--action",
        "deny",
    ]);

    for f in [&V4, &V6] {
        let cidr = |a: &str| format!("{a}/{}", f.host);
        d.json(&[
            "rules",
            "add",
            &cidr(f.allowed),
            "--action",
            "allow",
            "--comment",
            "partner",
        ]);
        d.json(&[
            "rules",
            "add",
            &cidr(f.limited),
            "--action",
            "limit",
            "--packets-per-second",
            "1",
            "--burst-packets",
            "5",
        ]);
        d.json(&[
            "ban",
            "add",
            f.banned,
            "--ttl",
            "10m",
            "--reason",
            "explain test",
        ]);
        for a in [f.allowed, f.denied, f.limited, f.banned] {
            let sent = d.send(a, 50, 1_000);
            d.source(a, sent);
        }

        let e = d.json(&["explain", f.allowed]);
        assert_eq!(next(&e), ("pass", "allow"), "{e}");
        assert_eq!(e["rule"]["action"], "allow", "{e}");
        assert_eq!(e["rule"]["comment"], "partner", "{e}");
        assert_eq!(e["tracked"]["dropped"], 0, "{e}");

        let e = d.json(&["explain", f.denied]);
        assert_eq!(next(&e), ("drop", "deny"), "{e}");
        assert_eq!(e["rule"]["cidr"], cidr(f.denied), "{e}");
        assert_eq!(e["tracked"]["dropped"], e["tracked"]["packets"], "{e}");

        // 50 packets against a burst of 5 at 1/s: the bucket is drained,
        // and what explain says of the next packet follows its level.
        let e = d.json(&["explain", f.limited]);
        assert_eq!(e["limit"]["packets_per_second"], 1, "{e}");
        let t = &e["tracked"];
        assert_eq!(t["burst_packets"], 5, "{e}");
        let tokens = t["packet_tokens"].as_u64().expect("a packet level");
        assert!(tokens < 5, "drained: {e}");
        assert!(t["dropped"].as_u64().unwrap() >= 40, "{e}");
        let want = if tokens == 0 {
            ("drop", "rate_limited_packets")
        } else {
            ("pass", "pass")
        };
        assert_eq!(next(&e), want, "{e}");

        let e = d.json(&["explain", f.banned]);
        assert_eq!(next(&e), ("drop", "banned"), "{e}");
        assert_eq!(e["ban"]["cidr"], cidr(f.banned), "{e}");
        assert_eq!(e["ban"]["reason"], "explain test", "{e}");
        assert!(e["ban"]["remaining_seconds"].as_u64().unwrap() > 500, "{e}");
        assert!(
            e["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["kind"] == "ban_added"),
            "the ban's event: {e}"
        );

        // Never seen: the default limit, full buckets.
        let e = d.json(&["explain", f.unknown]);
        assert_eq!(next(&e), ("pass", "pass"), "{e}");
        assert_eq!(e["rule"], Value::Null, "{e}");
        assert_eq!(e["limit"]["packets_per_second"], 200, "{e}");
        assert_eq!(e["tracked"], Value::Null, "{e}");
        assert_eq!(e["ban"], Value::Null, "{e}");
    }

    // The management network: always allowed, by a rule of that origin.
    let e = d.json(&["explain", "192.0.2.250"]);
    assert_eq!(next(&e), ("pass", "allow"), "{e}");
    assert_eq!(e["rule"]["origin"], "management", "{e}");

    // The text form says the same in words.
    let out = d.cli(&["explain", V4.banned]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("next packet: drop (banned)"), "{text}");
    assert!(text.contains("ban: 192.0.2.45/32 for"), "{text}");
    let out = d.cli(&["explain", V6.limited]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("buckets: ") && text.contains("of 5 packets"),
        "{text}"
    );

    let err = d.refused(&["explain", "192.0.2"]);
    assert!(err.contains("192.0.2: not an IP address"), "{err}");
}
