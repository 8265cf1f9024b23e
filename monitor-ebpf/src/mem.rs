//! Stores of whole records into map memory, a word at a time. A plain
//! assignment of a struct there (`*flow = SourceFlow { .. }`, `*info =
//! PacketInfo::default()`) compiles to a call to the BPF target's
//! `memset` or `memmove` builtin, which loops over single bytes: 64 rounds
//! for a 64-byte record, on every packet for the packet description.
//! Volatile word stores are not merged back into such a call.

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
