//! The source table: an index (hash, key -> slot) over two arrays of
//! slots (flow records, control records), recycled by a CLOCK hand. See
//! `monitor_common::maps::SOURCES` for why it is not one LRU hash.

use aya_ebpf::bindings::BPF_NOEXIST;
use monitor_common::{
    maps::{CLOCK_TRIES, probation_slot, source_event},
    seen,
    types::{SourceControl, SourceFlow, SourceKey, slot_flag},
};

use crate::{
    atomic,
    maps::{TG_PROBATION, TG_SEEN, TG_SOURCES, TG_SRC_CLOCK, TG_SRC_CTL, TG_SRC_FLOWS},
    mem, stats,
};

/// One tracked source: its two records.
#[derive(Clone, Copy)]
pub struct Source {
    pub flow: *mut SourceFlow,
    pub ctl: *mut SourceControl,
    /// Its slot number.
    pub slot: u32,
}

/// The slot `slot`'s records.
#[inline(always)]
fn slot(slot: u32) -> Option<Source> {
    Some(Source {
        flow: TG_SRC_FLOWS.get_ptr_mut(slot)?,
        ctl: TG_SRC_CTL.get_ptr_mut(slot)?,
        slot,
    })
}

/// `key`'s source if it is tracked, marked referenced for the clock. A
/// key the filter has never seen indexed is not looked up (`seen`). An
/// index entry whose slot holds another key (a torn claim; slots are
/// never handed to two CPUs) is removed, unless another CPU has already
/// replaced it. (Such an entry whose key's bit a rebuild has cleared
/// stays until the key claims a slot again: that claim's insert fails,
/// its `find` removes the entry, the packet goes untracked and the slot
/// back to the clock; the next packet claims.)
#[inline(always)]
pub fn find(key: &SourceKey) -> Option<Source> {
    if !maybe_indexed(key) {
        return None;
    }
    let at = unsafe { TG_SOURCES.get(key) }.copied()?;
    if let Some(src) = slot(at)
        && unsafe { &(*src.flow).key }.same(key)
    {
        let ctl = unsafe { &mut *src.ctl };
        // Test before setting: a flood's packets read the line (they
        // update it anyway) but only the first after the hand passed
        // writes the flag.
        if ctl.flags & slot_flag::REFERENCED == 0 {
            ctl.flags |= slot_flag::REFERENCED;
        }
        return Some(src);
    }
    if unsafe { TG_SOURCES.get(key) }.copied() == Some(at) {
        let _ = TG_SOURCES.remove(key);
    }
    None
}

/// Tracks `key` with control record `fresh` (flow counters zero) in a
/// slot taken from the clock. `Ok` with the source if this CPU created
/// it, `Err` with the source another CPU created first (`fresh` is
/// dropped) or `Err(None)` if the table took nothing this time (another
/// CPU moved the clock hand while this one looked; no capacity set; the
/// index full).
#[inline(always)]
pub fn claim(key: &SourceKey, fresh: &SourceControl) -> Result<Source, Option<Source>> {
    let Some((at, src)) = hand() else {
        return Err(None);
    };
    let flow = unsafe { &mut *src.flow };
    if flow.key.family != 0 {
        // Evict: the old source's index entry goes with its slot (unless
        // a race already pointed it elsewhere).
        let old = flow.key;
        if unsafe { TG_SOURCES.get(&old) }.copied() == Some(at) {
            let _ = TG_SOURCES.remove(&old);
        }
        stats::source_event(source_event::EVICTED);
    }
    // Word by word (`mem::copy`): a source's first packet pays this.
    mem::copy(
        src.flow,
        &SourceFlow {
            key: *key,
            ..SourceFlow::default()
        },
    );
    mem::copy(src.ctl, fresh);
    note_indexed(key);
    // NOEXIST: if another CPU indexed the source first, keep theirs and
    // give the slot back.
    if TG_SOURCES.insert(key, &at, BPF_NOEXIST as u64).is_ok() {
        return Ok(src);
    }
    flow.key.family = 0;
    Err(find(key))
}

/// Whether `key` may be in the index: its bit in the filter's tested half
/// is set, or the filter is not tested yet (`seen`).
#[inline(always)]
fn maybe_indexed(key: &SourceKey) -> bool {
    let Some(header) = TG_SEEN.get(0) else {
        return true;
    };
    let header = *header;
    if header & seen::TESTING == 0 {
        return true;
    }
    let log2 = seen::header_log2(header);
    if !seen::usable(log2) {
        return true;
    }
    let (word, bit) = seen::position(key, log2, seen::active_half(header));
    TG_SEEN.get(word).is_none_or(|w| *w & bit != 0)
}

/// Sets `key`'s bit in both halves of the filter, before it goes in the
/// index (`seen`: a half the daemon is rebuilding must not miss it).
#[inline(always)]
fn note_indexed(key: &SourceKey) {
    let Some(header) = TG_SEEN.get(0) else {
        return;
    };
    let log2 = seen::header_log2(*header);
    if !seen::usable(log2) {
        return;
    }
    for half in 0..2 {
        let (word, bit) = seen::position(key, log2, half);
        if let Some(w) = TG_SEEN.get_ptr_mut(word) {
            atomic::or(w, bit);
        }
    }
}

/// The slot under the clock hand that a new source may take: the first,
/// from the hand on, that is free or whose source was not referenced
/// since the hand last passed (the flag is cleared as the hand passes),
/// else the last of the `CLOCK_TRIES` looked at. The hand then moves past
/// it with one compare-and-swap, so the slots it passed are this CPU's
/// alone. If another CPU moved the hand meanwhile (both claiming at once)
/// this claim tries once more, for the one slot then under the hand; if
/// that fails too it gives up: the packet goes untracked (enforcing bans
/// and deny rules all the same) and the source's next packet claims
/// again. A second full look would make the verifier walk every
/// combination of the two loops, and taking a slot without moving the
/// hand would let two CPUs share it.
#[inline(always)]
fn hand() -> Option<(u32, Source)> {
    let clock = TG_SRC_CLOCK.get_ptr_mut(0)?;
    let capacity = unsafe { (*clock).capacity };
    if capacity == 0 {
        return None;
    }
    let hand = unsafe { &raw mut (*clock).hand };
    let at = atomic::load(hand);
    let (ahead, src) = look(at, capacity)?;
    let now = match atomic::compare_exchange(hand, at, at.wrapping_add(ahead + 1)) {
        Ok(()) => return Some((((at + ahead) % capacity) as u32, src)),
        Err(now) => now,
    };
    // Lost the race: one more try, at the slot now under the hand alone,
    // taken only if it may be (free, or not referenced since the hand
    // last passed).
    let taken = (now % capacity) as u32;
    let src = slot(taken)?;
    if unsafe { (*src.flow).key.family } != 0
        && unsafe { (*src.ctl).flags } & slot_flag::REFERENCED != 0
    {
        return None;
    }
    atomic::compare_exchange(hand, now, now.wrapping_add(1)).ok()?;
    Some((taken, src))
}

/// How many slots past `at` the slot to take is, and its records.
#[inline(always)]
fn look(at: u64, capacity: u64) -> Option<(u64, Source)> {
    let mut ahead = 0u64;
    loop {
        let src = slot(((at + ahead) % capacity) as u32)?;
        let ctl = unsafe { &mut *src.ctl };
        if unsafe { (*src.flow).key.family } == 0
            || ctl.flags & slot_flag::REFERENCED == 0
            || ahead + 1 >= CLOCK_TRIES as u64
        {
            return Some((ahead, src));
        }
        ctl.flags &= !slot_flag::REFERENCED;
        ahead += 1;
    }
}

/// Marks the source in `at` referenced for the clock hand, if it still
/// holds `key` (the drop cache's fast path, which skips `find`, keeps a
/// cached source from looking idle this way).
#[inline(always)]
pub fn mark_referenced(at: u32, key: &SourceKey) {
    if let Some(src) = slot(at)
        && unsafe { &(*src.flow).key }.same(key)
    {
        unsafe { (*src.ctl).flags |= slot_flag::REFERENCED };
    }
}

/// During a spoofed-source storm: whether a never-seen `key` may claim a
/// slot now, i.e. it was seen once already (`note_once` wrote its key in
/// its probation entry).
#[inline(always)]
pub fn off_probation(key: &SourceKey) -> bool {
    let Some(e) = TG_PROBATION.get_ptr(probation_slot(key)) else {
        return true;
    };
    unsafe { &*e }.same(key)
}

/// Writes a never-seen source's key in its probation entry, for its next
/// packet to claim a slot. Only for a packet that passed: a storm's
/// packets that its prefixes' budgets refuse would otherwise dirty a
/// cache line each, for sources that never send again. Two sources
/// sharing an entry push each other out; a CPU reading an entry another
/// writes may see it torn, which costs that source one more packet
/// without a slot.
#[inline(always)]
pub fn note_once(key: &SourceKey) {
    if let Some(e) = TG_PROBATION.get_ptr_mut(probation_slot(key)) {
        unsafe { *e = *key };
    }
}
