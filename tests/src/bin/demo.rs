//! `cargo xtask demo`: Tollgate on a lab it builds itself. A server, a
//! well-behaved client and a flooding client in their own namespaces behind
//! a bridge; `tollgate run` attached natively to the server's interface
//! prints its live view while both clients send; then everything is
//! removed (also on Ctrl-C or failure: the lab's guards delete the
//! namespaces, and tollgate detaches when it exits).

use std::{
    io::{BufRead, BufReader},
    net::IpAddr,
    process::{Child, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap_lite::Args;
use lab::{
    Lab,
    daemon::tollgate_bin,
    netns::SERVER_IF,
    traffic::{self, Sent},
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    traffic::stop_all();
}

mod clap_lite {
    //! Two flags do not need a parser crate.
    pub struct Args {
        pub seconds: u64,
    }
    impl Args {
        pub fn parse() -> anyhow::Result<Self> {
            let mut seconds = 20;
            let mut it = std::env::args().skip(1);
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--seconds" => {
                        seconds = it
                            .next()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| anyhow::anyhow!("--seconds takes a whole number"))?;
                    }
                    other => anyhow::bail!("unknown argument {other}; usage: demo [--seconds N]"),
                }
            }
            Ok(Self { seconds })
        }
    }
}

const GOOD_V4: &str = "192.0.2.10";
const GOOD_V6: &str = "2001:db8::10";
const FLOOD_V4: &str = "192.0.2.66";
/// The demo's default limit: 500 packets/s per source, burst 1,000.
const LIMIT_PPS: u64 = 500;
const BURST: u64 = 1_000;

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    // SAFETY: the handler only stores to atomics.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let good: Vec<IpAddr> = vec![GOOD_V4.parse()?, GOOD_V6.parse()?];
    let flood: Vec<IpAddr> = vec![FLOOD_V4.parse()?];
    let lab = Lab::switched("demo", &[&good, &flood]).context("building the demo lab")?;
    println!(
        "lab: server {} (namespace {}), well-behaved client {GOOD_V4} and {GOOD_V6} ({}), \
         flooding client {FLOOD_V4} ({}), joined by a bridge ({}s of traffic)",
        lab.server_v4(),
        lab.server.name(),
        lab.clients[0].name(),
        lab.clients[1].name(),
        args.seconds
    );
    let (mut child, printer) = start_tollgate(&lab)?;
    println!(
        "tollgate is attached (native XDP) with a default limit of {LIMIT_PPS} packets/s, \
         burst {BURST}; the well-behaved client sends 200/s over IPv4 and 100/s over IPv6, \
         the flooder as fast as it can"
    );
    let secs = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let sent = send_traffic(&lab, &good, flood[0], args.seconds);
    // Let the last view print, then stop tollgate like an operator would.
    std::thread::sleep(Duration::from_millis(1_100).min(secs));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().context("waiting for tollgate")?;
    let _ = printer.join();
    let [good4, good6, flooded] = sent?;
    println!(
        "\nsent in {:.1} s: well-behaved {} (IPv4) + {} (IPv6) packets, flooder {} packets \
         ({:.0}/s); the table above shows what the kernel passed and dropped per source",
        started.elapsed().as_secs_f64(),
        good4.packets,
        good6.packets,
        flooded.packets,
        flooded.packets as f64 / flooded.elapsed.as_secs_f64().max(0.001)
    );
    if INTERRUPTED.load(Ordering::Relaxed) {
        println!("interrupted: cleaning up");
    }
    drop(lab);
    println!("lab removed");
    if !status.success() {
        bail!("tollgate exited with {status}");
    }
    Ok(())
}

/// `tollgate run` attached to the server's interface with the demo's
/// limit, its live view printed by the returned thread and its log echoed
/// to stderr; returns once it reports `attached`.
fn start_tollgate(lab: &Lab) -> anyhow::Result<(Child, JoinHandle<()>)> {
    let mut child = lab
        .server
        .command(tollgate_bin().to_str().context("non-UTF-8 path")?)
        .args([
            "run",
            "--iface",
            SERVER_IF,
            "--stats-interval",
            "1",
            "--top",
            "5",
        ])
        .args(["--limit-pps", &LIMIT_PPS.to_string()])
        .args(["--burst-packets", &BURST.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tollgate run in the server namespace")?;
    let stdout = child.stdout.take().context("tollgate stdout")?;
    let stderr = child.stderr.take().context("tollgate stderr")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("attached") {
                let _ = ready_tx.send(());
            }
            eprintln!("tollgate: {line}");
        }
    });
    let printer = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        bail!("tollgate did not report `attached` within 30 s; see its output above");
    }
    Ok((child, printer))
}

/// `seconds` of traffic at once: the well-behaved client at 200/s over
/// IPv4 and 100/s over IPv6, the flooder as fast as it can. What each
/// sender sent, in that order.
fn send_traffic(
    lab: &Lab,
    good: &[IpAddr],
    flood: IpAddr,
    seconds: u64,
) -> anyhow::Result<[Sent; 3]> {
    let secs = Duration::from_secs(seconds);
    let (server_v4, server_v6) = (lab.server_v4(), lab.server_v6());
    let (good4, good6, flooded) = std::thread::scope(|s| {
        let g4 = s.spawn(|| {
            traffic::udp(
                &lab.clients[0],
                good[0],
                server_v4,
                8080,
                200 * seconds,
                200,
                200,
                secs,
            )
        });
        let g6 = s.spawn(|| {
            traffic::udp(
                &lab.clients[0],
                good[1],
                server_v6,
                8080,
                100 * seconds,
                100,
                200,
                secs,
            )
        });
        let f = s.spawn(|| {
            traffic::udp(
                &lab.clients[1],
                flood,
                server_v4,
                8080,
                100_000_000,
                0,
                64,
                secs,
            )
        });
        (g4.join(), g6.join(), f.join())
    });
    let panicked = |_| anyhow::anyhow!("sender thread panicked");
    Ok([
        good4.map_err(panicked)??,
        good6.map_err(panicked)??,
        flooded.map_err(panicked)??,
    ])
}
