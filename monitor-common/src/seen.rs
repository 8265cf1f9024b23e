//! The indexed-source filter (`maps::SEEN`): a bitmap the kernel asks
//! before the source index, so that a source it has never indexed costs
//! no lookup there.
//!
//! Why: the index's buckets are spread over megabytes, so a lookup of a
//! never-seen key (every packet of a spoofed storm) misses the cache at a
//! random bucket. Measured on the flood lab, that one load was 30% of the
//! receiving core's time during a storm of random IPv6 /64s on probation,
//! a third of the frame's cost. The filter holds `BITS_PER_SLOT` bits per
//! slot of the table, a few hundred KiB at the default capacity, which
//! stays in the cache the buckets do not.
//!
//! Its one promise: every key in the index has its bit set in the half
//! the kernel tests. Keeping it:
//!
//! - The kernel sets a key's bit in both halves before it inserts the key
//!   in the index (`sources::claim`), and never clears one. An evicted
//!   source's bit stays set, which only costs a lookup.
//! - The daemon rebuilds a half from the table now and then, so those
//!   stale bits go: it clears the half the kernel does not test, waits for
//!   any claim that began before the clear to end (at least one of its
//!   intervals), ORs in the bit of every source the table then holds,
//!   and makes that half the tested one. A claim that set its bit before
//!   the clear has written its slot's key by the time the table is read;
//!   one that sets it after, keeps it.
//! - A new filter is tested from the start: it comes with a new table
//!   (both are pinned together, and a restarted daemon adopts both), and
//!   the table's first source sets its bit as it claims a slot. Should a
//!   filter without a header ever meet a table that holds sources, its
//!   header says only its size: the kernel sets bits and tests none until
//!   the daemon has filled both halves from the table the same way.
//!
//! The header, word 0 of the map: bits 0-7 the log2 of a half's bits (0:
//! off, the kernel neither sets nor tests), `TESTING`, and `ACTIVE` (which
//! half is tested). The halves follow: half `h`'s word `w` is map word `1
//! + h · words + w`.

use crate::types::SourceKey;

/// Bits per slot of the source table: at a full table, one never-seen key
/// in about five still finds a bit set (1 - e^(-1/4) = 0.22) and pays the
/// lookup.
pub const BITS_PER_SLOT: u32 = 4;
/// The header's flag: the kernel tests the `ACTIVE` half.
pub const TESTING: u64 = 1 << 8;
/// The header's flag: the tested half is half 1 (else half 0).
pub const ACTIVE: u64 = 1 << 9;
/// Mixed into the key's hash, so that keys sharing a slot of the other
/// hashed arrays (`prefix::slot_of`, `maps::probation_slot`) mostly do not
/// share a bit here (keys whose folded words are equal share everywhere).
const SEED: u32 = 0x5EE0_1D5E;
/// A half's bits never fall below a word's.
const MIN_LOG2: u32 = 6;

/// The log2 of a half's bits for a table of `capacity` slots.
pub const fn half_log2(capacity: u32) -> u32 {
    let bits = (capacity as u64 * BITS_PER_SLOT as u64).next_power_of_two();
    let log2 = bits.trailing_zeros();
    if log2 < MIN_LOG2 { MIN_LOG2 } else { log2 }
}

/// Words of the map for a table of `capacity` slots: the header and two
/// halves.
pub const fn map_words(capacity: u32) -> u32 {
    1 + 2 * (1 << (half_log2(capacity) - 6))
}

/// The log2 of a half's bits for a map of `words` words (0 if the map
/// cannot hold a filter), the inverse of `map_words`.
pub const fn log2_of_map(words: u32) -> u32 {
    if words < 3 || !(words - 1).is_multiple_of(2) || !((words - 1) / 2).is_power_of_two() {
        return 0;
    }
    ((words - 1) / 2).trailing_zeros() + 6
}

/// The log2 of a half's bits a header says (0: the filter is off).
#[inline(always)]
pub const fn header_log2(header: u64) -> u32 {
    (header & 0xff) as u32
}

/// The half a header says the kernel tests.
#[inline(always)]
pub const fn active_half(header: u64) -> u32 {
    if header & ACTIVE != 0 { 1 } else { 0 }
}

/// Whether a header's size is one `position` can use (0, the filter off,
/// is not).
#[inline(always)]
pub const fn usable(log2: u32) -> bool {
    log2 >= MIN_LOG2 && log2 <= 32
}

/// `key`'s map word in `half` and its bit there, for a filter whose halves
/// hold 2^`log2` bits (`log2` from the header, `usable`).
#[inline(always)]
pub fn position(key: &SourceKey, log2: u32, half: u32) -> (u32, u64) {
    let h = key.slot(SEED, log2);
    let words = 1u32 << (log2 - 6);
    (1 + half * words + (h >> 6), 1u64 << (h & 63))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::family;

    #[test]
    fn sizes_follow_the_capacity() {
        assert_eq!(half_log2(1 << 16), 18);
        assert_eq!(map_words(1 << 16), 1 + 2 * 4096);
        assert_eq!(half_log2(1 << 20), 22);
        // Not a power of two: rounded up.
        assert_eq!(half_log2(100_000), 19);
        assert_eq!(half_log2(1), MIN_LOG2);
        for cap in [1, 100, 65_536, 100_000, 1 << 20, 3_000_000] {
            assert_eq!(
                log2_of_map(map_words(cap)),
                half_log2(cap),
                "capacity {cap}"
            );
        }
        assert_eq!(log2_of_map(0), 0);
        assert_eq!(log2_of_map(1), 0);
        assert_eq!(log2_of_map(1 + 2 * 3), 0);
    }

    #[test]
    fn positions_stay_in_their_half() {
        let log2 = half_log2(1 << 16);
        let words = 1u32 << (log2 - 6);
        for i in 0..10_000u32 {
            let key = SourceKey {
                addr: [0x2001_0db8, i.wrapping_mul(2_654_435_761), 0, 0],
                family: family::IPV6 as u32,
            };
            for half in 0..2 {
                let (w, bit) = position(&key, log2, half);
                assert!(w > half * words && w <= (half + 1) * words, "word {w}");
                assert_eq!(bit.count_ones(), 1);
            }
            // The same bit in both halves.
            assert_eq!(position(&key, log2, 0).0 + words, position(&key, log2, 1).0);
        }
    }

    /// Random /64s of one /32 and consecutive IPv4 addresses spread over
    /// the half as a uniform hash would: n keys over m bits fill about
    /// m·(1 - e^(-n/m)).
    #[test]
    fn keys_spread_over_the_bits() {
        let log2 = 18;
        let m = (1u64 << log2) as f64;
        let n = 65_536u32;
        let mut v6 = std::collections::HashSet::new();
        let mut v4 = std::collections::HashSet::new();
        for i in 0..n {
            let k6 = SourceKey {
                addr: [0x2001_0db8, i.wrapping_mul(0x9E37_79B1), 0, 0],
                family: family::IPV6 as u32,
            };
            v6.insert(position(&k6, log2, 0));
            let k4 = SourceKey::v4((0xC633_6400u32 + i).to_be(), u32::MAX);
            v4.insert(position(&k4, log2, 0));
        }
        let expected = m * (1.0 - (-(n as f64) / m).exp());
        for (what, set) in [("v6", v6), ("v4", v4)] {
            let ratio = set.len() as f64 / expected;
            assert!(ratio > 0.97, "{what}: {} of {expected:.0} bits", set.len());
        }
    }

    #[test]
    fn the_header_says_size_and_half() {
        let h = 18 | TESTING | ACTIVE;
        assert_eq!(header_log2(h), 18);
        assert_eq!(active_half(h), 1);
        assert_eq!(active_half(18 | TESTING), 0);
        assert_eq!(header_log2(0), 0);
    }
}
