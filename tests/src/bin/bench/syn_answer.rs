//! SYN-ACKs per second that one core sends under a spoofed SYN flood:
//! the kernel's own SYN-cookie path (`tcp_syncookies = 2`, every SYN
//! answered with a cookie by the socket layer) against Tollgate's XDP
//! cookies, on the same lab and the same flood. The generator has CPU 0;
//! the server's receive processing of the attacker's link runs in a NAPI
//! thread pinned to CPU 1, so each path gets exactly one core, and what it
//! cannot take overflows the link's ring as a NIC's would.

use std::time::Duration;

use lab::{
    NetNs,
    daemon::{Daemon, config_on},
    flood::{Flood, Generator},
    flood_lab::{ATTACK_IF, FLOOD_IF, FLOOD_SOURCES_V4, FloodLab},
    netns::exec,
    traffic::pin_thread,
};

const PORT: u16 = 80;
const FLOOD_TIME: Duration = Duration::from_secs(8);

/// Runs the attacker link's NAPI as a thread on `cpu` (see the module
/// doc); the link must have its NAPI instance (GRO on, or a program).
fn napi_on(server: &NetNs, cpu: usize) -> anyhow::Result<()> {
    let on = format!("echo 1 > /sys/class/net/{ATTACK_IF}/threaded");
    exec(server.command("sh").args(["-c", &on]))?;
    let pids = exec(std::process::Command::new("pgrep").arg(format!("^napi/{ATTACK_IF}-")))?;
    for pid in pids.split_whitespace() {
        exec(std::process::Command::new("taskset").args(["-p", "-c", &cpu.to_string(), pid]))?;
    }
    Ok(())
}

/// Floods the server from the attacker for `FLOOD_TIME`; frames offered
/// per second.
fn flood(lab: &FloodLab) -> anyhow::Result<f64> {
    let spec = Flood::spoofed_syn_v4(&FLOOD_SOURCES_V4, lab.server_v4(), PORT);
    let g = Generator::load(&lab.attacker, FLOOD_IF, &spec)?;
    let sent = std::thread::scope(|s| {
        s.spawn(|| {
            pin_thread(0)?;
            g.send(&lab.attacker, 100_000_000, FLOOD_TIME)
        })
        .join()
        .expect("the generator thread")
    })?;
    Ok(sent.pps())
}

/// The kernel's own cookies: a listener on the port, every SYN answered
/// by the socket layer.
fn kernel() -> anyhow::Result<(f64, f64)> {
    let lab = FloodLab::new("bench-sk", 1)?;
    let set = "sysctl -qw net.ipv4.tcp_syncookies=2";
    exec(lab.server.command("sh").args(["-c", set]))?;
    let _listener = lab::nginx::Nginx::start(&lab.server, &[lab.server_v4().into()], PORT, None)?;
    napi_on(&lab.server, 1)?;
    let before = lab.server.nstat("TcpExtSyncookiesSent")?;
    let offered = flood(&lab)?;
    let sent = lab.server.nstat("TcpExtSyncookiesSent")? - before;
    Ok((offered, sent as f64 / FLOOD_TIME.as_secs_f64()))
}

/// Tollgate's XDP cookies for the port.
fn xdp() -> anyhow::Result<(f64, f64)> {
    let lab = FloodLab::new("bench-sx", 1)?;
    let extra = format!(
        "[default_limit]\npackets_per_second = 1000000\nburst_packets = 1000000\n\
         [syn_cookies]\nports = [{PORT}]\nmode = \"always\"\n"
    );
    let d = Daemon::in_lab(lab, "bench-sx", |dir| config_on(dir, &[ATTACK_IF], &extra));
    napi_on(&d.lab.server, 1)?;
    let sent = || {
        d.json(&["status"])["syn_cookies"]["sent"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = sent();
    let offered = flood(&d.lab)?;
    // The daemon reads the kernel's counters every interval.
    std::thread::sleep(Duration::from_millis(700));
    Ok((offered, (sent() - before) as f64 / FLOOD_TIME.as_secs_f64()))
}

pub fn run() -> anyhow::Result<()> {
    let (k_offered, k) = kernel()?;
    let (x_offered, x) = xdp()?;
    println!(
        "syn flood, one server core: the kernel's SYN cookies {:.2} M SYN-ACKs/s ({:.2} Mpps offered), Tollgate's XDP cookies {:.2} M SYN-ACKs/s ({:.2} Mpps offered); xdp / kernel = {:.1}",
        k / 1e6,
        k_offered / 1e6,
        x / 1e6,
        x_offered / 1e6,
        x / k.max(1.0)
    );
    Ok(())
}
