//! Attach modes end to end: a daemon configured for generic XDP (the
//! kernel's skb path, for drivers without native XDP) attaches in that
//! mode, says so, and counts, limits and denies as the native mode does.

use std::{net::IpAddr, time::Instant};

use lab::{
    Lab,
    daemon::{Daemon, config},
    netns::SERVER_IF,
};

#[test]
fn generic_mode_attaches_says_so_and_enforces_as_native_does() {
    let clients = ["192.0.2.21", "192.0.2.22", "192.0.2.40"];
    let addrs: Vec<IpAddr> = clients.iter().map(|a| a.parse().unwrap()).collect();
    let lab = Lab::new("gen", &addrs).expect("building the lab");
    // The tests' config: 200 packets/s, burst 100, 192.0.2.40 denied.
    let d = Daemon::in_lab(lab, "gen", |dir| {
        format!("attach_mode = \"generic\"\n{}", config(dir, ""))
    });
    assert_eq!(d.json(&["status"])["attach_mode"], "generic");
    let link = d
        .lab
        .server
        .ip(&["-d", "link", "show", "dev", SERVER_IF])
        .expect("ip link show");
    assert!(
        link.contains("xdpgeneric") && !link.contains("xdpdrv"),
        "the program is attached in generic mode: {link}"
    );

    // Under the limit: everything passes.
    let under = d.send("192.0.2.21", 50, 100);
    assert_eq!(d.source("192.0.2.21", under), (under, 0));
    // Over it: the burst and the rate pass, the rest is dropped.
    let began = Instant::now();
    let over = d.send("192.0.2.22", 2_000, 4_000);
    let secs = began.elapsed().as_secs_f64();
    let (counted, dropped) = d.source("192.0.2.22", over);
    assert_eq!(counted, over, "every packet counted");
    let passed = over - dropped;
    let allowed = 100.0 + 200.0 * (secs + 0.01);
    assert!(
        dropped > 0 && passed as f64 <= allowed,
        "{passed} of {over} passed a 200/s limit with a burst of 100 in {secs:.2} s"
    );
    // Denied by the config: everything dropped.
    let denied = d.send("192.0.2.40", 30, 100);
    assert_eq!(d.source("192.0.2.40", denied), (denied, denied));
}
