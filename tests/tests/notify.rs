//! `monitor/src/notify.rs` end to end: `tollgate run` under a stand-in
//! for systemd (a datagram socket in `NOTIFY_SOCKET`) says `READY=1` only
//! once its control socket answers, pets the watchdog, and says
//! `STOPPING=1` on SIGTERM. (`systemd.rs` checks the unit file itself.)

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use lab::{
    Lab,
    daemon::{config, eventually, run_command, tollgate_bin},
};

#[test]
fn the_daemon_tells_systemd_when_it_is_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let lab = Lab::new("notify", &["192.0.2.86".parse().unwrap()]).unwrap();
    let dir = std::env::temp_dir().join(format!("tg-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tollgate.toml"), config(&dir, "")).unwrap();
    let notify = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = run_command(&lab.server, &[], &dir.join("tollgate.toml"))
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification within 30 s");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        ready.starts_with("READY=1\nSTATUS=enforcing on tg-srv"),
        "{ready}"
    );
    // Ready means ready: the control socket answers at once.
    let out = Command::new(tollgate_bin())
        .args(["status", "--socket"])
        .arg(dir.join("control.sock"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let n = sock.recv(&mut buf).expect("a watchdog pet (every 200 ms)");
    assert_eq!(&buf[..n], b"WATCHDOG=1");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    eventually("STOPPING=1", Duration::from_secs(10), || {
        let n = sock.recv(&mut buf).ok()?;
        (&buf[..n] == b"STOPPING=1").then_some(())
    });
    assert!(child.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
