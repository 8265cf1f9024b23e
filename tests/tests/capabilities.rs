//! The daemon with exactly the capabilities the systemd unit grants
//! (`CapabilityBoundingSet=` in packaging/tollgate.service) and no root
//! otherwise: uid 0 with the `noroot` securebits, as the unit's
//! `SecureBits=noroot-locked` runs it. Load, attach, pins, map reads, a
//! reload and the control socket must all work; with one capability less
//! the daemon must fail, so the set is also the least that works.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use lab::daemon::{self, Daemon, eventually, pin_root, run_command};

/// The unit's capabilities, as setpriv names them ("bpf", "net_admin").
fn unit_caps() -> Vec<String> {
    let unit = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging/tollgate.service"),
    )
    .expect("reading the unit");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet");
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

/// setpriv keeping uid 0 but with `caps` as the only capabilities: the
/// bounding, inheritable and ambient sets, and no root privilege on exec.
fn setpriv(caps: &[String]) -> Vec<String> {
    let set = format!(
        "-all{}",
        caps.iter().map(|c| format!(",+{c}")).collect::<String>()
    );
    vec![
        "setpriv".into(),
        format!("--bounding-set={set}"),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        "--securebits=+noroot,+noroot_locked".into(),
        "--".into(),
    ]
}

/// The capability bits the process holds (CapEff from /proc).
fn effective_caps(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn the_daemon_works_with_only_the_units_capabilities() {
    let caps = unit_caps();
    let mut d = Daemon::with_launcher("caps", &["192.0.2.61", "192.0.2.62"], "", setpriv(&caps));
    // CAP_NET_ADMIN = 12, CAP_PERFMON = 38, CAP_BPF = 39.
    let bit = |c: &str| match c {
        "net_admin" => 1u64 << 12,
        "perfmon" => 1 << 38,
        "bpf" => 1 << 39,
        other => panic!("the unit grants {other}; teach this test its number"),
    };
    let want: u64 = caps.iter().map(|c| bit(c)).sum();
    let pid = d.pid();
    assert_eq!(
        effective_caps(pid),
        want,
        "the daemon holds the unit's set only"
    );

    // Attached, enforcing and read: the denied source is dropped and the
    // daemon's read of the maps shows it.
    let sent = d.send("192.0.2.62", 300, 1_000);
    d.json(&["rules", "add", "192.0.2.61/32", "--action", "deny"]);
    let denied = d.send("192.0.2.61", 100, 1_000);
    assert_eq!(d.source("192.0.2.61", denied), (denied, denied));
    assert!(d.source("192.0.2.62", sent).0 >= sent);
    // A ban, a reload and the status over the control socket.
    d.json(&["ban", "add", "192.0.2.62", "--ttl", "1m"]);
    d.json(&["reload"]);
    eventually("the ban in `status`", Duration::from_secs(10), || {
        (d.json(&["status"])["bans_active"] == 1).then_some(())
    });
    // A clean stop (on_exit = detach in the test config) unpins and
    // detaches with these capabilities too.
    d.stop();
    assert!(
        d.log().contains("detached and removed the pins"),
        "{}",
        d.log()
    );
}

#[test]
fn each_of_the_units_capabilities_is_needed() {
    for missing in unit_caps() {
        let fewer: Vec<String> = unit_caps().into_iter().filter(|c| *c != missing).collect();
        let lab = lab::Lab::new(
            &format!("nocap-{}", &missing[..3]),
            &["192.0.2.63".parse().unwrap()],
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("tg-nocap-{missing}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tollgate.toml"), daemon::config(&dir, "")).unwrap();
        let launcher = setpriv(&fewer);
        let mut child = run_command(&lab.server, &launcher, &dir.join("tollgate.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It must give up on its own; one still running after 30 s works
        // without the capability.
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut said = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut said);
        }
        assert!(
            matches!(status, Some(s) if !s.success()),
            "the daemon ran without CAP_{}: {said}",
            missing.to_uppercase()
        );
        // Failing is not enough: it must fail for want of this capability,
        // at the step that needs it.
        let why: Vec<&str> = said
            .lines()
            .filter(|l| l.starts_with("error:") || l.contains("prohibited"))
            .map(|l| &l[..l.len().min(160)])
            .collect();
        eprintln!("without CAP_{}: {why:?}", missing.to_uppercase());
        let expected = match missing.as_str() {
            // Creating the maps.
            "bpf" => "loading the XDP object into the kernel failed",
            // Loading an XDP program at all.
            "net_admin" => "BPF_PROG_LOAD syscall returned Operation not permitted",
            // The verifier's pointer arithmetic on map values.
            "perfmon" => "BPF_PROG_LOAD syscall returned Permission denied",
            other => panic!(
                "no expected failure written for CAP_{}",
                other.to_uppercase()
            ),
        };
        assert!(
            said.contains(expected),
            "without CAP_{} the daemon must fail with `{expected}`: {why:?}",
            missing.to_uppercase()
        );
        let _ = std::fs::remove_dir_all(pin_root(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
