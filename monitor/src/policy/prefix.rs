//! The prefix budgets as the operator sets them (`[prefix_limit]`), and
//! their kernel form (`monitor_common::prefix::PrefixParams`). Without a
//! section they follow the default limit: a prefix's sources pass
//! together what `ALL_SOURCES` sources at the default limit would (so an
//! office or a NAT pool behind one /24 still gets through), and during a
//! storm its unproven sources what one source would.

use monitor_common::prefix::PrefixParams;

use super::{Limit, PolicyError, Rate, bucket};

/// How many sources' default allowance a prefix's sources share.
pub const ALL_SOURCES: u64 = 16;

/// The prefix budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixLimit {
    /// The prefixes budgets are kept for: /24 and /48 by default.
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    /// What a prefix's sources pass together; None: no budget.
    pub all: Option<Rate>,
    /// During a storm, what a prefix's unproven sources pass together;
    /// None: the storm changes nothing.
    pub unproven: Option<Rate>,
    /// Refusals are only counted.
    pub monitor: bool,
}

impl PrefixLimit {
    /// The budgets that follow a default limit of `default` (in monitor
    /// mode if `monitor`): none if it limits no packets.
    pub fn following(default: &Limit, monitor: bool) -> Self {
        let scaled = |n: u64| {
            default.packets.map(|r| Rate {
                per_sec: r.per_sec.saturating_mul(n),
                burst: r.burst.saturating_mul(n),
            })
        };
        Self {
            v4_prefix: 24,
            v6_prefix: 48,
            all: scaled(ALL_SOURCES),
            unproven: scaled(1),
            monitor,
        }
    }

    /// The kernel's form, for sources grouped by `v4_source` and
    /// `v6_source` bits: a budget's prefix must hold whole sources.
    pub fn params(&self, v4_source: u8, v6_source: u8) -> Result<PrefixParams, PolicyError> {
        for (family, len, source) in [
            ("IPv4", self.v4_prefix, v4_source),
            ("IPv6", self.v6_prefix, v6_source),
        ] {
            if len > source {
                return Err(PolicyError::PrefixNarrowerThanSource {
                    family,
                    len,
                    source_len: source,
                });
            }
        }
        let mut p = PrefixParams::new(
            self.v4_prefix,
            self.v6_prefix,
            bucket(self.all, "prefix budget", "packet")?,
            bucket(self.unproven, "unproven prefix budget", "packet")?,
        );
        p.monitor = self.monitor as u32;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_section_the_budgets_follow_the_default_limit() {
        let p = PrefixLimit::following(&Limit::DEFAULT, false);
        assert_eq!(
            p.all,
            Some(Rate {
                per_sec: 16_000,
                burst: 32_000
            })
        );
        assert_eq!(
            p.unproven,
            Some(Rate {
                per_sec: 1_000,
                burst: 2_000
            })
        );
        let bytes_only = Limit {
            packets: None,
            bytes: Limit::DEFAULT.bytes,
        };
        let none = PrefixLimit::following(&bytes_only, false);
        assert_eq!((none.all, none.unproven), (None, None));
        assert!(!none.params(32, 64).unwrap().in_force(true));
    }

    #[test]
    fn a_budget_prefix_must_hold_whole_sources() {
        let mut p = PrefixLimit::following(&Limit::DEFAULT, false);
        p.v4_prefix = 28;
        let e = p.params(24, 64).unwrap_err().to_string();
        assert_eq!(
            e,
            "prefix budget /28 is narrower than the IPv4 source prefix /24; a budget's prefix must hold whole sources: at most /24"
        );
        assert!(p.params(28, 64).is_ok());
    }
}
