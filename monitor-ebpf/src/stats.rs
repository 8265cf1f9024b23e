//! Per-CPU counters: no atomics needed, the daemon sums the CPUs.

use monitor_common::reason::{Malformed, Reason, Verdict, counter_index};

use crate::maps::{TG_COUNTERS, TG_MALFORMED, TG_SRC_EVENTS};

#[inline(always)]
pub fn count(reason: Reason, verdict: Verdict, len: u64) {
    if let Some(c) = TG_COUNTERS.get_ptr_mut(counter_index(reason, verdict)) {
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
