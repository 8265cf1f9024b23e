//! Finding (and caching) what applies to a source: its rule slot and its
//! ban. The per-source entry caches both with the policy generation they
//! were resolved at, so a steady-state packet costs one hash lookup; the
//! LPM lookups run only for a new source or after the daemon changed rules
//! or bans (it bumps the generation); for a packet judged without a slot,
//! only in the tries the daemon has not marked empty.

use aya_ebpf::maps::lpm_trie::Key;
use monitor_common::{
    maps::DEFAULT_RULE_SLOT,
    tries,
    types::{PacketInfo, SourceControl, family},
};

use crate::maps::{
    TG_BANS_V4, TG_BANS_V6, TG_BOGONS4, TG_BOGONS6, TG_POLICY4_A, TG_POLICY4_B, TG_POLICY6_A,
    TG_POLICY6_B,
};

/// Whether the packet's source is in a bogon or reserved range (checked
/// once, when the source is first seen).
#[inline(always)]
pub fn is_bogon(info: &PacketInfo) -> bool {
    if info.family == family::IPV4 {
        TG_BOGONS4
            .get(Key::new(32, info.src[0].to_ne_bytes()))
            .is_some()
    } else {
        TG_BOGONS6.get(Key::new(128, v6_bytes(&info.src))).is_some()
    }
}

/// The rule slot (in policy set `generation & 1`) and ban expiry for the
/// packet's full source address (rules and bans are CIDRs; the longest
/// prefix wins).
#[inline(always)]
pub fn lookup(info: &PacketInfo, generation: u32) -> (u32, u64) {
    (rule_slot(info, generation & 1), ban_until(info))
}

/// `lookup` for a verdict nothing keeps (a packet judged without a slot):
/// where the daemon marked both of the source's tries empty in `empty`
/// (`RuntimeConfig::empty_tries`: its family's rules in the set in use,
/// and its bans), there is nothing to find and neither is looked in. The
/// flag says whether they were skipped, so that a source about to keep
/// the result in a slot looks again in full (`monitor_common::tries` says
/// why). Both or neither: one branch, where one per trie cost the
/// verifier a path per combination.
#[inline(always)]
pub fn lookup_one_packet(info: &PacketInfo, generation: u32, empty: u32) -> (u32, u64, bool) {
    let both = tries::rules(generation & 1, info.family) | tries::bans(info.family);
    if empty & both == both {
        return (DEFAULT_RULE_SLOT, 0, true);
    }
    let (slot, ban) = lookup(info, generation);
    (slot, ban, false)
}

/// The slot of the longest rule prefix holding the source in policy set
/// `set`, or the default rule's.
#[inline(always)]
fn rule_slot(info: &PacketInfo, set: u32) -> u32 {
    let found = if info.family == family::IPV4 {
        let key = Key::new(32, info.src[0].to_ne_bytes());
        let trie = if set == 0 {
            &TG_POLICY4_A
        } else {
            &TG_POLICY4_B
        };
        trie.get(&key).copied()
    } else {
        let key = Key::new(128, v6_bytes(&info.src));
        let trie = if set == 0 {
            &TG_POLICY6_A
        } else {
            &TG_POLICY6_B
        };
        trie.get(&key).copied()
    };
    found.unwrap_or(DEFAULT_RULE_SLOT)
}

/// The expiry of the longest ban prefix holding the source, 0 if none.
#[inline(always)]
fn ban_until(info: &PacketInfo) -> u64 {
    let found = if info.family == family::IPV4 {
        TG_BANS_V4
            .get(&Key::new(32, info.src[0].to_ne_bytes()))
            .copied()
    } else {
        TG_BANS_V6.get(&Key::new(128, v6_bytes(&info.src))).copied()
    };
    found.unwrap_or(0)
}

#[inline(always)]
fn v6_bytes(words: &[u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

/// Re-resolves a cached entry after a generation change. A source whose
/// rule did not change keeps its buckets; one that moved to another rule
/// starts with full buckets under the new rule. Two CPUs may resolve at
/// once; they write the same values, so the race is harmless.
#[inline(always)]
pub fn refresh(state: *mut SourceControl, info: &PacketInfo, generation: u32) {
    let (slot, ban) = lookup(info, generation);
    let s = unsafe { &mut *state };
    if s.rule_slot != slot {
        s.pkt_tat = 0;
        s.byte_tat = 0;
        s.rule_slot = slot;
    }
    s.ban_until_ns = ban;
    s.generation = generation;
}
