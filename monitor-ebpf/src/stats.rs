//! Per-CPU counters: no atomics needed, the daemon sums the CPUs.

use monitor_common::reason::{Malformed, Reason, Verdict, counter_index};

use monitor_common::maps::MAX_IFINDEX;

use crate::maps::{TG_COUNTERS, TG_IFACES, TG_MALFORMED, TG_SIGNALS, TG_SRC_EVENTS};

/// The counter slot of the interface the packet arrived on (0 if the
/// daemon gave it none).
#[inline(always)]
pub fn iface_slot(ifindex: u32) -> u32 {
    if ifindex >= MAX_IFINDEX {
        return 0;
    }
    TG_IFACES.get(ifindex).copied().unwrap_or(0)
}

#[inline(always)]
pub fn count(iface_slot: u32, reason: Reason, verdict: Verdict, len: u64) {
    if let Some(c) = TG_COUNTERS.get_ptr_mut(counter_index(iface_slot, reason, verdict)) {
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += len;
    }
}

#[inline(always)]
pub fn count_malformed(kind: u8, len: u64) {
    if kind == Malformed::None as u8 {
        return;
    }
    if let Some(c) = TG_MALFORMED.get_ptr_mut(kind as u32) {
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += len;
    }
}

#[inline(always)]
pub fn source_event(index: u32) {
    if let Some(c) = TG_SRC_EVENTS.get_ptr_mut(index) {
        unsafe { *c += 1 };
    }
}

/// A host-wide detection signal (`signal::*`).
#[inline(always)]
pub fn signal(index: u32) {
    if let Some(c) = TG_SIGNALS.get_ptr_mut(index) {
        unsafe { *c += 1 };
    }
}
