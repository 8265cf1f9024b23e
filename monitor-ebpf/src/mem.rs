//! Stores of whole records into map memory, a word at a time. A plain
//! assignment of a struct there (`*flow = SourceFlow { .. }`) compiles to
//! a call to the BPF target's `memset` or `memmove` builtin, which loops
//! over single bytes: 64 rounds for a 64-byte record. Volatile word
//! stores are not merged back into such a call.

use core::{mem::size_of, ptr::write_volatile};

/// Copies `from` into `to` 8 bytes at a time. `T` is a whole number of
/// 8-byte words and 8-aligned (the records this is for are; map values
/// always are).
#[inline(always)]
pub fn copy<T>(to: *mut T, from: &T) {
    const { assert!(size_of::<T>() % 8 == 0) };
    let (to, from) = (to.cast::<u64>(), (from as *const T).cast::<u64>());
    for i in 0..size_of::<T>() / 8 {
        unsafe { write_volatile(to.add(i), *from.add(i)) };
    }
}
