//! Which CIDR tries the daemon knows to be empty: the bits of
//! `RuntimeConfig::empty_tries`. A packet judged without a slot (a
//! never-seen source refused by its prefix's budget, or on probation
//! during a storm) resolves its rule and ban afresh every time, two LPM
//! lookups; for a family with no rules, or no bans, there is nothing to
//! find, and the bit lets the program skip the lookup (a call each, about
//! 20 ns where the kernel's returns go through a mitigation thunk).
//!
//! Only such a verdict, which nothing keeps, relies on a bit: a source
//! that claims a slot keeps its rule and ban until the generation changes,
//! so it looks them up in full before its first packet is enforced. A bit
//! read a moment out of date then judges one packet as the moment before
//! the change would have, and the daemon keeps the bits on the safe side
//! of every change: it clears a bit before it inserts into that trie,
//! writes the rule bits of the policy set not in use before it switches to
//! it, and sets a bit only for a trie it has just seen empty (a policy
//! set's once it holds the new policy). 0, what
//! an older config holds, looks up everything; failing to write a bit
//! costs lookups, never a ban or a rule.

use crate::types::family;

/// The bit that says policy set `set`'s trie of family `fam` is empty.
#[inline(always)]
pub const fn rules(set: u32, fam: u8) -> u32 {
    let bit = if fam == family::IPV4 { 0 } else { 1 };
    1 << (bit + 2 * (set & 1))
}

/// The bit that says family `fam`'s ban trie is empty.
#[inline(always)]
pub const fn bans(fam: u8) -> u32 {
    if fam == family::IPV4 { 1 << 4 } else { 1 << 5 }
}

/// `bits` with `bit` set if `empty`, cleared if not.
#[inline(always)]
pub const fn with(bits: u32, bit: u32, empty: bool) -> u32 {
    if empty { bits | bit } else { bits & !bit }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_trie_has_its_own_bit() {
        let all = [
            rules(0, family::IPV4),
            rules(0, family::IPV6),
            rules(1, family::IPV4),
            rules(1, family::IPV6),
            bans(family::IPV4),
            bans(family::IPV6),
        ];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(a.count_ones(), 1);
            for b in &all[i + 1..] {
                assert_eq!(a & b, 0, "{a:#x} and {b:#x} overlap");
            }
        }
        // The generation's low bit picks the set: only that bit counts.
        assert_eq!(rules(2, family::IPV4), rules(0, family::IPV4));
        assert_eq!(rules(3, family::IPV6), rules(1, family::IPV6));
    }

    #[test]
    fn with_sets_and_clears_one_bit() {
        let b = bans(family::IPV6);
        assert_eq!(with(0, b, true), b);
        assert_eq!(with(b | 1, b, false), 1);
        assert_eq!(with(1, b, false), 1);
    }
}
