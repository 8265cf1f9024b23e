//! SYN cookies answered from XDP, end to end with real stacks: the daemon
//! with `[syn_cookies]`, Debian's nginx behind it, curl and a Python client
//! in the clients' namespace. Their handshakes complete through the XDP
//! SYN-ACK and the kernel's SYNPROXY over IPv4 and IPv6, with SACK and
//! window scaling negotiated, and the 10 MiB file arrives whole; the
//! download speeds with and without cookies are printed (`cargo xtask
//! bench` compares them).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::Duration,
};

use lab::{
    daemon::{Daemon, config},
    flood_lab::{FloodLab, client_v4, client_v6},
    handshake::download,
    nginx::{BIG_PATH, BIG_SIZE, Nginx, curl},
};
use serde_json::Value;

/// The lab tests share the CPUs, so they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const PORT: u16 = 80;
const WSCALE: u8 = 7;

/// Cookies on from the start for port 80, a default limit no download
/// comes near, and the detectors only watching (a client pulling 10 MiB
/// at full speed ten times over looks like a flood to them; this test is
/// about handshakes).
fn cookie_config(mode: &str) -> String {
    format!(
        r#"[default_limit]
packets_per_second = 1000000
burst_packets = 1000000
[detect]
mode = "monitor"
[syn_cookies]
ports = [{PORT}]
mode = "{mode}"
wscale = {WSCALE}
"#
    )
}

fn cookies(d: &Daemon<FloodLab>) -> Value {
    d.json(&["status"])["syn_cookies"].clone()
}

/// The cookie status once `done` holds (the daemon reads the kernel's
/// counters every interval); the last one seen if it never does, for the
/// assertion that follows to show.
fn settled(d: &Daemon<FloodLab>, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..50 {
        last = cookies(d);
        if done(&last) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median speed of `n` downloads of the big file from `from`, each
/// whole.
fn median_speed(lab: &FloodLab, from: IpAddr, to: SocketAddr, n: usize) -> f64 {
    median(
        (0..n)
            .map(|i| {
                let d = download(&lab.clients, from, to, BIG_PATH)
                    .unwrap_or_else(|e| panic!("download {i} from {from}: {e:#}"));
                assert_eq!((d.status, d.bytes), (200, BIG_SIZE), "{from} -> {to}");
                d.mbit_per_s()
            })
            .collect(),
    )
}

#[test]
fn real_clients_complete_handshakes_through_xdp_cookies_over_ipv4_and_ipv6() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = FloodLab::new("ckr", 8).expect("building the lab");
    let (v4, v6) = (IpAddr::from(lab.server_v4()), IpAddr::from(lab.server_v6()));
    let _nginx = Nginx::start(&lab.server, &[v4, v6], PORT, None).expect("starting nginx");
    let targets = [SocketAddr::new(v4, PORT), SocketAddr::new(v6, PORT)];
    let clients = |i| [IpAddr::from(client_v4(i)), IpAddr::from(client_v6(i))];

    // Without Tollgate (no table, no conntrack): the reference speed.
    let plain: Vec<f64> = clients(0)
        .iter()
        .zip(&targets)
        .map(|(from, to)| median_speed(&lab, *from, *to, 5))
        .collect();

    let d = Daemon::in_lab(lab, "ckr", |dir| config(dir, &cookie_config("always")));
    let lab = &d.lab;
    assert_eq!(cookies(&d)["mode"], "on");

    // curl's first connection from each address is answered from XDP.
    for (i, (from, to)) in clients(1).iter().zip(&targets).enumerate() {
        let base = match to {
            SocketAddr::V4(_) => format!("http://{to}"),
            SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
        };
        let limit = Duration::from_secs(10);
        let (code, size) = curl(&lab.clients, *from, &format!("{base}{BIG_PATH}"), limit).unwrap();
        assert_eq!(
            (code, size),
            (200, BIG_SIZE),
            "curl {base}{BIG_PATH} from {from}"
        );
        let want = i as u64 + 1;
        let c = settled(&d, |c| c["sent"] == want);
        assert_eq!(c["acks_valid"], want, "{c}");
    }

    // The Python client: SACK, window scaling (the scale Tollgate
    // advertised) and timestamps negotiated through the cookie; its first
    // connection from each address is a cookie's, the rest go to the
    // stack as a verified source's.
    let mut cookied = vec![Vec::new(), Vec::new()];
    for i in 2..7 {
        for (fam, (from, to)) in clients(i).iter().zip(&targets).enumerate() {
            let first = download(&lab.clients, *from, *to, BIG_PATH).expect("downloading");
            assert_eq!((first.status, first.bytes), (200, BIG_SIZE));
            assert!(
                first.sack() && first.wscale() && first.timestamps(),
                "{from}: {first:?}"
            );
            assert_eq!(first.snd_wscale, WSCALE, "{from}: {first:?}");
            cookied[fam].push(first.mbit_per_s());
        }
    }
    // A verified source's next connection goes straight to the socket,
    // with its options as negotiated by the server itself.
    for (from, to) in clients(2).iter().zip(&targets) {
        let later = download(&lab.clients, *from, *to, BIG_PATH).expect("downloading");
        assert!(later.sack() && later.wscale(), "{later:?}");
        assert_eq!(later.bytes, BIG_SIZE);
    }
    let c = settled(&d, |c| c["sent"] == 12 && c["verified_syns"] == 2);
    assert_eq!(c["acks_valid"], 12, "{c}");
    assert_eq!(c["failures"], 0, "{c}");
    assert_eq!(c["verified_syns"], 2, "{c}");
    assert_eq!(c["verified_sources"], 12, "{c}");
    assert_eq!(c["acks_invalid"], 0, "{c}");
    let cookied: Vec<f64> = cookied.into_iter().map(median).collect();
    for (i, fam) in ["IPv4", "IPv6"].iter().enumerate() {
        eprintln!(
            "10 MiB over {fam}: {:.0} Mbit/s without Tollgate, {:.0} Mbit/s through an XDP cookie and SYNPROXY ({:.0}%), medians of 5 (cargo xtask bench compares more rounds)",
            plain[i],
            cookied[i],
            100.0 * cookied[i] / plain[i]
        );
    }
}

/// The cookies outlive the daemon: killed with `kill -9`, its program
/// stays attached and keeps answering SYNs from XDP (the jump table and
/// the counters are pinned), and the next daemon adopts them and goes on,
/// with every source verified so far.
#[test]
fn the_kernel_keeps_answering_syns_while_the_daemon_is_down() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = FloodLab::new("ckk", 4).expect("building the lab");
    let server = IpAddr::from(lab.server_v4());
    let _nginx = Nginx::start(&lab.server, &[server], PORT, None).expect("starting nginx");
    let extra = format!("{}# on_exit = keep\n", cookie_config("always"));
    let mut d = Daemon::in_lab(lab, "ckk", |dir| config(dir, &extra));
    let get = |d: &Daemon<FloodLab>, i: usize| {
        let url = format!("http://{server}:{PORT}/");
        curl(
            &d.lab.clients,
            client_v4(i).into(),
            &url,
            Duration::from_secs(5),
        )
        .expect("curl")
    };
    assert_eq!(get(&d, 0).0, 200);
    settled(&d, |c| c["sent"] == 1);

    let mut child = d.child.take().expect("a running daemon");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaping the daemon");
    assert_eq!(get(&d, 1).0, 200, "a new client connects with no daemon");

    d.start();
    let c = settled(&d, |c| c["sent"] == 2);
    assert_eq!(
        c["sent"], 2,
        "answered from XDP while the daemon was down: {c}"
    );
    assert_eq!(c["failures"], 0, "{c}");
    assert_eq!(get(&d, 2).0, 200);
    let c = settled(&d, |c| c["sent"] == 3);
    assert_eq!(c["sent"], 3, "and by the new daemon's program: {c}");

    // The sources verified by the first daemon's program, before it died
    // and while no daemon ran, are still verified: the new program's
    // filter (not pinned) was rebuilt from the pinned verified map, so
    // their SYNs go to the socket without a cookie.
    for i in [0, 1] {
        assert_eq!(get(&d, i).0, 200);
    }
    let c = settled(&d, |c| c["verified_syns"] == 2);
    assert_eq!(c["verified_syns"], 2, "{c}");
    assert_eq!(c["sent"], 3, "no cookie for a source verified before: {c}");
}
