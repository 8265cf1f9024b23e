//! What answering a SYN with a cookie costs one core: the production
//! program on a SYN to a protected port from an unverified source (gate,
//! tail call, the kernel's cookie, the SYN-ACK built and sent back), next
//! to the same program dropping a banned source's SYN and to the floor.
//!
//! The SYN-ACK is built in place, so a run with repeats would answer the
//! first SYN and then judge its own SYN-ACK: every figure here is one
//! packet per BPF_PROG_TEST_RUN (the kernel's own timing of that one
//! run), the median of many. The kernel's socket path under the same flood
//! is measured in the lab (`tests/tests/syn_flood.rs` prints the SYN-ACKs
//! per second the kernel's own SYN cookies sent, next to Tollgate's).

use aya::programs::{TestRun, TestRunOptions};
use lab::packets::{Spec, linux_syn_options};
use monitor_common::{
    maps::{PROG_FLOOR, PROG_LINEAR},
    syncookie::{CookieParams, cookie_mode},
};
use tollgate::loader::Tollgate;

const RUNS: usize = 20_000;
const PORT: u16 = 443;

/// A SYN as Linux sends it.
fn syn(src: &str) -> Vec<u8> {
    Spec::syn(src, "198.51.100.1", 40000, PORT)
        .tcp_options(&linux_syn_options(1, 7))
        .build()
}

/// The median kernel-timed ns of one run of `prog` on `frame`, and the
/// action it returned.
fn median_ns(tg: &Tollgate, prog: &'static str, frame: &[u8]) -> anyhow::Result<(u64, u32)> {
    let p = tg.program(prog)?;
    let mut out = vec![0u8; 4096];
    let mut ns = Vec::with_capacity(RUNS);
    let mut action = 0;
    for _ in 0..RUNS {
        let r = p.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })?;
        action = r.return_value;
        ns.push(r.duration.as_nanos() as u64);
    }
    ns.sort_unstable();
    Ok((ns[RUNS / 2], action))
}

pub fn run() -> anyhow::Result<()> {
    let mut tg = Tollgate::load(&Default::default())?;
    tg.maps.apply_policy(&Default::default(), Some(0))?;
    tg.maps.set_cookie_ports(&[PORT])?;
    tg.maps.set_cookie_params(CookieParams {
        mode: cookie_mode::ON,
        verified_ttl_s: 3600,
        mss4: 1460,
        mss6: 1440,
        wscale: 7,
        ttl: 64,
        _pad: [0; 2],
        on_since_ns: tollgate::clock::coarse_ns(),
    })?;
    tg.maps.ban("203.0.113.9/32".parse()?, u64::MAX / 2)?;
    let (floor, _) = median_ns(&tg, PROG_FLOOR, &syn("192.0.2.7"))?;
    let (cookie, tx) = median_ns(&tg, PROG_LINEAR, &syn("192.0.2.7"))?;
    let (banned, drop) = median_ns(&tg, PROG_LINEAR, &syn("203.0.113.9"))?;
    anyhow::ensure!(
        (tx, drop) == (3, 1),
        "the SYN was not answered (action {tx}) or the banned SYN not dropped (action {drop})"
    );
    let per_core = |ns: u64| 1e9 / ns.saturating_sub(floor).max(1) as f64 / 1e6;
    println!(
        "syn cookies: one SYN answered from XDP {cookie} ns ({:.2} M SYN-ACKs/s per core net of the {floor} ns floor); a banned SYN dropped {banned} ns ({:.2} Mpps); cookie / drop = {:.2}; medians of {RUNS} single runs",
        per_core(cookie),
        per_core(banned),
        cookie.saturating_sub(floor) as f64 / banned.saturating_sub(floor).max(1) as f64
    );
    Ok(())
}
