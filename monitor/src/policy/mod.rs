//! The typed policy (CIDR rules, the default limit, source grouping), the
//! checks that make it safe for the kernel, and the one parser of every
//! value an operator writes for it (`values`: CIDRs, limits, ban lengths)
//! and the management guard (`guard`), shared by the config, the CLI, the
//! control socket and the state file. Pure: writing it into the kernel is
//! `maps::policy`.

use std::{collections::HashMap, fmt};

use ipnet::IpNet;
use monitor_common::{
    bucket::{BucketError, BucketParams},
    maps::MAX_RULES_PER_FAMILY,
    reason::Verdict,
    types::{RuleParams, action, rule_flag},
};

mod guard;
mod next_packet;
mod prefix;
mod values;

pub use guard::{guard_ban, guard_catch_all, guard_rule};
pub use next_packet::{Levels, SMALLEST_FRAME, next_packet};
pub use prefix::{PrefixLimit, WideLimit};
pub use values::{
    LimitError, LimitField, LimitSpec, MAX_BAN, RATES_ONLY_FOR_LIMIT, action_name, ban_ttl,
    limit_from_parts, parse_action, parse_cidr, parse_limit_numbers, parse_rule,
};

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

/// Where a rule or limit in force comes from.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `management.cidrs`: always allowed.
    Management,
    /// The config file.
    Config,
    /// Changed at run time (CLI), kept in the state file.
    Runtime,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Management => "management",
            Origin::Config => "config",
            Origin::Runtime => "runtime",
        }
    }
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
    /// What the sources of one prefix pass together; None: the budgets
    /// that follow the default limit (`PrefixLimit::following`).
    pub prefix: Option<PrefixLimit>,
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
            prefix: None,
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
    #[error(
        "too many {family} rules: {count}, at most {max} fit the kernel's policy map; merge neighbouring rules into wider prefixes or remove some (`tollgate rules list`)"
    )]
    TooMany {
        family: &'static str,
        count: usize,
        max: u32,
    },
    #[error(
        "prefix budget /{len} is narrower than the {family} source prefix /{source_len}; a budget's prefix must hold whole sources: at most /{source_len}"
    )]
    PrefixNarrowerThanSource {
        family: &'static str,
        len: u8,
        source_len: u8,
    },
    #[error(
        "wide prefix budget /{len} is narrower than the {family} prefix budget's /{fine}; a wide prefix must hold whole budget prefixes: at most /{fine}"
    )]
    WideNarrowerThanFine {
        family: &'static str,
        len: u8,
        fine: u8,
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
    /// The prefix budgets in force.
    pub fn prefix_limit(&self) -> PrefixLimit {
        self.prefix
            .unwrap_or_else(|| PrefixLimit::following(&self.default, self.default_monitor))
    }

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
        self.prefix_limit().params(self.v4_prefix, self.v6_prefix)?;
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
