//! The drop cache in the kernel: `hit`, the fast path `judge` tries before
//! the full pipeline (the source read, one lookup of this CPU's two
//! entries for it, per-CPU counts), and `remember`, which the pipeline
//! calls when it drops a packet for a reason that lasts. The entry, and
//! why a cached drop is exactly the pipeline's: `monitor_common::drops`.
//!
//! What the fast path skips: the flow record's port sketch, ACK count and
//! last-seen time, and the malformed counters (it does not parse that
//! far). SYNs count host-wide as in the pipeline (`signal::SYN`, and
//! `SYN_ANSWERED` for a ban's or deny rule's), except an IPv6 SYN behind
//! extension headers, which the fast path does not walk to
//! (`parse::bare_syn`). The packet, byte and SYN
//! counts reach the flow record through the entry (the daemon adds them
//! as it reads; `fold` when the entry is reused). The global counters
//! count every cached drop under its reason.

use aya_ebpf::{
    helpers::generated::{bpf_get_smp_processor_id, bpf_jiffies64, bpf_ktime_get_ns},
    programs::XdpContext,
};
use monitor_common::{
    drops::{DROP_WAYS, DROPS_PER_CPU, DropEntry, NO_SLOT, set_of},
    maps::signal,
    reason::Reason,
    syncookie::cookie_mode,
    types::{RuntimeConfig, SourceKey, family},
};

use crate::{
    atomic, cookie,
    maps::{TG_CONFIG, TG_DROPS, TG_SRC_FLOWS},
    mem,
    parse::{self, Transport},
    sources, stats,
};

/// This CPU's two entries for `key`.
#[inline(always)]
fn ways(key: &SourceKey) -> Option<(*mut DropEntry, *mut DropEntry)> {
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let first = cpu * DROPS_PER_CPU + set_of(key) * DROP_WAYS;
    Some((
        TG_DROPS.get_ptr_mut(first)?,
        TG_DROPS.get_ptr_mut(first + 1)?,
    ))
}

/// The reason a packet is dropped without the pipeline, counted in its
/// entry; `None` to run the pipeline. Everything after the lookup runs on
/// a hit only, so a packet that misses pays the tick count's load, the
/// source read and the lookup; the coarse clock is read (`now`, which
/// keeps the reading for the pipeline) only when this tick has not
/// confirmed the entry's drop, the fine one only to confirm it
/// (`DropEntry::still_drops`). Inlined into `decide::judge`, which calls
/// the pipeline instead (why there).
#[inline(always)]
pub fn hit(ctx: &XdpContext, len: u64, now: &mut impl FnMut() -> u64) -> Option<Reason> {
    // Before any clock reading (`still_drops` says why).
    let jiffy = unsafe { bpf_jiffies64() };
    let cfg = TG_CONFIG.get(0)?;
    let (c, proto) = parse::network_header(ctx)?;
    let key = parse::source_key(&c, proto, cfg)?;
    let (a, b) = ways(&key)?;
    let e = if unsafe { (*a).holds(&key, cfg.generation) } {
        unsafe { &mut *a }
    } else if unsafe { (*b).holds(&key, cfg.generation) } {
        unsafe { &mut *b }
    } else {
        return None;
    };
    if !e.still_drops(jiffy, &mut *now, || unsafe { bpf_ktime_get_ns() }) {
        return None;
    }
    let reason = Reason::from_u32(e.reason)?;
    if cfg.cookie.mode == cookie_mode::ON
        && !gate_agrees(reason, &key, cfg)
        && may_meet_gate(&c, proto)
    {
        return None;
    }
    e.packets += 1;
    e.bytes += len;
    // A cached source skips `find`, which marks it referenced: without a
    // mark now and then the clock hand would take a banned flooder's slot
    // first (and with it the counts its entry holds for that slot).
    if e.packets & 1023 == 0 && e.slot != NO_SLOT {
        sources::mark_referenced(e.slot, &key);
    }
    if parse::bare_syn(&c, proto) {
        e.syns += 1;
        stats::signal(signal::SYN);
        if matches!(reason, Reason::Banned | Reason::Deny) {
            stats::signal(signal::SYN_ANSWERED);
        }
    }
    Some(reason)
}

/// Whether the SYN-cookie gate could judge the packet before the source's
/// buckets: TCP to a protected port, or a packet whose port the fast path
/// does not read (TCP may be behind IPv6 extension headers), which the
/// pipeline then judges. Any other packet, a UDP storm's among them, never
/// meets the gate, so a cached over-limit drop is the pipeline's verdict
/// for it while the cookies are on as while they are off.
#[inline(always)]
fn may_meet_gate(c: &parse::Cursor, proto: u16) -> bool {
    match parse::transport(c, proto) {
        Transport::NotTcp => false,
        Transport::TcpTo(port) => cookie::port_protected(port),
        Transport::Unread => true,
    }
}

/// While SYN cookies are on, the cookie gate judges a protected port's
/// packets before the source's buckets, by the whole address: a cached
/// ban or deny is the gate's verdict too when the key is the whole
/// address; a cached over-limit drop is not (the gate answers a SYN with
/// a cookie).
#[inline(always)]
fn gate_agrees(reason: Reason, key: &SourceKey, cfg: &RuntimeConfig) -> bool {
    let whole = if key.family == family::IPV4 as u32 {
        cfg.v4_mask == u32::MAX
    } else {
        cfg.v6_mask == [u32::MAX; 4]
    };
    whole && matches!(reason, Reason::Banned | Reason::Deny)
}

/// Caches "every packet of `key` is dropped for `reason` until `until_ns`"
/// in this CPU's set for it: in the entry it already has, else in a way
/// that covers nothing now, else in the way whose drop ends first. The
/// counts of the source an entry leaves are folded into its flow record
/// first.
#[inline(always)]
pub fn remember(
    key: &SourceKey,
    slot: u32,
    reason: Reason,
    until_ns: u64,
    generation: u32,
    now: u64,
) {
    let Some((a, b)) = ways(key) else {
        return;
    };
    let (ea, eb) = unsafe { (&mut *a, &mut *b) };
    let e = if ea.key.same(key) {
        ea
    } else if eb.key.same(key) {
        eb
    } else if !live(ea, now, generation) {
        ea
    } else if !live(eb, now, generation) || eb.until_ns < ea.until_ns {
        eb
    } else {
        ea
    };
    if !e.key.same(key) || e.slot != slot {
        // A source that moved slots was evicted from its old one, and its
        // counts with it.
        fold(e);
        mem::copy(
            e,
            &DropEntry {
                key: *key,
                slot,
                ..DropEntry::default()
            },
        );
    }
    e.until_ns = until_ns;
    // A tick confirmed for the drop this entry held (a ban, say) must not
    // carry over to this one (a wait of a millisecond, say).
    e.jiffy = 0;
    e.generation = generation;
    e.reason = reason as u32;
}

#[inline(always)]
fn live(e: &DropEntry, now: u64, generation: u32) -> bool {
    e.key.family != 0 && now < e.until_ns && e.generation == generation
}

/// Adds an entry's counts to the flow record of its slot, if that slot
/// still holds its source.
#[inline(always)]
fn fold(e: &DropEntry) {
    if e.packets == 0 || e.slot == NO_SLOT {
        return;
    }
    let Some(flow) = TG_SRC_FLOWS.get_ptr_mut(e.slot) else {
        return;
    };
    let flow = unsafe { &mut *flow };
    if !flow.key.same(&e.key) {
        return;
    }
    atomic::add(&mut flow.packets, e.packets);
    atomic::add(&mut flow.bytes, e.bytes);
    atomic::add(&mut flow.dropped, e.packets);
    if e.syns > 0 {
        atomic::add(&mut flow.syns, e.syns);
    }
}
