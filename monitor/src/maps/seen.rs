//! The indexed-source filter from user space (`monitor_common::seen`
//! says what it promises and how the rebuild keeps the promise): the map
//! mapped read-write, the bits of keys user space indexes itself, and
//! the upkeep that rebuilds a half from the table now and then.

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use monitor_common::{maps as names, seen, types::SourceKey};

use super::{MapError, mmap::page_size, syscall_error};

/// How long a half serves before it is rebuilt: the stale bits of
/// evicted sources pile up no longer than this.
pub const REBUILD_EVERY: Duration = Duration::from_secs(60);
/// How long after clearing a half (or starting a filter) the table is
/// read into it: far longer than any claim in flight at the clear takes
/// (a claim writes its slot's key and sets its bit within one program
/// run; the wait also covers a weakly ordered CPU, where the kernel's
/// relaxed OR may be seen before the key's stores).
pub const SETTLE: Duration = Duration::from_secs(1);

/// What the upkeep does when next asked (`SeenFilter::due`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    Nothing,
    /// Clear the half the kernel does not test.
    Clear,
    /// Read the table into the untested half (both, for a filter not yet
    /// tested) and test it.
    Fill,
}

/// The filter's map, mapped read-write, and where its upkeep stands.
pub(super) struct SeenFilter {
    base: *mut u64,
    /// Words in the map.
    words: usize,
    /// Bytes mapped.
    len: usize,
    log2: u32,
    /// When the last step (start, clear, fill) was taken.
    since: Instant,
    /// Whether the untested half has been cleared and awaits its fill.
    cleared: bool,
}

// SAFETY: every access to the mapping is an atomic word access.
unsafe impl Send for SeenFilter {}
unsafe impl Sync for SeenFilter {}

impl SeenFilter {
    /// Maps the filter whose map is `fd` with `words` words. A filter
    /// whose header is not yet set is started: set by the kernel from now
    /// on, tested once filled (or at once, `test_if_empty`).
    pub(super) fn open(fd: &OwnedFd, words: u32) -> Result<Self, MapError> {
        let log2 = seen::log2_of_map(words);
        if log2 == 0 {
            return Err(MapError::Size {
                map: names::SEEN,
                entries: words,
                what: "not a header and two halves of a power of two words; the XDP \
                       object and this binary are out of step (rebuild both)",
            });
        }
        let len = (words as usize * 8).div_ceil(page_size()) * page_size();
        // SAFETY: a fresh shared mapping of the map's memory, which the
        // kernel checks against the array's size.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(syscall_error(names::SEEN, "mapping", "mmap")(
                std::io::Error::last_os_error(),
            ));
        }
        let filter = Self {
            base: base as *mut u64,
            words: words as usize,
            len,
            log2,
            since: Instant::now(),
            cleared: false,
        };
        if seen::header_log2(filter.header()) != log2 {
            filter.set_header(log2 as u64);
        }
        Ok(filter)
    }

    /// Tests a filter not yet tested whose table has never held a source
    /// (`hand`, the clock's, read after `open`: a claim that moved it
    /// later saw the header `open` wrote, and set its bit).
    pub(super) fn test_if_empty(&self, hand: u64) {
        let h = self.header();
        if h & seen::TESTING == 0 && hand == 0 {
            self.set_header(h | seen::TESTING);
        }
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.words, "filter word {i} of {}", self.words);
        // SAFETY: inside the mapping, 8-aligned, alive as long as `self`.
        unsafe { AtomicU64::from_ptr(self.base.add(i)) }
    }

    fn header(&self) -> u64 {
        self.word(0).load(Ordering::SeqCst)
    }

    fn set_header(&self, h: u64) {
        self.word(0).store(h, Ordering::SeqCst);
    }

    /// Whether the kernel tests the filter yet.
    pub(super) fn testing(&self) -> bool {
        self.header() & seen::TESTING != 0
    }

    /// Whether `key`'s bit is set in `half`.
    fn has_bit(&self, key: &SourceKey, half: u32) -> bool {
        let (w, bit) = seen::position(key, self.log2, half);
        self.word(w as usize).load(Ordering::SeqCst) & bit != 0
    }

    /// Sets `key`'s bit in `half`.
    fn set_bit(&self, key: &SourceKey, half: u32) {
        let (w, bit) = seen::position(key, self.log2, half);
        self.word(w as usize).fetch_or(bit, Ordering::SeqCst);
    }

    /// Whether `key`'s bit is set in the tested half (true while the
    /// filter is not tested: every key may be indexed).
    pub(super) fn may_hold(&self, key: &SourceKey) -> bool {
        let h = self.header();
        h & seen::TESTING == 0 || self.has_bit(key, seen::active_half(h))
    }

    /// Whether `key`'s bit is set in each half (half 0, half 1), whichever
    /// is tested.
    pub(super) fn bits(&self, key: &SourceKey) -> [bool; 2] {
        [0, 1].map(|half| self.has_bit(key, half))
    }

    /// The half the kernel tests (or will, once testing).
    pub(super) fn tested_half(&self) -> u32 {
        seen::active_half(self.header())
    }

    /// Sets `key`'s bit in both halves, as the kernel does before it
    /// indexes a source: for user space's own inserts into the index.
    pub(super) fn note(&self, key: &SourceKey) {
        for half in 0..2 {
            self.set_bit(key, half);
        }
    }

    /// What the upkeep should do at `now`.
    pub(super) fn due(&self, now: Instant) -> Due {
        let waited = now.saturating_duration_since(self.since);
        if !self.testing() || self.cleared {
            if waited >= SETTLE {
                Due::Fill
            } else {
                Due::Nothing
            }
        } else if waited >= REBUILD_EVERY {
            Due::Clear
        } else {
            Due::Nothing
        }
    }

    /// Makes the next rebuild due now (keys just left the index in
    /// numbers: `SourceTable::demote_since`); one already under way goes
    /// on.
    pub(super) fn rebuild_soon(&mut self) {
        if self.testing() && !self.cleared {
            self.since = Instant::now()
                .checked_sub(REBUILD_EVERY)
                .unwrap_or(self.since);
        }
    }

    /// Clears the half the kernel does not test (the kernel keeps setting
    /// bits in it meanwhile).
    pub(super) fn clear(&mut self, now: Instant) {
        let half = 1 - seen::active_half(self.header());
        for w in self.half_words(half) {
            self.word(w).store(0, Ordering::SeqCst);
        }
        self.cleared = true;
        self.since = now;
    }

    /// Sets `key`'s bit (a source of the table, read after the clear has
    /// settled) in the half being filled: the untested one, or both if
    /// none is tested yet. `finish_fill` then tests it.
    pub(super) fn fill(&self, key: &SourceKey) {
        let h = self.header();
        if h & seen::TESTING == 0 {
            self.note(key);
        } else {
            self.set_bit(key, 1 - seen::active_half(h));
        }
    }

    /// Tests the half just filled. Returns how many bits it has set.
    pub(super) fn finish_fill(&mut self, now: Instant) -> u32 {
        let h = self.header();
        let next = if h & seen::TESTING != 0 {
            h ^ seen::ACTIVE
        } else {
            h | seen::TESTING
        };
        self.set_header(next);
        self.cleared = false;
        self.since = now;
        self.half_words(seen::active_half(next))
            .map(|w| self.word(w).load(Ordering::Relaxed).count_ones())
            .sum()
    }

    /// The map words of `half`.
    fn half_words(&self, half: u32) -> std::ops::Range<usize> {
        let per = 1usize << (self.log2 - 6);
        let first = 1 + half as usize * per;
        first..first + per
    }
}

impl Drop for SeenFilter {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `open` made.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}
