//! Helpers shared by the kernel tests (the program through
//! BPF_PROG_TEST_RUN): loading it with a test policy, judging frames,
//! policy and frame builders, and running on two CPUs at once. The daemon
//! harness is the lab library's (`lab::daemon`).
#![allow(dead_code, reason = "each test binary uses a different subset")]

use aya::programs::{TestRun, TestRunOptions};
use lab::packets::Spec;
use monitor_common::{syncookie::CookieParams, types::SourceKey};
use tollgate::{
    loader::{LoadOptions, Tollgate},
    policy::{Action, Limit, Policy, Rate, Rule},
    replay::{Judged, PacketReport},
};

/// The tracked source keys as the sweep of the slots sees them and as
/// the index does, each sorted (equal when the two are in step).
pub fn swept_and_indexed(tg: &Tollgate) -> (Vec<SourceKey>, Vec<SourceKey>) {
    let mut swept = Vec::new();
    tg.maps.for_each_source(|f| swept.push(f.key)).unwrap();
    let mut indexed: Vec<_> = tg
        .maps
        .sources()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    swept.sort_by_key(|k| (k.family, k.addr));
    indexed.sort_by_key(|k| (k.family, k.addr));
    (swept, indexed)
}

/// Loads the real XDP object with a small source table (tests run in
/// parallel; a million preallocated entries each would be wasteful) and
/// applies `policy` with the bucket clock based at 0, as `tollgate replay`
/// does.
pub fn load(policy: &Policy) -> Tollgate {
    load_with(4096, policy)
}

/// `load` with a source table of `max_sources` slots.
pub fn load_with(max_sources: u32, policy: &Policy) -> Tollgate {
    let mut tg = Tollgate::load(&LoadOptions {
        max_sources,
        ..Default::default()
    })
    .expect("loading Tollgate's XDP object (tests run as root on a BPF-enabled kernel)");
    tg.maps
        .apply_policy(policy, Some(0))
        .expect("applying the test policy");
    tg
}

/// Runs the loaded program `prog` (real clock, tail calls) once on
/// `frame`: its XDP action and the frame as it left the program.
pub fn run_out(tg: &Tollgate, prog: &'static str, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; 4096];
    let r = tg
        .program(prog)
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of {prog}: {e}"));
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// Judges one frame at `now_ns` through the replay program.
pub fn judge(tg: &mut Tollgate, frame: &[u8], now_ns: u64) -> Judged {
    tg.judge_frame(frame, now_ns)
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on a {}-byte frame: {e:#}", frame.len()))
}

pub fn report(tg: &mut Tollgate, frame: &[u8], now_ns: u64) -> PacketReport {
    let j = judge(tg, frame, now_ns);
    assert_eq!(
        j.action,
        j.verdict().xdp_action(),
        "the returned XDP action matches the recorded verdict"
    );
    PacketReport::from_judged(1, frame.len(), &j)
}

pub fn key(tg: &Tollgate, addr: &str) -> SourceKey {
    tg.maps
        .source_key(addr.parse().expect("test address"))
        .expect("reading the runtime config")
}

pub const SEC: u64 = 1_000_000_000;

/// A rule for `net` (a CIDR).
pub fn rule(net: &str, action: Action) -> Rule {
    Rule::new(net.parse().expect("test CIDR"), action)
}

/// A packets-per-second limit with no byte limit.
pub fn pps(per_sec: u64, burst: u64) -> Limit {
    Limit {
        packets: Some(Rate { per_sec, burst }),
        bytes: None,
    }
}

/// A default limit (a million packets a second, as much burst) that no
/// test's packets reach: for tests of what happens besides the buckets.
pub fn generous() -> Policy {
    Policy {
        default: pps(1_000_000, 1_000_000),
        ..Policy::default()
    }
}

/// A UDP frame from `src` to a documentation address of its family.
pub fn udp(src: &str) -> Vec<u8> {
    let dst = if src.contains(':') {
        "2001:db8:ffff::1"
    } else {
        "198.51.100.1"
    };
    Spec::udp(src, dst, 40000, 53).build()
}

/// Runs `work` on CPUs 0 and 1 at once (`lab::traffic::on_two_cpus`,
/// which checks that they did); a test of races proves nothing otherwise.
pub fn on_two_cpus(work: impl Fn() + Sync) {
    lab::traffic::on_two_cpus(work).unwrap_or_else(|e| panic!("{e:#}"));
}

/// Turns the SYN cookies to `mode` (`cookie_mode::*`) for TCP `ports`,
/// as the daemon writes them.
pub fn cookies_on(tg: &mut Tollgate, ports: &[u16], mode: u32) {
    tg.maps
        .set_cookie_ports(ports)
        .expect("writing the protected ports");
    tg.maps
        .set_cookie_params(CookieParams {
            mode,
            verified_ttl_s: 3600,
            mss4: 1400,
            mss6: 1380,
            wscale: 9,
            ttl: 61,
            _pad: [0; 2],
            on_since_ns: tollgate::clock::coarse_ns(),
        })
        .expect("writing the cookie settings");
}
