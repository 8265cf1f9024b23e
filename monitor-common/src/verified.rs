//! Verified sources: the addresses that returned a valid SYN cookie
//! (`maps::VERIFIED`, written by the kernel) and the filter the kernel
//! asks before that map (`maps::VERIFIED_FILTER`).

/// Most sources verified at once; the least recently refreshed goes first.
pub const MAX_VERIFIED: u32 = 262_144;

/// The verified-source filter (`maps::VERIFIED_FILTER`): a bitmap of
/// this many 64-bit words, 2^20 bits in 128 KiB, which stays in a core's
/// cache where the verified map's buckets (4 MiB) do not.
pub const VERIFIED_FILTER_WORDS: u32 = 1 << 14;
const VERIFIED_FILTER_BITS: u32 = 20;
const _: () = assert!(VERIFIED_FILTER_WORDS * 64 == 1 << VERIFIED_FILTER_BITS);

/// A verified source: its full address (an IPv4 address is stored
/// IPv4-mapped, `::ffff:a.b.c.d`), network order. A cookie proves one
/// address, so verification is never shared by a prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VerifiedKey {
    pub addr: [u32; 4],
}
const _: () = assert!(core::mem::size_of::<VerifiedKey>() == 16);

impl VerifiedKey {
    pub fn v4(addr_be: u32) -> Self {
        Self {
            addr: [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), addr_be],
        }
    }
    pub fn v6(addr: &[u32; 4]) -> Self {
        Self { addr: *addr }
    }

    /// This address's word and bit in the verified-source filter: a hash
    /// of all 128 bits, so sources that differ in any part (random /64s,
    /// or the last octet of an IPv4 address) spread over the whole filter.
    #[inline(always)]
    pub fn filter_slot(&self) -> (u32, u64) {
        const K1: u64 = 0x9E37_79B9_7F4A_7C15;
        const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;
        let hi = ((self.addr[0] as u64) << 32 | self.addr[1] as u64).wrapping_mul(K1);
        let lo = ((self.addr[2] as u64) << 32 | self.addr[3] as u64).wrapping_mul(K2);
        let h = ((hi ^ lo.rotate_left(29)).wrapping_mul(K1) >> (64 - VERIFIED_FILTER_BITS)) as u32;
        (h >> 6, 1u64 << (h & 63))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter spreads what a flood and a client pool look like: random
    /// /64s, one IPv4 /24, and addresses one bit apart, each filling about
    /// as many bits as a perfect hash would (n draws over 2^20 bits).
    #[test]
    fn verified_filter_slots_spread() {
        let bits = (VERIFIED_FILTER_WORDS * 64) as f64;
        let filled = |keys: &[VerifiedKey]| {
            let set: std::collections::HashSet<(u32, u64)> =
                keys.iter().map(VerifiedKey::filter_slot).collect();
            assert!(
                set.iter()
                    .all(|(w, b)| *w < VERIFIED_FILTER_WORDS && b.count_ones() == 1)
            );
            let n = keys.len() as f64;
            let expected = bits * (1.0 - (1.0 - 1.0 / bits).powf(n));
            set.len() as f64 / expected
        };
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u32
        };
        let random64: std::vec::Vec<_> = (0..100_000)
            .map(|_| VerifiedKey::v6(&[0x2001_0db8u32.to_be(), next(), next(), next()]))
            .collect();
        let one24: std::vec::Vec<_> = (0..256u32)
            .map(|i| VerifiedKey::v4(u32::from_be_bytes([198, 51, 100, i as u8])))
            .collect();
        let one_bit: std::vec::Vec<_> = (0..128)
            .map(|i| {
                let mut a = [0x2001_0db8u32.to_be(), 0, 0, 0];
                a[i / 32] ^= 1 << (i % 32);
                VerifiedKey::v6(&a)
            })
            .collect();
        for (what, keys) in [
            ("random /64s", &random64),
            ("one /24", &one24),
            ("one bit apart", &one_bit),
        ] {
            let r = filled(keys);
            assert!(r > 0.97, "{what}: {r:.3} of a perfect hash's bits");
        }
    }
}
