//! The systemd unit (`packaging/tollgate.service`): `systemd-analyze
//! verify` finds nothing wrong with it and `systemd-analyze security`
//! rates it "OK" or better. (systemd is not PID 1 here, so the service is
//! not started through it; `notify.rs` checks the notify protocol itself.)

use std::{path::PathBuf, process::Command};

use lab::daemon::tollgate_bin;

/// The unit with the installed path replaced by the binary under test, so
/// verify can check that ExecStart is executable.
fn unit() -> PathBuf {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging/tollgate.service"),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("tg-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tollgate.service");
    let bin = tollgate_bin();
    std::fs::write(
        &path,
        text.replace("/usr/bin/tollgate", bin.to_str().unwrap()),
    )
    .unwrap();
    path
}

#[test]
fn the_unit_verifies_and_is_hardened() {
    let path = unit();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package `systemd`)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(
        !said.contains("tollgate.service"),
        "warnings about the unit: {said}"
    );

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for tollgate.service: ")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    eprintln!("systemd-analyze security: exposure {score}");
    // systemd's scale: <= 3.9 is "OK"; the rest of the exposure is what an
    // XDP daemon needs (host network, CAP_BPF, CAP_NET_ADMIN, root uid).
    assert!(score <= 3.9, "exposure {score}: {text}");
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
