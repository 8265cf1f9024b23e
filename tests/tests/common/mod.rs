//! Helpers shared by the kernel tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::PathBuf;

pub mod daemon;

use monitor_common::types::SourceKey;
use tollgate::{
    loader::{LoadOptions, Tollgate},
    policy::Policy,
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

/// The `tollgate` binary built by this workspace (cargo builds it for
/// `cargo test --workspace`, which `cargo xtask test` runs).
pub fn tollgate_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>: the profile directory is two up.
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("debug"));
    let bin = profile_dir.join("tollgate");
    assert!(
        bin.exists(),
        "{} is missing: run the suite with `cargo xtask test`, which builds it first (or `cargo build -p monitor`)",
        bin.display()
    );
    bin
}
