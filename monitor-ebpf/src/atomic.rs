//! BPF atomic instructions on map memory.
//!
//! The BPF target does not advertise compare-and-swap to `core::sync::atomic`
//! (it depends on the CPU level), so the intrinsics are called directly. With
//! `--cpu=v3` (see build.rs) LLVM lowers them to `BPF_ATOMIC` instructions:
//! `BPF_ADD` and `BPF_OR` where the result is unused, `BPF_CMPXCHG` for the
//! swap.
//! The kernel makes every BPF atomic fully ordered, so the orderings asked
//! for here are the weakest that say what we mean.

use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_or, atomic_xadd};

/// `*p += v`, atomically, the result unused. (Not for a fetch-add: with
/// the result used, LLVM 22's BPF backend still emits the non-fetching
/// `lock *(u64 *)(p) += r` and then reads the addend's register as if it
/// held the old value, as the object's disassembly showed; use a
/// compare-and-swap.)
#[inline(always)]
pub fn add(p: *mut u64, v: u64) {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, v) };
}

/// `*p |= v`, atomically, the result unused (`BPF_OR`; see `add` on
/// fetching forms).
#[inline(always)]
pub fn or(p: *mut u64, v: u64) {
    unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(p, v) };
}

/// `*p -= v`, atomically (wrapping, as an add of the two's complement).
#[inline(always)]
pub fn sub(p: *mut u64, v: u64) {
    add(p, v.wrapping_neg());
}

/// A single 8-byte load, which is atomic for aligned map memory. (LLVM's
/// BPF backend cannot select an atomic load below CPU v4; a volatile read
/// gives the one untorn load that the compare-and-swap then validates.)
#[inline(always)]
pub fn load(p: *const u64) -> u64 {
    unsafe { core::ptr::read_volatile(p) }
}

/// Replaces `*p` with `new` if it still holds `old`; otherwise returns the
/// value found.
#[inline(always)]
pub fn compare_exchange(p: *mut u64, old: u64, new: u64) -> Result<(), u64> {
    let (seen, ok) = unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::AcqRel }, { AtomicOrdering::Relaxed }>(p, old, new)
    };
    if ok { Ok(()) } else { Err(seen) }
}
