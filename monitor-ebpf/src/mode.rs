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

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_get_buff_len, generated::bpf_ktime_get_coarse_ns},
    programs::XdpContext,
};
use monitor_common::{
    maps::JUMP_SYNACK,
    reason::{Reason, Verdict},
    syncookie::{SynAt, cookie_event},
    types::{PacketInfo, ReplayRecord},
};

use crate::maps::{TG_JUMP, TG_JUMP_LINEAR, TG_REPLAY_CLK, TG_REPLAY_OUT, TG_SYN_AT};

/// How an entry point gets the time and whether it records its verdicts.
pub trait Mode {
    /// Whether the drop cache (`drops`) is used: not in replay, which
    /// records every packet's full parse and has a clock of its own.
    const DROP_CACHE: bool;
    /// Whether the entry is multi-buffer (`xdp.frags`): the frame may span
    /// several buffers, so its length is asked of the kernel.
    const FRAGS: bool;
    fn now_ns() -> u64;
    fn record(info: &PacketInfo, reason: Reason, verdict: Verdict, len: u64);
    /// The XDP action for a SYN the cookie path answers.
    fn answer_syn(ctx: &XdpContext, info: &PacketInfo, now: u64) -> u32;
}

/// Production: `CLOCK_MONOTONIC_COARSE`, the clock the kernel updates once
/// per tick (4 ms at HZ=250). Reading it is a helper call that loads a
/// word (a few ns, about 20 where the kernel's returns go through a
/// mitigation thunk); `bpf_ktime_get_ns` reads the TSC besides and cost
/// 17 ns of a ~100 ns packet in `cargo xtask bench` on an Intel Xeon.
/// Buckets stay exact in the long run (the clock never drifts, it only
/// advances in steps); within a tick a source can receive at most its
/// burst, so the daemon refuses bursts smaller than one tick's worth of
/// rate, which keeps "a source under its rate is never dropped" true.
/// iptables' hashlimit and nftables' limit count in jiffies too.
///
/// `DROP_CACHE` is false only in the bench's reference program
/// (`tollgate_uncached`): the same pipeline without the drop cache, so the
/// bench can say in one run what the cache costs a packet it misses.
/// `FRAGS` tells the multi-buffer entry (`tollgate`, for MTUs past a
/// page) from the single-buffer one (`tollgate_linear`, the one attached
/// wherever the kernel takes it).
pub struct Live<const DROP_CACHE: bool, const FRAGS: bool>;
impl<const C: bool, const F: bool> Mode for Live<C, F> {
    const DROP_CACHE: bool = C;
    const FRAGS: bool = F;
    #[inline(always)]
    fn now_ns() -> u64 {
        unsafe { bpf_ktime_get_coarse_ns() }
    }
    #[inline(always)]
    fn record(_: &PacketInfo, _: Reason, _: Verdict, _: u64) {}
    /// Jumps to `tollgate_synack` (or its single-buffer twin), which
    /// rewrites the frame and sends it;
    /// with an empty jump slot (a loader that did not fill it) the SYN is
    /// dropped and counted as `cookie_event::FAILED` (its verdict was
    /// counted as `tx` already).
    #[inline(always)]
    fn answer_syn(ctx: &XdpContext, info: &PacketInfo, now: u64) -> u32 {
        if let Some(at) = TG_SYN_AT.get_ptr_mut(0) {
            unsafe {
                *at = SynAt {
                    l3_off: info.l3_off,
                    l4_off: info.l4_off,
                    family: info.family,
                    _pad: [0; 3],
                    now_ms: (now / 1_000_000) as u32,
                    options: Default::default(),
                };
                if F {
                    TG_JUMP.tail_call(ctx, JUMP_SYNACK)
                } else {
                    TG_JUMP_LINEAR.tail_call(ctx, JUMP_SYNACK)
                };
            }
        }
        crate::cookie::event(cookie_event::FAILED);
        xdp_action::XDP_DROP
    }
}

/// Replay: "now" is the capture's timestamp, so a limit judges the capture
/// as it happened rather than at replay speed.
pub struct Replay;
impl Mode for Replay {
    const DROP_CACHE: bool = false;
    const FRAGS: bool = true;
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
    /// Replay shows what the SYN would get and sends nothing.
    #[inline(always)]
    fn answer_syn(_: &XdpContext, _: &PacketInfo, _: u64) -> u32 {
        xdp_action::XDP_TX
    }
}

/// The whole frame's length, all of its buffers (a jumbo frame's headers
/// are in the first; its bytes count in full). Masked to 18 bits (256 KiB,
/// past any frame XDP sees): the verifier then knows its range, and prunes
/// the paths that use it.
///
/// A single-buffer program reads a short frame's length from its buffer:
/// two loads, not the `bpf_xdp_get_buff_len` helper call, which costs
/// about 20 ns where the kernel's returns go through a mitigation thunk
/// (the drop cache's whole fast path took 32-35 ns over the floor with
/// it). Drivers give such a program frames in one buffer and refuse it
/// where frames do not fit one (a larger MTU later gets the multi-buffer
/// program put in its place, `loader::Tollgate::refit`); veth is the
/// exception:
/// it may still hand one a multi-buffer frame (GRO asked for on it, or a
/// program swapped into a link at a larger MTU), but it fills the first
/// buffer to a page's worth first (`skb_pp_cow_data`). A frame of
/// `LINEAR_SURE` bytes or more in its first buffer is therefore measured
/// by the helper in either program, and a shorter one cannot have more.
/// (A frame reaching a veth in another shape, redirected from another
/// device's XDP, could have a shorter first buffer; no such setup is in
/// Tollgate's scope.) BPF_PROG_TEST_RUN splits a long frame the same way
/// (`tests/tests/mode.rs`).
#[inline(always)]
pub fn frame_len<M: Mode>(ctx: &XdpContext) -> u64 {
    let first = (ctx.data_end() - ctx.data()) as u64 & 0x3_ffff;
    if !M::FRAGS && first < LINEAR_SURE {
        first
    } else {
        unsafe { bpf_xdp_get_buff_len(ctx.ctx) & 0x3_ffff }
    }
}

/// Below a page's worth (4 KiB pages, less veth's headroom and the skb's
/// tailroom, about 3.3 KiB) with room to spare; above any frame of a
/// 1,500-byte MTU, so no such frame calls the helper.
const LINEAR_SURE: u64 = 2048;
