//! Tollgate's XDP programs: the entries, and nothing else. Each room holds
//! one job, so a change goes where its name says:
//!
//! - `decide`: the decision pipeline for one packet (`judge`): parse, find
//!   or create the source, apply allow/deny, bans and buckets, the SYN
//!   limit and the malformed verdict, then count;
//! - `flow`: the per-source flow record a packet updates (the daemon's
//!   detectors read it);
//! - `mode`: how an entry gets the time and whether it records its verdict
//!   (the entries pick one; `mode.rs` says why it is not kept here);
//! - `parse` (one file per header), `policy` (rule and ban lookups),
//!   `limit` (the buckets), `sources` (the source table), `stats`
//!   (counters), `maps`, `atomic`, `mem` (records stored into map
//!   memory word by word: the packet description, a new source's).
//!
//! - `drops`: the drop cache, the fast path a banned, denied or
//!   over-limit source's packets take until its drop ends.
//! - `cookie`: SYN cookies for the protected ports (the gate here, the
//!   SYN-ACK in its own program).
//!
//! The entries here:
//!
//! - `tollgate_linear`: the production program, clock from
//!   `CLOCK_MONOTONIC_COARSE`, single-buffer: what the daemon attaches
//!   wherever the interface's MTU lets it;
//! - `tollgate`: the same, multi-buffer, for the interfaces it does not;
//! - `tollgate_replay`: the same decisions with the clock taken from the
//!   replay map and a record of each verdict, for `tollgate replay` and the
//!   tests; the production program never pays for the record;
//! - `tollgate_synack` and `tollgate_synack_linear`: the SYN-cookie
//!   SYN-ACK, reached by tail call from `tollgate` and `tollgate_linear`;
//! - `tollgate_parse`: the parser alone, `tollgate_floor`, which only
//!   returns XDP_PASS, and `tollgate_uncached`, the production pipeline
//!   without the drop cache: the benchmark's reference points.
//!
//! The production pipeline comes twice. The kernel attaches only a
//! multi-buffer program (`xdp.frags`) natively to an interface whose MTU
//! does not fit a page (jumbo frames, MTU 9000); it reads its headers from
//! the first buffer, which holds them whatever the MTU, and asks the
//! kernel for the whole frame's length (`mode::frame_len`), a helper call.
//! The single-buffer twin knows the frame is its one buffer and reads the
//! length for free, which is a third of the drop cache's fast path; the
//! daemon attaches it first and falls back to the multi-buffer one where
//! the kernel refuses it. Each has its own SYN-ACK program and jump table:
//! a program array takes only programs of one kind. The replay program is
//! multi-buffer, so it takes any frame a capture holds.
//!
//! One more program, the lab's traffic generator `tollgate_gen`, lives in
//! `generator.rs`; the daemon never loads it.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "BPF atomics need the intrinsics; see atomic.rs"
)]

mod atomic;
mod cookie;
mod decide;
mod drops;
mod flow;
mod generator;
mod limit;
mod maps;
mod mem;
mod mode;
mod parse;
mod policy;
mod prefix;
mod sources;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use monitor_common::syncookie::cookie_event;

use crate::{
    decide::judge,
    maps::TG_REPLAY_OUT,
    mode::{Live, Replay},
};

#[xdp]
pub fn tollgate_linear(ctx: XdpContext) -> u32 {
    judge::<Live<true, false>>(&ctx)
}

#[xdp(frags)]
pub fn tollgate(ctx: XdpContext) -> u32 {
    judge::<Live<true, true>>(&ctx)
}

/// The production pipeline without the drop cache: the bench's reference
/// for what the cache costs a packet it does not drop. Loaded only by the
/// bench, which measures the single-buffer program.
#[xdp]
pub fn tollgate_uncached(ctx: XdpContext) -> u32 {
    judge::<Live<false, false>>(&ctx)
}

#[xdp(frags)]
pub fn tollgate_replay(ctx: XdpContext) -> u32 {
    judge::<Replay>(&ctx)
}

/// Answers the SYN the main program tail-called it for with a SYN-cookie
/// SYN-ACK (`cookie::synack`); if it cannot, the SYN is dropped and
/// counted (`cookie_event::FAILED` says why not passed).
#[xdp(frags)]
pub fn tollgate_synack(ctx: XdpContext) -> u32 {
    synack(&ctx)
}

/// `tollgate_synack` for `tollgate_linear`.
#[xdp]
pub fn tollgate_synack_linear(ctx: XdpContext) -> u32 {
    synack(&ctx)
}

#[inline(always)]
fn synack(ctx: &XdpContext) -> u32 {
    if cookie::synack::answer(ctx).is_some() {
        cookie::event(cookie_event::SENT);
        xdp_action::XDP_TX
    } else {
        cookie::event(cookie_event::FAILED);
        xdp_action::XDP_DROP
    }
}

/// The parser alone, writing to the replay record as the pipeline writes
/// to `TG_PACKET` (map memory, which the verifier does not follow; see
/// `maps::PACKET`): the bench's reference for the parse's cost, and what
/// the packet fuzzer compares with its oracle.
#[xdp(frags)]
pub fn tollgate_parse(ctx: XdpContext) -> u32 {
    if let Some(out) = TG_REPLAY_OUT.get_ptr_mut(0) {
        let info = unsafe { &mut (*out).info };
        mem::zero(info);
        parse::parse(&ctx, info);
    }
    xdp_action::XDP_PASS
}

/// Nothing but XDP_PASS: the cost of BPF_PROG_TEST_RUN itself.
#[xdp]
pub fn tollgate_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
