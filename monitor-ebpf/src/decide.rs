//! The decision pipeline for one packet, shared by the production and
//! replay entries: `judge` parses the packet, `decide` first lets the
//! SYN-cookie gate (`cookie`) take TCP to a protected port, then finds (or creates)
//! its source and resolves what applies to it, then enforces allow, deny,
//! bans and the rule's buckets (`enforce`, or `enforce_untracked` when the
//! table took nothing), the host-wide SYN limit and the malformed verdict;
//! `judge` counts the outcome. A change to what happens to a packet goes
//! here; what is recorded about its source goes in `flow`, how a header is
//! read in `parse`, the bucket arithmetic in `limit`.

use aya_ebpf::programs::XdpContext;
use monitor_common::{
    maps::{signal, source_event},
    reason::{Reason, Verdict},
    syncookie::cookie_mode,
    types::{PacketInfo, RuntimeConfig, SourceControl, SourceKey, action, family, l4, tcp_flag},
};

use crate::{
    atomic, cookie, drops,
    flow::record_flow,
    limit,
    maps::{self, TG_CONFIG, TG_HOT, TG_PACKET},
    mem,
    mode::{self, Mode},
    parse, policy, prefix,
    sources::{self, Source},
    stats,
};

/// Parses, decides and counts one packet; returns its XDP action. A
/// packet the drop cache knows to drop is counted and dropped before the
/// parse (`drops::hit` reads its source alone, and the clock only when
/// its tick has not confirmed the drop).
#[inline(always)]
pub fn judge<M: Mode>(ctx: &XdpContext) -> u32 {
    let len = mode::frame_len::<M>(ctx);
    // The clock, read only when needed, and once (a reading of 0 is read
    // again, which changes nothing). Not an `Option`: the verifier cannot
    // always tell a `None` from a `Some`, and its value's stack slot may
    // hold something else while it is `None`.
    let mut clock = 0;
    let mut now = || {
        if clock == 0 {
            clock = M::now_ns();
        }
        clock
    };
    if M::DROP_CACHE
        && let Some(reason) = drops::hit(ctx, len, &mut now)
    {
        stats::count(
            stats::iface_slot(ctx.ingress_ifindex() as u32),
            reason,
            Verdict::Drop,
            len,
        );
        return Verdict::Drop.xdp_action();
    }
    pipeline::<M>(ctx, len, now())
}

/// The full pipeline for a packet the drop cache does not drop.
///
/// A function of its own in the program (a BPF-to-BPF call) so that the
/// drop cache's fast path (`drops::hit`, inlined above) makes no call of
/// its own: each call and return costs about 20 ns on a CPU whose returns
/// go through a mitigation thunk, a third of the fast path's cost there,
/// and a small part of the pipeline's. The verifier walks the pipeline
/// once per way to miss the cache that reaches it in a different state;
/// the call's arguments are all that is live of the caller.
#[inline(never)]
fn pipeline<M: Mode>(ctx: &XdpContext, len: u64, now: u64) -> u32 {
    let Some(info) = TG_PACKET.get_ptr_mut(0) else {
        // An array slot always exists; this only satisfies the verifier.
        return Verdict::Pass.xdp_action();
    };
    // SAFETY: the slot is this CPU's, and XDP programs do not nest on a CPU.
    let info = unsafe { &mut *info };
    mem::zero(info);
    parse::parse(ctx, info);
    let info = &*info;
    let (reason, verdict) = decide::<M>(ctx, info, len, now);
    stats::count(
        stats::iface_slot(ctx.ingress_ifindex() as u32),
        reason,
        verdict,
        len,
    );
    stats::count_malformed(info.malformed, len);
    M::record(info, reason, verdict, len);
    if verdict == Verdict::Tx {
        return M::answer_syn(ctx, info, now);
    }
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
fn decide<M: Mode>(ctx: &XdpContext, info: &PacketInfo, len: u64, now: u64) -> (Reason, Verdict) {
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
    let key = if info.family == family::IPV4 {
        SourceKey::v4(info.src[0], cfg.v4_mask)
    } else {
        SourceKey::v6(&info.src, &cfg.v6_mask)
    };
    let protected = cookie::protected(&cfg.cookie, info);
    if protected && let Some(decided) = cookie::gate(ctx, info, &key, cfg, now) {
        return decided;
    }
    let src = match source_entry(&key, info, cfg, now) {
        Ok(src) => src,
        Err((fresh, why)) => {
            stats::source_event(why);
            let refused = why == source_event::REFUSED;
            let decided = decide_untracked(info, cfg, &fresh, protected, refused, now);
            if why != source_event::INSERT_FAILED
                && cfg.storm_since_ns != 0
                && decided.1 != Verdict::Drop
            {
                sources::note_once(&key);
            }
            return decided;
        }
    };
    record_flow(src, info, len, now, cfg.port_window);
    // Read once: the daemon may bump it meanwhile, and a drop cached
    // under the new generation must have been decided under it.
    let generation = cfg.generation;
    if unsafe { (*src.ctl).generation } != generation {
        policy::refresh(src.ctl, info, generation);
    }
    let since_base = now.saturating_sub(cfg.clock_base_ns);
    let (reason, verdict, until) = enforce(src.ctl, info, cfg, generation, len, now, since_base);
    // Only `enforce`'s own drops last: a monitored rule's verdict that the
    // malformed verdict below turns into a drop holds for this packet.
    let lasting = verdict == Verdict::Drop && until > now;
    let (reason, verdict) = if verdict == Verdict::Pass
        && syn_limited(
            info,
            cfg,
            reason,
            protected,
            known_client(src.ctl, cfg),
            since_base,
        ) {
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
        if is_syn(info) && matches!(reason, Reason::Banned | Reason::Deny) {
            stats::signal(signal::SYN_ANSWERED);
        }
        // The checks after `enforce` only turn a pass (or a monitored
        // verdict) into a drop, never change a drop's reason.
        if M::DROP_CACHE && lasting {
            drops::remember(&key, src.slot, reason, until, generation, now);
        }
    }
    if matches!(
        reason,
        Reason::RateLimitedPackets | Reason::RateLimitedBytes
    ) {
        report_hot(src.ctl, &key, cfg.hot_window);
    }
    (reason, verdict)
}

/// Whether a packet that would pass is a new connection past the
/// host-wide SYN limit (set only during a spoofed SYN flood), which takes
/// its token. Allowed sources are exempt like everywhere, and so are
/// `known` sources (`known_client`: a spoofed source cannot complete a
/// handshake, it never sees the SYN-ACK). A bare SYN that reaches here on
/// a port the cookies answer for comes from a verified or allowed
/// source: exempt too.
#[inline(always)]
fn syn_limited(
    info: &PacketInfo,
    cfg: &RuntimeConfig,
    reason: Reason,
    protected: bool,
    known: bool,
    since_base: u64,
) -> bool {
    reason != Reason::Allow
        && is_syn(info)
        && cfg.syn_limit.is_limited()
        && !(protected && cfg.cookie.mode == cookie_mode::ON && cookie::bare_syn(info))
        && !known
        && !limit::syn_allowed(&cfg.syn_limit, since_base)
}

/// The verdict for a packet whose source the table did not take this
/// time (`fresh`: the control record it would have had): its rule and
/// ban, then its prefix's budget, the SYN limit and the malformed verdict.
/// `refused`: its prefixes' budgets already refused it
/// (`prefix::refuses_new`, which looks at the budget `prefix::over` would
/// charge), so they are not looked at again: a storm's refused frame pays
/// for one look.
#[inline(always)]
fn decide_untracked(
    info: &PacketInfo,
    cfg: &RuntimeConfig,
    fresh: &SourceControl,
    protected: bool,
    refused: bool,
    now: u64,
) -> (Reason, Verdict) {
    let since_base = now.saturating_sub(cfg.clock_base_ns);
    let (reason, verdict) = match enforce_untracked(fresh, now) {
        // Charged to its prefixes as a source first seen now; refused, it
        // gets what its rule gives a refusal.
        (Reason::Untracked, Verdict::Pass)
            if refused || prefix::over(info, cfg, now, now, since_base).is_some() =>
        {
            (
                Reason::PrefixLimited,
                prefix_verdict(cfg, would_drop(fresh)),
            )
        }
        // A source without a record is no known client: the spoofed SYN
        // flood's never-seen sources (on probation, or refused a slot)
        // meet the SYN limit like any other.
        (reason, Verdict::Pass) if syn_limited(info, cfg, reason, protected, false, since_base) => {
            (Reason::SynLimited, Verdict::Drop)
        }
        decided => decided,
    };
    if verdict != Verdict::Drop && info.malformed != 0 {
        return (Reason::Malformed, malformed_verdict(cfg));
    }
    (reason, verdict)
}

/// A new TCP connection: SYN without ACK.
#[inline(always)]
fn is_syn(info: &PacketInfo) -> bool {
    info.l4 == l4::TCP && info.tcp_flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN
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

/// Allow, deny, ban, then the rule's buckets, then the prefix's budget.
/// A rule in monitor mode passes what it would have dropped, with verdict
/// `Monitor`; bans are always enforced. A drop comes with the instant
/// (coarse-clock ns) until which every packet of the source gets the
/// same, for the drop cache, or 0 if none is certain.
#[inline(always)]
fn enforce(
    ctl: *mut SourceControl,
    info: &PacketInfo,
    cfg: &RuntimeConfig,
    generation: u32,
    len: u64,
    now: u64,
    since_base: u64,
) -> (Reason, Verdict, u64) {
    let slot = unsafe { (*ctl).rule_slot };
    let Some(rule) = maps::rule(generation & 1, slot) else {
        return (Reason::Pass, Verdict::Pass, 0);
    };
    let would_drop = rule.refusal();
    match rule.action {
        action::ALLOW => return (Reason::Allow, Verdict::Pass, 0),
        action::DENY => return (Reason::Deny, would_drop, u64::MAX),
        _ => {}
    }
    let ban_until = unsafe { (*ctl).ban_until_ns };
    if now < ban_until {
        return (Reason::Banned, Verdict::Drop, ban_until);
    }
    match limit::apply(ctl, rule, len, since_base) {
        Some((reason, at)) => (reason, would_drop, on_coarse_clock(at, now, since_base)),
        None => match prefix::over(info, cfg, unsafe { (*ctl).first_seen_ns }, now, since_base) {
            // Refused by what its prefix's sources share: it charged its
            // own buckets nothing, so every packet until that budget has a
            // unit again is refused the same way, unless the rule limits
            // bytes (a longer packet may meet that bucket first).
            Some(at) => {
                limit::refund(ctl, rule, len);
                let until = if rule.byte.is_limited() {
                    0
                } else {
                    on_coarse_clock(at, now, since_base)
                };
                (
                    Reason::PrefixLimited,
                    prefix_verdict(cfg, would_drop),
                    until,
                )
            }
            None => (Reason::Pass, Verdict::Pass, 0),
        },
    }
}

/// A drop's end `at` (ns since the clock base, 0: none certain) on the
/// coarse clock the drop cache reads: `since_base` is `now -
/// clock_base_ns`, so the instant moves back the same way.
#[inline(always)]
fn on_coarse_clock(at: u64, now: u64, since_base: u64) -> u64 {
    if at == 0 {
        0
    } else {
        at.saturating_add(now - since_base)
    }
}

/// A prefix refusal's verdict: `would_drop` (the source rule's), or
/// `Monitor` while the prefix budgets only watch.
#[inline(always)]
fn prefix_verdict(cfg: &RuntimeConfig, would_drop: Verdict) -> Verdict {
    if cfg.prefix.monitor != 0 {
        Verdict::Monitor
    } else {
        would_drop
    }
}

/// The source's records, created (already resolved against the policy)
/// if it is new. If the table took nothing this time, the control record
/// it would have had (its rule and ban), for `enforce_untracked`, and why
/// (`source_event::INSERT_FAILED`; `REFUSED`: its prefixes' budgets refuse
/// the packet, and a never-seen source claims no slot for it; `PROBATION`:
/// during a storm a never-seen source claims one with its second packet
/// that passed, and `decide` notes the first).
#[inline(always)]
fn source_entry(
    key: &SourceKey,
    info: &PacketInfo,
    cfg: &RuntimeConfig,
    now: u64,
) -> Result<Source, (SourceControl, u32)> {
    if let Some(src) = sources::find(key) {
        return Ok(src);
    }
    let generation = cfg.generation;
    let (rule_slot, ban_until_ns, skipped) =
        policy::lookup_one_packet(info, generation, cfg.empty_tries);
    let fresh = SourceControl {
        first_seen_ns: now,
        ban_until_ns,
        // A slot keeps its rule and ban for the generation, and one
        // resolved on empty-trie bits is only good for an unkept verdict
        // (`policy::lookup_one_packet`): a source that claims a slot with
        // it finds its generation behind and resolves in full (`decide`,
        // `policy::refresh`) before this packet is enforced. Two
        // generations back: the low bit, the policy set in use, stays.
        generation: generation.wrapping_sub((skipped as u32) << 1),
        rule_slot,
        ..SourceControl::default()
    };
    // A packet its prefixes' budgets refuse is judged without a slot (a
    // source whose rule allows it or only watches excepted: its packets
    // pass, and it keeps its flow record): a storm over a spent prefix
    // claims none and evicts nobody. During a storm, so is a never-seen
    // source's first packet.
    if would_drop(&fresh) == Verdict::Drop && prefix::refuses_new(info, cfg, now) {
        return Err((fresh, source_event::REFUSED));
    }
    if cfg.storm_since_ns != 0 && !sources::off_probation(key) {
        return Err((fresh, source_event::PROBATION));
    }
    match sources::claim(key, &fresh) {
        Ok(p) => {
            stats::source_event(source_event::CREATED);
            if policy::is_bogon(info) {
                stats::signal(signal::BOGON_SOURCE);
            }
            Ok(p)
        }
        Err(Some(theirs)) => Ok(theirs),
        Err(None) => Err((fresh, source_event::INSERT_FAILED)),
    }
}

/// What a refusal of a never-seen source's packet is under its rule:
/// `Drop`, `Monitor` while the rule only watches, and `Pass` for a source
/// the rule allows (no check applies to it).
#[inline(always)]
fn would_drop(fresh: &SourceControl) -> Verdict {
    match maps::rule(fresh.generation & 1, fresh.rule_slot) {
        Some(r) if r.action == action::ALLOW => Verdict::Pass,
        Some(r) => r.refusal(),
        None => Verdict::Drop,
    }
}

/// A packet whose source the table did not take this time: there are no
/// buckets to charge, but its rule's allow or deny and its ban apply as
/// they would (same order as `enforce`).
#[inline(always)]
pub(crate) fn enforce_untracked(fresh: &SourceControl, now: u64) -> (Reason, Verdict) {
    let Some(rule) = maps::rule(fresh.generation & 1, fresh.rule_slot) else {
        return (Reason::Untracked, Verdict::Pass);
    };
    match rule.action {
        action::ALLOW => (Reason::Allow, Verdict::Pass),
        action::DENY => (Reason::Deny, rule.refusal()),
        _ if now < fresh.ban_until_ns => (Reason::Banned, Verdict::Drop),
        _ => (Reason::Untracked, Verdict::Pass),
    }
}

/// Puts an over-limit source in the daemon's hot list, once per window:
/// the first limited packet of the window pays one map update, the rest of
/// a flood only a compare. A full list refuses it, counted.
#[inline(always)]
fn report_hot(ctl: *mut SourceControl, key: &SourceKey, window: u32) {
    let s = unsafe { &mut *ctl };
    if s.hot_window != window {
        s.hot_window = window;
        if TG_HOT.insert(key, &window, 0).is_err() {
            stats::signal(signal::HOT_LOST);
        }
    }
}
