//! Mappings of mmap-able array maps (`BPF_F_MMAPABLE`): the source
//! table's flow records and the drop cache, which the kernel writes while
//! the daemon reads (and, to free a slot, compares and swaps one word).

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    sync::atomic::{AtomicU64, Ordering},
};

/// A read-only mapping of `T` records of an array map, unmapped when
/// dropped.
pub(super) struct Window<T> {
    base: *const T,
    len: usize,
}

// SAFETY: a shared read-only mapping; every read goes through
// `read_words`, whichever thread makes it.
unsafe impl<T> Send for Window<T> {}
unsafe impl<T> Sync for Window<T> {}

impl<T> Window<T> {
    /// Maps `count` records from record `first`, whose offset must be a
    /// whole number of pages.
    pub(super) fn map(fd: &OwnedFd, first: u32, count: u32) -> std::io::Result<Self> {
        Self::map_as(fd, first, count, libc::PROT_READ)
    }

    /// `map`, writable: for atomic word writes only (`SourceTable::demote_since`).
    pub(super) fn map_rw(fd: &OwnedFd, first: u32, count: u32) -> std::io::Result<Self> {
        Self::map_as(fd, first, count, libc::PROT_READ | libc::PROT_WRITE)
    }

    fn map_as(fd: &OwnedFd, first: u32, count: u32, prot: libc::c_int) -> std::io::Result<Self> {
        let size = std::mem::size_of::<T>();
        let page = page_size();
        let offset = first as usize * size;
        if !offset.is_multiple_of(page) {
            return Err(std::io::Error::other(format!(
                "record {first} is not on a page boundary"
            )));
        }
        let len = (count as usize * size).div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of the map's memory; the kernel
        // checks the range against the array's size.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            base: base as *const T,
            len,
        })
    }

    pub(super) fn slot(&self, i: usize) -> *const T {
        debug_assert!((i + 1) * std::mem::size_of::<T>() <= self.len);
        self.base.wrapping_add(i)
    }

    /// Hints that record `i` will be read soon (nothing past the
    /// mapping). The hardware prefetcher stops at page boundaries; this
    /// runs ahead into the next page, TLB miss included.
    #[inline(always)]
    pub(super) fn prefetch(&self, i: usize) {
        #[cfg(target_arch = "x86_64")]
        if (i + 1) * std::mem::size_of::<T>() <= self.len {
            // SAFETY: a hint on an address inside the mapping.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    self.base.wrapping_add(i) as *const i8,
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }
}

impl<T> Drop for Window<T> {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `map` made.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// A copy of the record at `p`, read as relaxed atomic words (the kernel
/// writes it meanwhile; each word is read whole, the record may mix two
/// moments).
///
/// # Safety
/// `p` must point at a mapped `T` aligned to 8 that is plain data made of
/// whole 8-byte words (any bit pattern valid).
pub(super) unsafe fn read_words<T: Copy, const WORDS: usize>(p: *const T) -> T {
    const { assert!(std::mem::size_of::<T>() == WORDS * 8 && std::mem::align_of::<T>() == 8) };
    let mut out = [0u64; WORDS];
    let words = p as *const u64;
    for (i, w) in out.iter_mut().enumerate() {
        // SAFETY: inside the record, 8-aligned (the caller's contract).
        *w = unsafe { AtomicU64::from_ptr(words.add(i) as *mut u64) }.load(Ordering::Relaxed);
    }
    // SAFETY: `T` is plain data of exactly these words.
    unsafe { std::mem::transmute_copy::<[u64; WORDS], T>(&out) }
}

pub(super) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}
