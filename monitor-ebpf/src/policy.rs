//! Finding (and caching) what applies to a source: its rule slot and its
//! ban. The per-source entry caches both with the policy generation they
//! were resolved at, so a steady-state packet costs one hash lookup; the
//! LPM lookups run only for a new source or after the daemon changed rules
//! or bans (it bumps the generation).

use aya_ebpf::maps::lpm_trie::Key;
use monitor_common::{
    maps::DEFAULT_RULE_SLOT,
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
    let set = generation & 1;
    if info.family == family::IPV4 {
        let key = Key::new(32, info.src[0].to_ne_bytes());
        let trie = if set == 0 {
            &TG_POLICY4_A
        } else {
            &TG_POLICY4_B
        };
        let slot = trie.get(&key).copied().unwrap_or(DEFAULT_RULE_SLOT);
        let ban = TG_BANS_V4.get(&key).copied().unwrap_or(0);
        (slot, ban)
    } else {
        let key = Key::new(128, v6_bytes(&info.src));
        let trie = if set == 0 {
            &TG_POLICY6_A
        } else {
            &TG_POLICY6_B
        };
        let slot = trie.get(&key).copied().unwrap_or(DEFAULT_RULE_SLOT);
        let ban = TG_BANS_V6.get(&key).copied().unwrap_or(0);
        (slot, ban)
    }
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
