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

/// `events --follow` consumers past `control.max_clients`, one of them
/// stopped past the idle timeout: each connects again when closed on
/// and prints every event exactly once; when the daemon stops each ends
/// quietly (status 0, one line on stderr).
#[test]
fn many_and_stopped_event_followers_each_see_every_event_once() {
    use std::{
        process::{Child, Stdio},
        time::Duration,
    };
    let lab = lab::Lab::new("fol", &["192.0.2.72".parse().unwrap()]).unwrap();
    let mut d = Daemon::in_lab(lab, "fol", |dir| {
        lab::daemon::config(dir, "").replace(
            "[control]\n",
            "[control]\nidle_timeout = \"2s\"\nmax_clients = 20\n",
        )
    });
    let out = std::env::temp_dir().join(format!("tg-followers-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    struct Followers(Vec<Child>, std::path::PathBuf);
    impl Drop for Followers {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let spawn = |i: usize| {
        Command::new(tollgate_bin())
            .args(["events", "--follow", "--json", "--socket"])
            .arg(d.socket())
            .stdout(std::fs::File::create(out.join(format!("{i}.out"))).unwrap())
            .stderr(std::fs::File::create(out.join(format!("{i}.err"))).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("starting a follower")
    };
    let mut f = Followers((0..30).map(spawn).collect(), out.clone());
    let signal = |c: &Child, sig| unsafe { libc::kill(c.id() as libc::pid_t, sig) };
    let added = |i: usize| {
        std::fs::read_to_string(out.join(format!("{i}.out")))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"kind\":\"ban_added\""))
            .count()
    };
    std::thread::sleep(Duration::from_secs(1));
    signal(&f.0[0], libc::SIGSTOP);
    for n in 1..=5 {
        d.json(&["ban", "add", &format!("203.0.113.{n}/32"), "--ttl", "10m"]);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (1..30).any(|i| added(i) < 5) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let behind: Vec<String> = (1..30)
        .filter(|i| added(*i) < 5)
        .map(|i| {
            let err = std::fs::read_to_string(out.join(format!("{i}.err"))).unwrap_or_default();
            let o = std::fs::read_to_string(out.join(format!("{i}.out"))).unwrap_or_default();
            format!("{i}: {} bans, stderr {err:?} out {o:?}", added(i))
        })
        .collect();
    assert!(behind.is_empty(), "followers behind after 30s: {behind:#?}");
    // Stopped past the idle timeout: the daemon closed it meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    signal(&f.0[0], libc::SIGCONT);
    lab::daemon::eventually(
        "the stopped follower catches up",
        Duration::from_secs(30),
        || (added(0) >= 5).then_some(()),
    );
    for i in 0..30 {
        assert_eq!(added(i), 5, "follower {i} printed each ban once");
    }
    assert!(d.json(&["status"])["packets"].is_object());
    assert!(
        d.log().contains("control_connection_evicted"),
        "the churn past max_clients is logged"
    );

    d.stop();
    for (i, c) in f.0.iter_mut().enumerate() {
        let status = lab::daemon::eventually("the follower ends", Duration::from_secs(10), || {
            c.try_wait().unwrap()
        });
        assert!(status.success(), "follower {i}: {status}");
        let err = std::fs::read_to_string(out.join(format!("{i}.err"))).unwrap();
        assert!(
            err.contains("stopped: its socket refuses connections; no more events"),
            "follower {i}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "follower {i}: {err}");
    }
}

/// The CLI finds the socket from `$TOLLGATE_SOCKET` or `--config`'s
/// `control.socket`; a failed connection names the socket it tried, how
/// it was chosen, and how to point elsewhere.
#[test]
fn the_cli_finds_the_socket_from_the_environment_or_the_config() {
    let d = Daemon::new("sock", &["192.0.2.73"], "");
    let status = |cmd: &mut Command| {
        let out = cmd.output().expect("the CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) = status(
        Command::new(tollgate_bin())
            .env("TOLLGATE_SOCKET", d.socket())
            .args(["status", "--json"]),
    );
    assert!(ok && said.contains("\"interfaces\""), "{said}");
    let (ok, said) = status(
        Command::new(tollgate_bin())
            .env_remove("TOLLGATE_SOCKET")
            .args(["status", "--json", "--config"])
            .arg(d.dir.join("tollgate.toml")),
    );
    assert!(ok && said.contains("\"interfaces\""), "{said}");
    let (ok, said) = status(
        Command::new(tollgate_bin())
            .env("TOLLGATE_SOCKET", d.dir.join("nothing.sock"))
            .arg("status"),
    );
    assert!(!ok, "{said}");
    assert!(
        said.contains(&format!(
            "cannot connect to the daemon at {} ($TOLLGATE_SOCKET)",
            d.dir.join("nothing.sock").display()
        )) && said.contains("--socket PATH, TOLLGATE_SOCKET=PATH, or --config FILE"),
        "{said}"
    );
}
