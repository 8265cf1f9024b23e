//! `monitor/src/control/` end to end: the control socket of a running
//! daemon answers malformed, unsupported, invalid and oversized requests
//! with clear errors and keeps serving everyone else, and keeps out whoever
//! is not root, by the socket's mode and, were that loosened, by the peer
//! credential check.

use std::{io::Write, process::Command};

use lab::daemon::{Daemon, tollgate_bin};

#[test]
fn bad_requests_get_clear_errors_and_the_daemon_keeps_serving() {
    use tollgate::control::Client;
    let d = Daemon::new("bad", &["192.0.2.70"], "");
    let mut c = Client::connect(&d.socket()).unwrap();
    let r = c.raw("this is not json").unwrap();
    assert!(!r.ok && r.error.unwrap().starts_with("the request is not JSON"));
    let r = c
        .raw(r#"{"version":9,"command":{"type":"status"}}"#)
        .unwrap();
    assert!(
        r.error
            .unwrap()
            .contains("protocol version 9 is not supported")
    );
    let r = c
        .raw(r#"{"version":1,"command":{"type":"ban_add","cidr":"192.0.2.999","ttl":"1m"}}"#)
        .unwrap();
    assert!(r.error.unwrap().contains("is not an address or CIDR"));
    let r = c
        .raw(r#"{"version":1,"command":{"type":"ban_add","cidr":"192.0.2.9","ttl":"forever"}}"#)
        .unwrap();
    assert!(r.error.unwrap().contains("is not a duration"));
    // Oversized: refused, and that connection closed (the daemon stops
    // reading, so the rest of our write may fail; the answer still comes).
    {
        use std::io::BufRead;
        let mut big = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
        let _ = big.write_all("x".repeat(70_000).as_bytes());
        let mut line = String::new();
        std::io::BufReader::new(&big).read_line(&mut line).unwrap();
        let r: tollgate::control::Response = serde_json::from_str(&line).unwrap();
        assert!(r.error.unwrap().contains("request longer than 65536 bytes"));
        let mut rest = String::new();
        assert_eq!(
            std::io::BufReader::new(&big)
                .read_line(&mut rest)
                .unwrap_or(0),
            0,
            "closed"
        );
    }
    // Everyone else is still served, on the first connection too.
    let r = c
        .raw(r#"{"version":1,"command":{"type":"status"}}"#)
        .unwrap();
    assert!(r.ok);

    // Someone who is not root: the socket's mode keeps them out...
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(tollgate_bin())
            .args(args)
            .arg("--socket")
            .arg(d.socket())
            .output()
            .expect("setpriv (util-linux)")
    };
    let out = as_nobody(&["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to the daemon"));
    // ...and if the mode were loosened, the peer-credential check still
    // refuses them.
    std::fs::set_permissions(&d.dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        d.socket(),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let out = as_nobody(&["ban", "add", "192.0.2.70", "--ttl", "1m"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied: uid 65534 is not root"),
        "{err}"
    );
    assert!(
        d.json(&["ban", "list"])["bans"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(d.log().contains("control_refused"));
}

/// Idle, stuck and surplus connections: past `control.max_clients` a new
/// connection closes the one idle longest, and a connection without a
/// whole request for `control.idle_timeout` is closed with a message; a
/// permitted client is served whatever the others do.
#[test]
fn stuck_and_surplus_clients_never_keep_a_permitted_one_out() {
    use std::{
        io::{BufRead, BufReader},
        os::unix::net::UnixStream,
        time::{Duration, Instant},
    };
    let lab = lab::Lab::new("stk", &["192.0.2.71".parse().unwrap()]).unwrap();
    let d = Daemon::in_lab(lab, "stk", |dir| {
        lab::daemon::config(dir, "").replace(
            "[control]\n",
            "[control]\nidle_timeout = \"2s\"\nmax_clients = 50\n",
        )
    });
    // 200 connections that never ask, then 20 stuck mid-request.
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(d.socket()).unwrap())
        .collect();
    let stuck: Vec<UnixStream> = (0..20)
        .map(|_| {
            let mut s = UnixStream::connect(d.socket()).unwrap();
            s.write_all(br#"{"version":1,"command":"#).unwrap();
            s
        })
        .collect();
    let asked = Instant::now();
    let status = d.json(&["status"]);
    assert!(status["packets"].is_object(), "{status}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "served before any idle connection timed out"
    );
    let read = |s: &UnixStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).map(|_| line)
    };
    // The first idle connections were closed to make room: nothing to read.
    assert_eq!(read(&idle[0]).unwrap_or_default(), "", "evicted");
    // The newest, stuck mid-request, is closed after the idle timeout
    // with a message saying why.
    let last = read(stuck.last().unwrap()).expect("the idle message");
    let r: tollgate::control::Response = serde_json::from_str(&last).unwrap();
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("no request for 2s; connection closed")),
        "{last}"
    );
    // Still serving.
    assert!(d.json(&["status"])["packets"].is_object());
}
