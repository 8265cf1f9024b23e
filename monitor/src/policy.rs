//! The typed policy (CIDR rules, the default limit, source grouping) and
//! how it is written into the kernel maps.

use std::{
    collections::{HashMap, HashSet},
    fmt,
};

use monitor_common::maps::{DEFAULT_RULE_SLOT, RULE_SLOTS};

use ipnet::IpNet;
use monitor_common::{
    bucket::{BucketError, BucketParams},
    maps::{self as names, MAX_RULES_PER_FAMILY},
    reason::Verdict,
    types::{RuleParams, RuntimeConfig, action, rule_flag},
};

use crate::maps::{MapError, Maps, clear_trie, lpm_v4, lpm_v6, trie_entries};

/// A rate and the burst allowed above it, in one unit (packets or bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: u64,
    pub burst: u64,
}

/// A per-source limit: packets and bytes, each optional (None = unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub packets: Option<Rate>,
    pub bytes: Option<Rate>,
}

impl Limit {
    /// Built-in default for `tollgate run` without a config: generous for
    /// one API client (1,000 packets/s with a 2,000-packet burst; 10 MB/s
    /// with a 2 MB burst), tight for a flood.
    pub const DEFAULT: Limit = Limit {
        packets: Some(Rate {
            per_sec: 1_000,
            burst: 2_000,
        }),
        bytes: Some(Rate {
            per_sec: 10_000_000,
            burst: 2_000_000,
        }),
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Never limited or banned.
    Allow,
    /// Always dropped.
    Deny,
    /// Limited by this rule's own buckets instead of the default.
    Limit(Limit),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub net: IpNet,
    pub action: Action,
    /// Count what this rule would drop (verdict `monitor`) and pass it.
    pub monitor: bool,
}

/// Everything the kernel needs to decide a packet's fate, but bans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub default: Limit,
    pub rules: Vec<Rule>,
    /// Sources are grouped (share buckets) by this prefix: /32 for IPv4 and
    /// /64 for IPv6 by default, since one IPv6 client owns a whole /64.
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    /// What happens to a malformed packet that survived its source limits.
    pub malformed: Verdict,
    /// The default limit only counts what it would drop.
    pub default_monitor: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            default: Limit::DEFAULT,
            rules: Vec::new(),
            v4_prefix: 32,
            v6_prefix: 64,
            malformed: Verdict::Drop,
            default_monitor: false,
        }
    }
}

/// A policy that cannot be applied, saying which rule and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "{what}: the {unit} rate is zero, which would drop everything; use a `deny` rule for that"
    )]
    ZeroRate { what: String, unit: &'static str },
    #[error(
        "{what}: the {unit} burst is zero, which would drop everything; it must be at least 1 (for bytes, at least one full frame, e.g. 1514)"
    )]
    ZeroBurst { what: String, unit: &'static str },
    #[error(
        "rule {index} ({net}): the prefix appears twice (also rule {first}); merge the two rules"
    )]
    Duplicate {
        index: usize,
        net: IpNet,
        first: usize,
    },
    #[error("rule {index} ({net}): host bits are set; write the network address, {trunc}")]
    HostBits {
        index: usize,
        net: IpNet,
        trunc: IpNet,
    },
    #[error("too many {family} rules: {count}, at most {max} fit the kernel's policy map")]
    TooMany {
        family: &'static str,
        count: usize,
        max: u32,
    },
    #[error("source prefix /{len} is longer than {family} addresses (at most /{max})")]
    SourcePrefix {
        family: &'static str,
        len: u8,
        max: u8,
    },
    #[error(
        "{what}: the {unit} burst {burst} is smaller than one kernel clock tick of its rate ({rate}/s over {tick_ms} ms); raise the burst to at least {min}, or a source under its rate could be dropped"
    )]
    BurstUnderTick {
        what: String,
        unit: &'static str,
        burst: u64,
        rate: u64,
        /// Milliseconds, as text (whole ticks print without decimals).
        tick_ms: String,
        min: u64,
    },
}

/// A full-size Ethernet frame: a byte burst must hold one more than a
/// tick's worth of bytes.
const MAX_FRAME: u64 = 1514;

fn check_burst(
    rate: Option<Rate>,
    what: &str,
    unit: &'static str,
    tick_ns: u64,
) -> Result<(), PolicyError> {
    let Some(r) = rate else { return Ok(()) };
    let per_tick = (r.per_sec as u128 * tick_ns as u128).div_ceil(1_000_000_000) as u64;
    let min = per_tick + if unit == "byte" { MAX_FRAME } else { 1 };
    if r.burst < min {
        return Err(PolicyError::BurstUnderTick {
            what: what.to_owned(),
            unit,
            burst: r.burst,
            rate: r.per_sec,
            tick_ms: format!("{}", tick_ns as f64 / 1e6),
            min,
        });
    }
    Ok(())
}

impl Rule {
    /// An enforcing rule.
    pub fn new(net: IpNet, action: Action) -> Self {
        Self {
            net,
            action,
            monitor: false,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            Action::Allow => write!(f, "allow {}", self.net),
            Action::Deny => write!(f, "deny {}", self.net),
            Action::Limit(_) => write!(f, "limit {}", self.net),
        }
    }
}

fn bucket(rate: Option<Rate>, what: &str, unit: &'static str) -> Result<BucketParams, PolicyError> {
    match rate {
        None => Ok(BucketParams::UNLIMITED),
        Some(r) => BucketParams::new(r.per_sec, r.burst).map_err(|e| match e {
            BucketError::ZeroRate => PolicyError::ZeroRate {
                what: what.to_owned(),
                unit,
            },
            BucketError::ZeroBurst => PolicyError::ZeroBurst {
                what: what.to_owned(),
                unit,
            },
        }),
    }
}

fn limit_params(limit: &Limit, what: &str) -> Result<RuleParams, PolicyError> {
    Ok(RuleParams {
        action: action::LIMIT,
        flags: 0,
        pkt: bucket(limit.packets, what, "packet")?,
        byte: bucket(limit.bytes, what, "byte")?,
    })
}

impl Policy {
    /// Checks everything the kernel would otherwise get wrong or refuse,
    /// and returns the rule parameters by slot (slot 0 = the default).
    pub fn compile(&self) -> Result<Vec<RuleParams>, PolicyError> {
        if self.v4_prefix > 32 {
            return Err(PolicyError::SourcePrefix {
                family: "IPv4",
                len: self.v4_prefix,
                max: 32,
            });
        }
        if self.v6_prefix > 128 {
            return Err(PolicyError::SourcePrefix {
                family: "IPv6",
                len: self.v6_prefix,
                max: 128,
            });
        }
        let monitor = |on: bool| if on { rule_flag::MONITOR } else { 0 };
        let mut slots = vec![RuleParams {
            flags: monitor(self.default_monitor),
            ..limit_params(&self.default, "default limit")?
        }];
        let mut seen = HashMap::new();
        let (mut v4, mut v6) = (0usize, 0usize);
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.net.trunc() != rule.net {
                return Err(PolicyError::HostBits {
                    index: index + 1,
                    net: rule.net,
                    trunc: rule.net.trunc(),
                });
            }
            if let Some(first) = seen.insert(rule.net, index + 1) {
                return Err(PolicyError::Duplicate {
                    index: index + 1,
                    net: rule.net,
                    first,
                });
            }
            match rule.net {
                IpNet::V4(_) => v4 += 1,
                IpNet::V6(_) => v6 += 1,
            }
            let what = format!("rule {} ({})", index + 1, rule.net);
            let params = match rule.action {
                Action::Allow => RuleParams {
                    action: action::ALLOW,
                    ..RuleParams::default()
                },
                Action::Deny => RuleParams {
                    action: action::DENY,
                    ..RuleParams::default()
                },
                Action::Limit(l) => limit_params(&l, &what)?,
            };
            slots.push(RuleParams {
                flags: monitor(rule.monitor),
                ..params
            });
        }
        for (family, count) in [("IPv4", v4), ("IPv6", v6)] {
            if count > MAX_RULES_PER_FAMILY as usize {
                return Err(PolicyError::TooMany {
                    family,
                    count,
                    max: MAX_RULES_PER_FAMILY,
                });
            }
        }
        Ok(slots)
    }
}

impl Policy {
    /// The live program sees time in kernel ticks (`clock::coarse_tick_ns`):
    /// every burst must cover one tick of its rate, plus one packet (or one
    /// full frame of bytes), for a source under its rate never to be
    /// dropped. Replays use the capture's exact clock and skip this.
    pub fn check_bursts(&self, tick_ns: u64) -> Result<(), PolicyError> {
        let mut limits = vec![("default limit".to_owned(), self.default)];
        for (i, r) in self.rules.iter().enumerate() {
            if let Action::Limit(l) = r.action {
                limits.push((format!("rule {} ({})", i + 1, r.net), l));
            }
        }
        for (what, l) in limits {
            check_burst(l.packets, &what, "packet", tick_ns)?;
            check_burst(l.bytes, &what, "byte", tick_ns)?;
        }
        Ok(())
    }
}

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
        let current = self.runtime_config()?;
        let active = (current.generation & 1) as usize;
        let next = active ^ 1;
        let old = self.policy_slots(active)?;
        let in_use: HashSet<u32> = old.values().copied().collect();
        let mut taken = HashSet::new();
        let mut free = 1..;
        let mut slots = Vec::with_capacity(policy.rules.len());
        for rule in &policy.rules {
            let slot = match old.get(&rule.net) {
                Some(s) => *s,
                None => free
                    .by_ref()
                    .find(|s| !in_use.contains(s) && !old.values().any(|o| o == s))
                    .ok_or(PolicyError::TooMany {
                        family: "IPv4 and IPv6",
                        count: policy.rules.len(),
                        max: MAX_RULES_PER_FAMILY,
                    })?,
            };
            taken.insert(slot);
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
        let cfg = RuntimeConfig {
            port_window: current.port_window,
            hot_window: current.hot_window,
            syn_limit: current.syn_limit,
            syn_known_before_s: current.syn_known_before_s,
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

    /// CIDR -> rule slot of policy set `set`.
    fn policy_slots(&self, set: usize) -> Result<HashMap<IpNet, u32>, MapError> {
        let mut out: HashMap<IpNet, u32> =
            trie_entries(&self.policy_v4[set], names::POLICY_V4[set])?
                .into_iter()
                .collect();
        out.extend(trie_entries(&self.policy_v6[set], names::POLICY_V6[set])?);
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
    pub(crate) fn bump_generation(&mut self) -> Result<(), MapError> {
        let mut cfg = self.runtime_config()?;
        cfg.generation = cfg.generation.wrapping_add(2);
        self.set_runtime_config(&cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(net: &str, action: Action) -> Rule {
        Rule {
            net: net.parse().unwrap(),
            action,
            monitor: false,
        }
    }

    #[test]
    fn compile_assigns_slots_in_order_after_the_default() {
        let p = Policy {
            rules: vec![
                rule("192.0.2.0/24", Action::Allow),
                rule("2001:db8::/32", Action::Deny),
            ],
            ..Policy::default()
        };
        let slots = p.compile().unwrap();
        assert_eq!(slots.len(), 3);
        assert_eq!(slots[0].action, action::LIMIT);
        assert_eq!(slots[1].action, action::ALLOW);
        assert_eq!(slots[2].action, action::DENY);
    }

    #[test]
    fn compile_rejects_what_the_kernel_would_get_wrong() {
        let zero = Limit {
            packets: Some(Rate {
                per_sec: 0,
                burst: 5,
            }),
            bytes: None,
        };
        let cases: Vec<(Policy, &str)> = vec![
            (
                Policy {
                    rules: vec![
                        rule("192.0.2.0/24", Action::Allow),
                        rule("192.0.2.0/24", Action::Deny),
                    ],
                    ..Policy::default()
                },
                "rule 2 (192.0.2.0/24): the prefix appears twice (also rule 1); merge the two rules",
            ),
            (
                Policy {
                    rules: vec![rule("192.0.2.7/24", Action::Deny)],
                    ..Policy::default()
                },
                "rule 1 (192.0.2.7/24): host bits are set; write the network address, 192.0.2.0/24",
            ),
            (
                Policy {
                    rules: vec![rule("198.51.100.0/24", Action::Limit(zero))],
                    ..Policy::default()
                },
                "rule 1 (198.51.100.0/24): the packet rate is zero, which would drop everything; use a `deny` rule for that",
            ),
            (
                Policy {
                    v6_prefix: 129,
                    ..Policy::default()
                },
                "source prefix /129 is longer than IPv6 addresses (at most /128)",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(p.compile().unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn bursts_must_cover_a_clock_tick() {
        let tick = 4_000_000;
        assert_eq!(Policy::default().check_bursts(tick), Ok(()));
        let p = Policy {
            default: Limit {
                packets: Some(Rate {
                    per_sec: 1_000,
                    burst: 4,
                }),
                bytes: Some(Rate {
                    per_sec: 1_000_000,
                    burst: 1_000_000,
                }),
            },
            ..Policy::default()
        };
        assert_eq!(
            p.check_bursts(tick).unwrap_err().to_string(),
            "default limit: the packet burst 4 is smaller than one kernel clock tick of its rate (1000/s over 4 ms); raise the burst to at least 5, or a source under its rate could be dropped"
        );
        let p = Policy {
            rules: vec![rule(
                "192.0.2.0/24",
                Action::Limit(Limit {
                    packets: None,
                    bytes: Some(Rate {
                        per_sec: 1_000_000,
                        burst: 5_000,
                    }),
                }),
            )],
            ..Policy::default()
        };
        assert!(
            p.check_bursts(tick)
                .unwrap_err()
                .to_string()
                .starts_with("rule 1 (192.0.2.0/24): the byte burst 5000 is smaller")
        );
    }
}
