//! Writing a policy into the kernel: the rule parameters and the CIDR
//! tries of the policy set not in use, then one store that switches sets.

use std::collections::{HashMap, HashSet};

use ipnet::IpNet;
use monitor_common::{
    maps::{self as names, DEFAULT_RULE_SLOT, MAX_RULES_PER_FAMILY, RULE_SLOTS},
    reason::Verdict,
    tries,
    types::{RuleParams, RuntimeConfig, action, family},
};

use super::{
    MapError, Maps,
    trie::{clear_trie, lpm_v4, lpm_v6, trie_entries, trie_is_empty},
};
use crate::policy::{Policy, PolicyError};

/// Why applying a policy failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("invalid policy: {0}")]
    Invalid(#[from] PolicyError),
    #[error(transparent)]
    Map(#[from] MapError),
}

impl Maps {
    /// Writes `policy` into the policy set not in use, then flips the
    /// generation's low bit so the kernel switches sets in one store: a
    /// packet sees the old policy or the new one, never a mix, and nothing
    /// is unenforced in between. Every cached source re-resolves on its
    /// next packet; a CIDR that stays keeps its rule slot, so its sources
    /// keep their buckets. `clock_base_ns` is the bucket clock's origin
    /// (kept from the current config when `None`).
    pub fn apply_policy(
        &mut self,
        policy: &Policy,
        clock_base_ns: Option<u64>,
    ) -> Result<(), ApplyError> {
        let params = policy.compile()?;
        let mut prefix_params = policy
            .prefix_limit()
            .params(policy.v4_prefix, policy.v6_prefix)?;
        let current = self.runtime_config()?;
        // The slot hash's seeds, one per level: chosen once, kept across
        // policy swaps (a new one would move every prefix to a fresh,
        // full budget).
        let keep = |seed: u32| if seed == 0 { random_seed() } else { seed };
        prefix_params.fine.seed = keep(current.prefix.fine.seed);
        prefix_params.wide.seed = keep(current.prefix.wide.seed);
        let active = (current.generation & 1) as usize;
        let next = active ^ 1;
        let old = self.policy_slots(active)?;
        let in_use: HashSet<u32> = old.values().copied().collect();
        // Slots past RULE_SLOTS would land in the other set's half of the
        // rule array (the set in use): the range ends there.
        let mut free = 1..RULE_SLOTS;
        let mut slots = Vec::with_capacity(policy.rules.len());
        for rule in &policy.rules {
            let slot = match old.get(&rule.net) {
                Some(s) => *s,
                None => {
                    free.by_ref()
                        .find(|s| !in_use.contains(s))
                        .ok_or(PolicyError::TooMany {
                            family: "IPv4 and IPv6",
                            count: policy.rules.len(),
                            max: MAX_RULES_PER_FAMILY,
                        })?
                }
            };
            slots.push(slot);
        }
        let base = next as u32 * RULE_SLOTS;
        let rules = &mut self.rules;
        let mut write_rule = |slot: u32, p: &RuleParams| {
            rules.set(base + slot, p, 0).map_err(|source| MapError::Op {
                map: names::RULES,
                op: "writing a rule",
                source,
            })
        };
        write_rule(DEFAULT_RULE_SLOT, &params[0])?;
        for (i, slot) in slots.iter().enumerate() {
            write_rule(*slot, &params[i + 1])?;
        }
        self.clear_policy_set(next)?;
        for (rule, slot) in policy.rules.iter().zip(&slots) {
            let res = match rule.net {
                IpNet::V4(n) => self.policy_v4[next].insert(&lpm_v4(&n), *slot, 0),
                IpNet::V6(n) => self.policy_v6[next].insert(&lpm_v6(&n), *slot, 0),
            };
            res.map_err(|source| MapError::Op {
                map: if rule.net.addr().is_ipv4() {
                    names::POLICY_V4[next]
                } else {
                    names::POLICY_V6[next]
                },
                op: "inserting a rule prefix",
                source,
            })?;
        }
        let empty = self.mark_empty_rules(&current, next)?;
        let cfg = RuntimeConfig {
            empty_tries: empty,
            port_window: current.port_window,
            hot_window: current.hot_window,
            syn_limit: current.syn_limit,
            syn_known_before_s: current.syn_known_before_s,
            cookie: current.cookie,
            storm_since_ns: current.storm_since_ns,
            prefix: prefix_params,
            ..RuntimeConfig::new(
                current.generation.wrapping_add(1),
                policy.v4_prefix,
                policy.v6_prefix,
                policy.malformed as u32,
                clock_base_ns.unwrap_or(current.clock_base_ns),
            )
        };
        self.set_runtime_config(&cfg)?;
        Ok(())
    }

    /// Marks which of policy set `next`'s tries are empty
    /// (`monitor_common::tries`), as they are once filled with the new
    /// policy (the trie itself, so a key its clearing could not remove
    /// counts too). In a write of its own before the switch to the set
    /// (the set in use keeps its marks): a packet never reads the new
    /// generation with the marks of the set's previous contents. Returns
    /// the marks for the switch's write.
    fn mark_empty_rules(&mut self, current: &RuntimeConfig, next: usize) -> Result<u32, MapError> {
        let v4 = trie_is_empty(&self.policy_v4[next], names::POLICY_V4[next])?;
        let v6 = trie_is_empty(&self.policy_v6[next], names::POLICY_V6[next])?;
        let set = next as u32;
        let mut empty = current.empty_tries;
        empty = tries::with(empty, tries::rules(set, family::IPV4), v4);
        empty = tries::with(empty, tries::rules(set, family::IPV6), v6);
        if empty != current.empty_tries {
            self.set_runtime_config(&RuntimeConfig {
                empty_tries: empty,
                ..*current
            })?;
        }
        Ok(empty)
    }

    /// CIDR -> rule slot of policy set `set`.
    fn policy_slots(&self, set: usize) -> Result<HashMap<IpNet, u32>, MapError> {
        let mut out: HashMap<IpNet, u32> =
            trie_entries(&self.policy_v4[set], names::POLICY_V4[set])?
                .into_iter()
                .collect();
        out.extend(trie_entries(&self.policy_v6[set], names::POLICY_V6[set])?);
        Ok(out)
    }

    /// The rule slots of the policy in force whose sources no bucket or
    /// budget ever drops: allow rules, and rules (the default too) that
    /// only watch. A storm's answer leaves their sources' slots alone
    /// (`SourceTable::demote_since`): on the prefix budget they would pass
    /// all the same, and only lose their counts.
    pub fn unlimited_rule_slots(&self) -> Result<HashSet<u32>, MapError> {
        let set = (self.runtime_config()?.generation & 1) as usize;
        let base = set as u32 * RULE_SLOTS;
        let slots = std::iter::once(DEFAULT_RULE_SLOT).chain(self.policy_slots(set)?.into_values());
        let mut out = HashSet::new();
        for slot in slots {
            let p = self
                .rules
                .get(&(base + slot), 0)
                .map_err(|source| MapError::Op {
                    map: names::RULES,
                    op: "reading a rule",
                    source,
                })?;
            if p.action == action::ALLOW || p.refusal() == Verdict::Monitor {
                out.insert(slot);
            }
        }
        Ok(out)
    }

    /// Empties the tries of policy set `set` (it holds the policy from two
    /// swaps ago).
    fn clear_policy_set(&mut self, set: usize) -> Result<(), MapError> {
        clear_trie(&mut self.policy_v4[set], names::POLICY_V4[set])?;
        clear_trie(&mut self.policy_v6[set], names::POLICY_V6[set])
    }

    /// Changes the generation without switching policy sets (+2 keeps the
    /// low bit): every cached source re-resolves its rule and ban on its
    /// next packet. Used after ban changes.
    pub(super) fn bump_generation(&mut self) -> Result<(), MapError> {
        let mut cfg = self.runtime_config()?;
        cfg.generation = cfg.generation.wrapping_add(2);
        self.set_runtime_config(&cfg)
    }
}

/// A non-zero random u32 from the kernel (`getrandom(2)`), or one from
/// the clock if that fails.
fn random_seed() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: writes at most 4 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let seed = if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        crate::clock::monotonic_ns() as u32
    };
    seed.max(1)
}
