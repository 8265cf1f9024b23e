//! Stores of whole records into map memory, a word at a time. A plain
//! assignment of a struct there (`*flow = SourceFlow { .. }`, `*info =
//! PacketInfo::default()`) compiles to a call to the BPF target's
//! `memset` or `memmove` builtin, which loops over single bytes: 64 rounds
//! for a 64-byte record, on every packet for the packet description.
//! Volatile word stores are not merged back into such a call. The same
//! goes for zeroed buffers on the stack (`Words`, `zeroed`).

use core::{mem::size_of, ptr::write_volatile};

/// Copies `from` into `to` 4 bytes at a time. `T` is a whole number of
/// 4-byte words and 4-aligned (every record this is for is).
#[inline(always)]
pub fn copy<T>(to: *mut T, from: &T) {
    const { assert!(size_of::<T>() % 4 == 0) };
    let (to, from) = (to.cast::<u32>(), (from as *const T).cast::<u32>());
    for i in 0..size_of::<T>() / 4 {
        unsafe { write_volatile(to.add(i), *from.add(i)) };
    }
}

/// Zeroes `to`, 4 bytes at a time (as `copy`).
#[inline(always)]
pub fn zero<T>(to: *mut T) {
    const { assert!(size_of::<T>() % 4 == 0) };
    let to = to.cast::<u32>();
    for i in 0..size_of::<T>() / 4 {
        unsafe { write_volatile(to.add(i), 0) };
    }
}

/// `N` bytes of stack, 4-aligned so `zero` can clear them a word at a
/// time (`N` a multiple of 4). A `[0u8; N]` there compiles to the same
/// byte-at-a-time `memset` call: the SYN-ACK program paid it for 124
/// bytes on every SYN it answered (a tenth of its time under a flood,
/// `perf`), the cookie ACK check for 60.
#[repr(C, align(4))]
pub struct Words<const N: usize>([u8; N]);

/// Zeroes the buffer in `slot` and lends it: the buffer lives in the
/// caller's frame, and nothing is copied.
#[inline(always)]
pub fn zeroed<const N: usize>(slot: &mut core::mem::MaybeUninit<Words<N>>) -> &mut [u8; N] {
    zero(slot.as_mut_ptr());
    // SAFETY: every byte was just written.
    unsafe { &mut slot.assume_init_mut().0 }
}
