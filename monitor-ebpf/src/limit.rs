//! Applying a rule's two buckets to one packet.
//!
//! Several CPUs can receive packets from one source at once (RSS spreads a
//! source's flows over queues), so each bucket is updated with a BPF
//! compare-and-swap on its single GCRA word: read TAT, decide with the pure
//! `bucket::conform`, swap in the new TAT if nobody moved it meanwhile,
//! otherwise decide again on the value the other CPU wrote. A lost race is
//! progress by another CPU, so a handful of tries is enough; the bound
//! keeps the verifier happy and is counted when hit.

use monitor_common::{
    bucket::{BucketParams, conform, ticks},
    drops::{conforms_at, ns_reaching},
    maps::source_event,
    reason::Reason,
    types::{RuleParams, SourceControl},
};

use crate::{atomic, stats};

/// Compare-and-swap attempts per bucket per packet. Each failure means
/// another CPU updated the same source in between; with N CPUs contending,
/// N - 1 failures in a row are the realistic worst case.
const CAS_MAX_TRIES: usize = 8;

/// The host-wide SYN limit: a new TCP connection conforms to
/// `cfg.syn_limit` or is dropped. All CPUs share one word here, which is
/// the point: the limit is for the host, not per source.
#[inline(always)]
pub fn syn_allowed(params: &BucketParams, ns_since_base: u64) -> bool {
    if !params.is_limited() {
        return true;
    }
    let Some(tat) = crate::maps::TG_SYN_BUCKET.get_ptr_mut(0) else {
        return true;
    };
    take(tat, ticks(ns_since_base), 1, params).is_ok()
}

/// Takes `cost` from the bucket whose TAT is at `tat`, or returns the TAT
/// that refused the packet (the bucket is left untouched).
#[inline(always)]
pub fn take(tat: *mut u64, now: u64, cost: u64, params: &BucketParams) -> Result<(), u64> {
    let mut current = atomic::load(tat);
    for _ in 0..CAS_MAX_TRIES {
        let Some(next) = conform(current, now, cost, params) else {
            return Err(current);
        };
        match atomic::compare_exchange(tat, current, next) {
            Ok(_) => return Ok(()),
            Err(seen) => current = seen,
        }
    }
    stats::source_event(source_event::CAS_EXHAUSTED);
    // Contended past the bound: dropped, but no instant to cache.
    Err(0)
}

/// Charges the packet to both buckets of `rule`. On a byte-bucket refusal
/// the packet-bucket charge is given back, so a dropped packet costs
/// nothing (giving back `c·I` returns GCRA to `max(TAT, now)`, which is the
/// same bucket level as before the charge).
///
/// A refusal comes with the instant (ns since the clock base) until which
/// every packet of the source is refused the same way, for the drop cache,
/// or 0 where none is certain (see `monitor_common::drops`: a
/// packet-bucket refusal under a rule that also limits bytes, a lost race).
#[inline(always)]
pub fn apply(
    state: *mut SourceControl,
    rule: &RuleParams,
    len: u64,
    ns_since_base: u64,
) -> Option<(Reason, u64)> {
    let now = ticks(ns_since_base);
    let s = unsafe { &mut *state };
    let pkt_charged = if rule.pkt.is_limited() {
        if let Err(tat) = take(&mut s.pkt_tat, now, 1, &rule.pkt) {
            let until = if rule.byte.is_limited() {
                0
            } else {
                refused_until(tat, &rule.pkt)
            };
            return Some((Reason::RateLimitedPackets, until));
        }
        true
    } else {
        false
    };
    if rule.byte.is_limited()
        && let Err(tat) = take(&mut s.byte_tat, now, len, &rule.byte)
    {
        if pkt_charged {
            atomic::sub(&mut s.pkt_tat, rule.pkt.charge(1));
        }
        return Some((Reason::RateLimitedBytes, refused_until(tat, &rule.byte)));
    }
    None
}

/// Gives back what `apply` charged a packet that a later check dropped
/// (its prefix's budget), so a dropped packet costs its source nothing.
#[inline(always)]
pub fn refund(state: *mut SourceControl, rule: &RuleParams, len: u64) {
    let s = unsafe { &mut *state };
    if rule.pkt.is_limited() {
        atomic::sub(&mut s.pkt_tat, rule.pkt.charge(1));
    }
    if rule.byte.is_limited() {
        atomic::sub(&mut s.byte_tat, rule.byte.charge(len));
    }
}

/// The instant (ns since the clock base) until which a bucket that
/// refused a packet in state `tat` refuses every packet: when one unit
/// would conform. 0 for a refusal `take` could not decide (`tat` 0).
#[inline(always)]
fn refused_until(tat: u64, params: &BucketParams) -> u64 {
    if tat == 0 {
        0
    } else {
        ns_reaching(conforms_at(tat, 1, params))
    }
}
