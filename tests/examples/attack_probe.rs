//! Scratch: how hard does a flood hit the lab's HTTP server?
use std::{net::SocketAddr, time::Duration};

use lab::{
    Lab,
    flood::{Flood, Kind, flood},
    http::{HttpServer, client},
    netns::CLIENT_IF,
};

fn main() -> anyhow::Result<()> {
    let kind = std::env::args().nth(1).unwrap_or("syn".into());
    let sources: u32 = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1);
    let lab = Lab::new("probe", &["192.0.2.10".parse()?, "192.0.2.66".parse()?])?;
    lab.server
        .ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.10"])?;
    lab.server
        .ip(&["route", "add", "203.0.113.0/24", "via", "192.0.2.10"])?;
    let monitor = std::env::args().nth(3).as_deref() != Some("enforce");
    let mut tg = tollgate::loader::Tollgate::load(&tollgate::loader::LoadOptions {
        max_sources: 65536,
        ..Default::default()
    })?;
    let policy = tollgate::policy::Policy {
        default_monitor: monitor,
        ..Default::default()
    };
    tg.maps
        .apply_policy(&policy, Some(tollgate::clock::monotonic_ns()))?;
    lab.server
        .enter(|| tg.attach(lab::netns::SERVER_IF, tollgate::loader::AttachMode::Native))??;
    let pin = |cpu: usize| unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    };
    if std::env::var("RPS").is_ok() {
        lab.server
            .command("sh")
            .args(["-c", "echo 2 > /sys/class/net/tg-srv/queues/rx-0/rps_cpus"])
            .status()?;
    }
    if std::env::var("NOCOOKIES").is_ok() {
        lab.server
            .command("sysctl")
            .args(["-qw", "net.ipv4.tcp_syncookies=0"])
            .status()?;
    }
    pin(1);
    let _srv = HttpServer::start(&lab.server, lab.server_v4(), 8080)?;
    let to = SocketAddr::new(lab.server_v4(), 8080);
    let base = client(
        lab.client(),
        to,
        50,
        Duration::from_secs(3),
        Duration::from_secs(2),
    )?;
    println!("baseline: {base:?}");
    let spec = Flood {
        kind: if kind == "syn" { Kind::Syn } else { Kind::Udp },
        first_src: if sources > 1 {
            "198.51.100.0".parse()?
        } else {
            "203.0.113.66".parse()?
        },
        sources,
        dst: "192.0.2.1".parse()?,
        dport: 8080,
        spin: std::env::var("SPIN")
            .map(|p| p.parse().unwrap())
            .unwrap_or(0),
    };
    let r = std::thread::scope(|s| {
        let f = s.spawn(|| {
            pin(0);
            flood(
                lab.client(),
                CLIENT_IF,
                &spec,
                50_000_000,
                std::env::var("PPS")
                    .map(|p| p.parse().unwrap())
                    .unwrap_or(0),
                Duration::from_secs(8),
            )
        });
        std::thread::sleep(Duration::from_secs(1));
        let c = client(
            lab.client(),
            to,
            50,
            Duration::from_secs(6),
            Duration::from_secs(
                std::env::var("TMO")
                    .map(|t| t.parse().unwrap())
                    .unwrap_or(2),
            ),
        );
        (f.join().unwrap(), c)
    });
    let (sent, c) = r;
    let sent = sent?;
    let k = tg.maps.counters()?;
    println!(
        "kernel: {:?}",
        k.by_iface
            .iter()
            .map(|r| r
                .iter()
                .map(|v| v.iter().map(|x| x.packets).sum::<u64>())
                .sum::<u64>())
            .collect::<Vec<_>>()
    );
    println!(
        "flood: {} frames in {:?} = {:.2} Mpps; client {:?}",
        sent.packets,
        sent.elapsed,
        sent.packets as f64 / sent.elapsed.as_secs_f64() / 1e6,
        c?
    );
    Ok(())
}
