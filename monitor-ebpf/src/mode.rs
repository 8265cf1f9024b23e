//! How an entry gets the time and whether it records its verdict: the
//! `Mode` the decision pipeline (`decide::judge`) is generic over, and its
//! two kinds, `Live` for the production entry and `Replay` for the replay
//! entry.
//!
//! The entries in `main.rs` only pick a mode; the pipeline is what calls
//! it. It lives here rather than beside the entries so that `decide` does
//! not import the crate root that imports `decide` (a cycle), and since
//! both kinds are resolved at compile time the production program carries
//! no trace of the replay record.

use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;
use monitor_common::{
    reason::{Reason, Verdict},
    types::{PacketInfo, ReplayRecord},
};

use crate::maps::{TG_REPLAY_CLK, TG_REPLAY_OUT};

/// How an entry point gets the time and whether it records its verdicts.
pub trait Mode {
    fn now_ns() -> u64;
    fn record(info: &PacketInfo, reason: Reason, verdict: Verdict, len: u64);
}

/// Production: `CLOCK_MONOTONIC_COARSE`, the clock the kernel updates once
/// per tick (4 ms at HZ=250). Reading it is a load; `bpf_ktime_get_ns`
/// reads the TSC and cost 17 ns of a ~100 ns packet in `cargo xtask bench`.
/// Buckets stay exact in the long run (the clock never drifts, it only
/// advances in steps); within a tick a source can receive at most its
/// burst, so the daemon refuses bursts smaller than one tick's worth of
/// rate, which keeps "a source under its rate is never dropped" true.
/// iptables' hashlimit and nftables' limit count in jiffies too.
pub struct Live;
impl Mode for Live {
    #[inline(always)]
    fn now_ns() -> u64 {
        unsafe { bpf_ktime_get_coarse_ns() }
    }
    #[inline(always)]
    fn record(_: &PacketInfo, _: Reason, _: Verdict, _: u64) {}
}

/// Replay: "now" is the capture's timestamp, so a limit judges the capture
/// as it happened rather than at replay speed.
pub struct Replay;
impl Mode for Replay {
    #[inline(always)]
    fn now_ns() -> u64 {
        TG_REPLAY_CLK.get(0).copied().unwrap_or(0)
    }
    #[inline(always)]
    fn record(info: &PacketInfo, reason: Reason, verdict: Verdict, len: u64) {
        if let Some(out) = TG_REPLAY_OUT.get_ptr_mut(0) {
            unsafe {
                *out = ReplayRecord {
                    info: *info,
                    verdict: verdict as u32,
                    reason: reason as u32,
                    len: len as u32,
                    written: 1,
                }
            };
        }
    }
}
