//! Tollgate's XDP programs. The entries are thin: `judge` parses (parse),
//! finds the source's entry and its cached rule (policy), applies bans and
//! buckets (limit), and counts (stats). Three entries share that code:
//!
//! - `tollgate`: the production program, clock from `CLOCK_MONOTONIC_COARSE`;
//! - `tollgate_replay`: the same decisions with the clock taken from the
//!   replay map and a record of each verdict, for `tollgate replay` and the
//!   tests; the production program never pays for the record;
//! - `tollgate_parse`: the parser alone, and `tollgate_floor`, which only
//!   returns XDP_PASS: the benchmark's reference points.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "BPF atomics need the intrinsics; see atomic.rs"
)]

mod atomic;
mod generator;
mod limit;
mod maps;
mod parse;
mod policy;
mod sources;
mod stats;

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_ktime_get_coarse_ns, macros::xdp,
    programs::XdpContext,
};
use monitor_common::{
    maps::{signal, source_event},
    reason::{Reason, Verdict},
    types::{
        PacketInfo, ReplayRecord, RuntimeConfig, SourceControl, SourceKey, action, family, l4,
        port_bit, rule_flag, tcp_flag,
    },
};

use crate::{
    maps::{TG_CONFIG, TG_HOT, TG_REPLAY_CLK, TG_REPLAY_OUT},
    sources::Source,
};

/// How an entry point gets the time and whether it records its verdicts.
trait Mode {
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
struct Live;
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
struct Replay;
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

#[xdp]
pub fn tollgate(ctx: XdpContext) -> u32 {
    judge::<Live>(&ctx)
}

#[xdp]
pub fn tollgate_replay(ctx: XdpContext) -> u32 {
    judge::<Replay>(&ctx)
}

/// The parser alone; the description is stored so the compiler cannot
/// drop the parse.
#[xdp]
pub fn tollgate_parse(ctx: XdpContext) -> u32 {
    let mut info = PacketInfo::default();
    parse::parse(&ctx, &mut info);
    if let Some(out) = TG_REPLAY_OUT.get_ptr_mut(0) {
        unsafe { (*out).info = info };
    }
    xdp_action::XDP_PASS
}

/// Nothing but XDP_PASS: the cost of BPF_PROG_TEST_RUN itself.
#[xdp]
pub fn tollgate_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[inline(always)]
fn judge<M: Mode>(ctx: &XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let mut info = PacketInfo::default();
    parse::parse(ctx, &mut info);
    let (reason, verdict) = decide::<M>(&info, len);
    stats::count(
        stats::iface_slot(ctx.ingress_ifindex() as u32),
        reason,
        verdict,
        len,
    );
    stats::count_malformed(info.malformed, len);
    M::record(&info, reason, verdict, len);
    verdict.xdp_action()
}

#[inline(always)]
fn malformed_verdict(cfg: &RuntimeConfig) -> Verdict {
    if cfg.malformed_verdict == Verdict::Pass as u32 {
        Verdict::Pass
    } else {
        Verdict::Drop
    }
}

#[inline(always)]
fn decide<M: Mode>(info: &PacketInfo, len: u64) -> (Reason, Verdict) {
    let Some(cfg) = TG_CONFIG.get(0) else {
        // An array slot always exists; this only satisfies the verifier.
        return (Reason::NonIp, Verdict::Pass);
    };
    if info.family == family::OTHER {
        return (Reason::NonIp, Verdict::Pass);
    }
    if !info.has_source() {
        return (Reason::Malformed, malformed_verdict(cfg));
    }
    let now = M::now_ns();
    let key = if info.family == family::IPV4 {
        SourceKey::v4(info.src[0], cfg.v4_mask)
    } else {
        SourceKey::v6(&info.src, &cfg.v6_mask)
    };
    let src = match source_entry(&key, info, cfg.generation, now) {
        Ok(src) => src,
        Err(fresh) => {
            stats::source_event(source_event::INSERT_FAILED);
            let (reason, verdict) = enforce_untracked(&fresh, now);
            if verdict != Verdict::Drop && info.malformed != 0 {
                return (Reason::Malformed, malformed_verdict(cfg));
            }
            return (reason, verdict);
        }
    };
    record_flow(src, info, len, now, cfg.port_window);
    if unsafe { (*src.ctl).generation } != cfg.generation {
        policy::refresh(src.ctl, info, cfg.generation);
    }
    let since_base = now.saturating_sub(cfg.clock_base_ns);
    let (reason, verdict) = enforce(src.ctl, cfg.generation, len, now, since_base);
    // New connections past the host-wide SYN limit (set only during a
    // spoofed SYN flood); allowed sources are exempt like everywhere, and so
    // are sources known before the flood that completed a handshake (a
    // spoofed source cannot: it never sees the SYN-ACK).
    let is_syn =
        info.l4 == l4::TCP && info.tcp_flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN;
    let (reason, verdict) = if verdict == Verdict::Pass
        && reason != Reason::Allow
        && is_syn
        && cfg.syn_limit.is_limited()
        && !known_client(src.ctl, cfg)
        && !limit::syn_allowed(&cfg.syn_limit, since_base)
    {
        (Reason::SynLimited, Verdict::Drop)
    } else {
        (reason, verdict)
    };
    // Malformed packets that their source's limits let through (or that a
    // monitored rule would have dropped) get the malformed verdict.
    let (reason, verdict) = if verdict != Verdict::Drop && info.malformed != 0 {
        (Reason::Malformed, malformed_verdict(cfg))
    } else {
        (reason, verdict)
    };
    if verdict == Verdict::Drop {
        atomic::add(unsafe { &mut (*src.flow).dropped }, 1);
    }
    if matches!(
        reason,
        Reason::RateLimitedPackets | Reason::RateLimitedBytes
    ) {
        report_hot(src.ctl, &key, cfg.hot_window);
    }
    (reason, verdict)
}

/// A source that completed a handshake (sent a bare ACK) and was first
/// seen before the SYN limit began.
#[inline(always)]
fn known_client(ctl: *const SourceControl, cfg: &RuntimeConfig) -> bool {
    let s = unsafe { &*ctl };
    s.acks > 0
        && s.first_seen_ns.saturating_sub(cfg.clock_base_ns)
            < cfg.syn_known_before_s as u64 * 1_000_000_000
}

/// Allow, deny, ban, then the rule's buckets. A rule in monitor mode
/// passes what it would have dropped, with verdict `Monitor`; bans are
/// always enforced.
#[inline(always)]
fn enforce(
    ctl: *mut SourceControl,
    generation: u32,
    len: u64,
    now: u64,
    since_base: u64,
) -> (Reason, Verdict) {
    let slot = unsafe { (*ctl).rule_slot };
    let Some(rule) = maps::rule(generation & 1, slot) else {
        return (Reason::Pass, Verdict::Pass);
    };
    let would_drop = if rule.flags & rule_flag::MONITOR != 0 {
        Verdict::Monitor
    } else {
        Verdict::Drop
    };
    match rule.action {
        action::ALLOW => return (Reason::Allow, Verdict::Pass),
        action::DENY => return (Reason::Deny, would_drop),
        _ => {}
    }
    if now < unsafe { (*ctl).ban_until_ns } {
        return (Reason::Banned, Verdict::Drop);
    }
    match limit::apply(ctl, rule, len, since_base) {
        Some(reason) => (reason, would_drop),
        None => (Reason::Pass, Verdict::Pass),
    }
}

/// The source's records, created (already resolved against the policy)
/// if it is new. If the table took nothing this time, the control record
/// it would have had (its rule and ban), for `enforce_untracked`.
#[inline(always)]
fn source_entry(
    key: &SourceKey,
    info: &PacketInfo,
    generation: u32,
    now: u64,
) -> Result<Source, SourceControl> {
    if let Some(src) = sources::find(key) {
        return Ok(src);
    }
    let (rule_slot, ban_until_ns) = policy::lookup(info, generation);
    let fresh = SourceControl {
        first_seen_ns: now,
        ban_until_ns,
        generation,
        rule_slot,
        ..SourceControl::default()
    };
    match sources::claim(key, &fresh) {
        Ok(p) => {
            stats::source_event(source_event::CREATED);
            if policy::is_bogon(info) {
                stats::signal(signal::BOGON_SOURCE);
            }
            Ok(p)
        }
        Err(Some(theirs)) => Ok(theirs),
        Err(None) => Err(fresh),
    }
}

/// A packet whose source the table did not take this time: there are no
/// buckets to charge, but its rule's allow or deny and its ban apply as
/// they would (same order as `enforce`).
#[inline(always)]
fn enforce_untracked(fresh: &SourceControl, now: u64) -> (Reason, Verdict) {
    let Some(rule) = maps::rule(fresh.generation & 1, fresh.rule_slot) else {
        return (Reason::Untracked, Verdict::Pass);
    };
    match rule.action {
        action::ALLOW => (Reason::Allow, Verdict::Pass),
        action::DENY if rule.flags & rule_flag::MONITOR != 0 => (Reason::Deny, Verdict::Monitor),
        action::DENY => (Reason::Deny, Verdict::Drop),
        _ if now < fresh.ban_until_ns => (Reason::Banned, Verdict::Drop),
        _ => (Reason::Untracked, Verdict::Pass),
    }
}

/// Puts an over-limit source in the daemon's hot list, once per window:
/// the first limited packet of the window pays one map update, the rest of
/// a flood only a compare.
#[inline(always)]
fn report_hot(ctl: *mut SourceControl, key: &SourceKey, window: u32) {
    let s = unsafe { &mut *ctl };
    if s.hot_window != window {
        s.hot_window = window;
        let _ = TG_HOT.insert(key, &window, 0);
    }
}

/// Flow record: CPUs race on one source, so the sums are atomic adds; the
/// last-seen time is a plain store (any CPU's recent time is right). The
/// detection signals (ACKs, the port sketch) are plain updates: a lost
/// race costs one count or one bit of an estimate, not an atomic per
/// packet. Only SYNs are counted host-wide (the host-wide SYN ratio is
/// SYNs over all other packets), which keeps the common packet, an ACK,
/// to one per-CPU counter.
#[inline(always)]
fn record_flow(src: Source, info: &PacketInfo, len: u64, now: u64, window: u32) {
    let (s, ctl) = unsafe { (&mut *src.flow, &mut *src.ctl) };
    atomic::add(&mut s.packets, 1);
    atomic::add(&mut s.bytes, len);
    // A scan probes ports with SYNs or datagrams; an established
    // connection's segments repeat one port, so they skip the sketch.
    let mut probe = info.l4 == l4::UDP;
    if info.l4 == l4::TCP {
        match info.tcp_flags & (tcp_flag::SYN | tcp_flag::ACK) {
            tcp_flag::SYN => {
                atomic::add(&mut s.syns, 1);
                stats::signal(signal::SYN);
                probe = true;
            }
            tcp_flag::ACK => ctl.acks += 1,
            _ => {}
        }
    }
    if probe {
        let bit = port_bit(info.dport);
        if s.port_window != window {
            s.port_window = window;
            s.port_sketch = bit;
        } else if s.port_sketch & bit == 0 {
            s.port_sketch |= bit;
        }
    }
    ctl.last_seen_ns = now;
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
