//! Fail-static enforcement: the XDP link and the maps are pinned, so a
//! daemon that crashes (kill -9) or stops with `on_exit = "keep"` leaves the
//! kernel limiting and banning; the next daemon adopts the pins and its
//! counters continue. `on_exit = "detach"` leaves nothing behind, and a
//! layout upgrade adopts the old link and starts the maps afresh.

use std::{process::Command, time::Duration};

use lab::{
    daemon::{self, Daemon, eventually, pin_root, run_command},
    netns::SERVER_IF,
};
use monitor_common::{
    maps::{LAYOUT_VERSION, PROG_LINEAR, SOURCES},
    types::{SourceKey, SourceState},
};
use tollgate::maps::SourceTable;

const KEEP: &str = "# on_exit = keep";

/// The kernel's record of `addr` (a /32 source), read from the pinned
/// source map itself: no daemon involved.
fn kernel_record(d: &Daemon, addr: [u8; 4]) -> Option<SourceState> {
    let table = SourceTable::from_pins(&d.layout_dir()).expect("opening the pinned source table");
    table
        .get(&SourceKey::v4(u32::from_ne_bytes(addr), u32::MAX))
        .expect("reading the pinned source table")
}

/// The id of the XDP program attached to the server's interface, if any.
fn attached_prog(d: &Daemon) -> Option<u32> {
    d.xdp_program().map(|(id, _)| id)
}

/// The sum of `tollgate_packets_total` over all labels, as the exporter
/// serves it.
fn packets_total(d: &Daemon) -> f64 {
    let text = d.metrics().expect("the exporter answering");
    text.lines()
        .filter(|l| l.starts_with("tollgate_packets_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_crashed_daemon_leaves_the_kernel_enforcing_and_its_successor_continues() {
    let mut d = Daemon::new("crash", &["192.0.2.31", "192.0.2.32", "192.0.2.33"], KEEP);
    // Before the crash: .31 is over its limit, .32 banned for a few
    // seconds, .33 banned for ten minutes.
    d.json(&["ban", "add", "192.0.2.32", "--ttl", "4s"]);
    d.json(&["ban", "add", "192.0.2.33", "--ttl", "10m"]);
    let sent = d.send("192.0.2.31", 1_000, 2_000);
    let (_, dropped) = d.source("192.0.2.31", sent);
    assert!(dropped > 0, "over the limit before the crash");
    let counted = eventually("the exporter counting", Duration::from_secs(10), || {
        let n = packets_total(&d);
        (n >= sent as f64).then_some(n)
    });
    let prog = attached_prog(&d).expect("XDP attached");

    // A second daemon on the same pins is refused while this one runs.
    let second = run_command(&d.lab.server, &[], &d.dir.join("tollgate.toml"))
        .output()
        .expect("running a second daemon");
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second daemon started");
    assert!(
        said.contains("another tollgate daemon is running"),
        "{said}"
    );

    // kill -9 in the middle of a flow: the kernel counts (and limits)
    // every packet across the crash.
    let mut child = d.child.take().expect("a running daemon");
    let during = std::thread::scope(|s| {
        let flow = s.spawn(|| d.send("192.0.2.31", 1_000, 2_000));
        std::thread::sleep(Duration::from_millis(200));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping the daemon");
        flow.join().expect("the sender")
    });
    let r = kernel_record(&d, [192, 0, 2, 31]).expect(".31 tracked");
    assert_eq!(
        r.packets,
        sent + during,
        "no packet missed across the crash"
    );
    assert!(r.dropped > dropped, "limited across the crash");
    assert_eq!(
        attached_prog(&d),
        Some(prog),
        "still attached after kill -9"
    );

    // The kernel alone keeps limiting...
    let before = kernel_record(&d, [192, 0, 2, 31]).expect(".31 tracked");
    let more = d.send("192.0.2.31", 1_000, 2_000);
    let after = kernel_record(&d, [192, 0, 2, 31]).expect(".31 tracked");
    assert_eq!(after.packets - before.packets, more, "every packet seen");
    assert!(
        after.dropped > before.dropped,
        "still limited with no daemon: {} then {} dropped",
        before.dropped,
        after.dropped
    );
    // ...and banning, until the ban set before the crash expires on time.
    let banned = d.send("192.0.2.32", 50, 1_000);
    let r = kernel_record(&d, [192, 0, 2, 32]).expect(".32 tracked");
    assert_eq!((r.packets, r.dropped), (banned, banned), "banned");
    eventually("the 4 s ban to expire", Duration::from_secs(15), || {
        let sent = d.send("192.0.2.32", 10, 1_000);
        let r = kernel_record(&d, [192, 0, 2, 32])?;
        // After expiry a burst of 10 passes whole: dropped stays put.
        let passed = d.send("192.0.2.32", 10, 1_000);
        let r2 = kernel_record(&d, [192, 0, 2, 32])?;
        (sent > 0 && r2.packets == r.packets + passed && r2.dropped == r.dropped).then_some(())
    });

    // The successor adopts everything: the long ban, the source records and
    // the counters, which continue instead of starting over.
    d.start();
    assert!(
        d.log().contains("adopted the pinned XDP link"),
        "{}",
        d.log()
    );
    let bans = d.json(&["ban", "list"]);
    let bans = bans["bans"].as_array().unwrap();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0]["cidr"], "192.0.2.33/32");
    assert!(bans[0]["remaining_seconds"].as_u64().unwrap() > 500);
    let (packets, _) = d.source("192.0.2.31", sent + during + more);
    assert!(packets >= sent + during + more);
    let total = packets_total(&d);
    assert!(
        total >= counted + (during + more) as f64,
        "counters continue: {counted} before the crash, {total} after"
    );
    assert!(attached_prog(&d).is_some());

    // A clean stop with on_exit = keep leaves the kernel enforcing too.
    d.stop();
    assert!(attached_prog(&d).is_some(), "kept attached on SIGTERM");
    assert!(d.layout_dir().join(SOURCES).exists(), "maps kept pinned");
}

#[test]
fn stopping_with_on_exit_detach_leaves_nothing_behind() {
    let mut d = Daemon::new("detach", &["192.0.2.34"], "");
    let prog = attached_prog(&d).expect("XDP attached");
    assert!(d.layout_dir().exists());
    d.stop();
    assert_eq!(attached_prog(&d), None, "detached");
    assert!(!pin_root(&d.dir).exists(), "pins removed");
    // The program goes once its last reference (the link) is released.
    eventually(
        "the program to be unloaded",
        Duration::from_secs(10),
        || {
            let out = Command::new("bpftool")
                .args(["prog", "show", "id", &prog.to_string()])
                .output()
                .ok()?;
            (!out.status.success()).then_some(())
        },
    );
    let links = Command::new("bpftool")
        .args(["link", "show"])
        .output()
        .expect("bpftool link show");
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&format!("prog {prog}")),
        "a link to the program remains"
    );
}

#[test]
fn an_upgrade_with_a_new_layout_adopts_the_link_and_starts_the_maps_fresh() {
    let mut d = Daemon::new("layout", &["192.0.2.35"], KEEP);
    let sent = d.send("192.0.2.35", 300, 1_000);
    d.source("192.0.2.35", sent);
    d.stop();
    let prog = attached_prog(&d).expect("kept attached");
    // Pretend the pins came from an older build with another layout.
    let old = pin_root(&d.dir).join(format!("v{}", LAYOUT_VERSION + 100));
    std::fs::rename(d.layout_dir(), &old).expect("renaming the pin directory");

    d.start();
    let log = d.log();
    assert!(log.contains("\"event\":\"layout_changed\""), "{log}");
    assert!(log.contains("adopted the pinned XDP link"), "{log}");
    assert!(!old.exists(), "the old layout's pins are removed");
    let (now, name) = d.xdp_program().expect("attached");
    assert_ne!(now, prog, "our program replaced the old one in the link");
    assert_eq!(
        name, PROG_LINEAR,
        "the single-buffer program, at the lab's MTU of 1,500"
    );
    // Fresh maps: the old source record is not mis-read as ours.
    assert_eq!(
        kernel_record(&d, [192, 0, 2, 35]).map(|r| r.packets),
        None,
        "the new source map starts empty"
    );
    let again = d.send("192.0.2.35", 100, 1_000);
    assert_eq!(d.source("192.0.2.35", again).0, again);
}

/// `state.pin_dir` must be on a bpffs: a clear error otherwise.
#[test]
fn a_pin_dir_outside_bpffs_is_refused() {
    let lab = lab::Lab::new("pinfs", &["192.0.2.36".parse().unwrap()]).unwrap();
    let dir = std::env::temp_dir().join(format!("tg-pinfs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = daemon::config(&dir, "").replace(
        &format!("pin_dir = \"{}\"", pin_root(&dir).display()),
        &format!("pin_dir = \"{}\"", dir.join("pins").display()),
    );
    std::fs::write(dir.join("tollgate.toml"), text).unwrap();
    let out = run_command(&lab.server, &[], &dir.join("tollgate.toml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("is not on a BPF filesystem; put it under /sys/fs/bpf"),
        "{said}"
    );
    assert!(!dir.join("pins").exists(), "nothing created off bpffs");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A new source-table capacity cannot reuse the pinned table: the daemon
/// says so and starts its maps fresh, still adopting the link.
#[test]
fn a_changed_capacity_starts_the_maps_fresh() {
    let mut d = Daemon::new("cap", &["192.0.2.37"], KEEP);
    d.stop();
    let path = d.dir.join("tollgate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("[sources]\n", "[sources]\nmax_tracked = 65536\n"),
    )
    .unwrap();
    d.start();
    let log = d.log();
    assert!(log.contains("\"event\":\"pins_restarted\""), "{log}");
    assert!(
        log.contains("holds 1048576 sources but the config asks for 65536"),
        "{log}"
    );
    assert!(log.contains("adopted the pinned XDP link"), "{log}");
    let sent = d.send("192.0.2.37", 50, 1_000);
    assert_eq!(d.source("192.0.2.37", sent).0, sent);
}

/// An interface deleted and created again while no daemon ran leaves a
/// pinned link that cannot take a program: the daemon removes that pin and
/// attaches afresh instead of failing to start.
#[test]
fn a_link_whose_interface_went_away_is_replaced() {
    use lab::netns::{CLIENT_IF, CLIENT_MAC, SERVER_MAC};
    let mut d = Daemon::new("stale", &["192.0.2.38"], KEEP);
    d.stop();
    let old = attached_prog(&d).expect("kept attached");
    d.lab.server.ip(&["link", "del", SERVER_IF]).unwrap();
    d.lab
        .server
        .veth(
            SERVER_IF,
            SERVER_MAC,
            CLIENT_IF,
            Some(CLIENT_MAC),
            d.lab.client(),
        )
        .unwrap();
    d.lab.server.ip(&["link", "set", SERVER_IF, "up"]).unwrap();
    assert_eq!(attached_prog(&d), None, "a new interface, nothing attached");
    d.start();
    assert!(d.log().contains("\"event\":\"stale_link\""), "{}", d.log());
    let now = attached_prog(&d).expect("attached afresh");
    assert_ne!(now, old);
    assert!(
        d.layout_dir().join(format!("link-{SERVER_IF}")).exists(),
        "pinned again"
    );
}
