//! The prefix budgets as the operator sets them (`[prefix_limit]`), and
//! their kernel form (`monitor_common::prefix::PrefixParams`). Without a
//! section they follow the default limit: a prefix's sources pass
//! together what `ALL_SOURCES` sources at the default limit would (so an
//! office or a NAT pool behind one /24 still gets through), and during a
//! storm its unproven sources what one source would. The wide prefixes
//! that hold them (/16, /32) pass together what `WIDE_ALL_SOURCES`
//! sources would, and during a storm their unproven sources what
//! `WIDE_UNPROVEN_SOURCES` would.

use monitor_common::prefix::{PrefixLevel, PrefixParams};

use super::{Limit, PolicyError, Rate, bucket};

/// How many sources' default allowance a prefix's sources share.
pub const ALL_SOURCES: u64 = 16;
/// How many sources' default allowance a wide prefix's sources share: four
/// busy fine prefixes' worth, so no one network of the wide prefix fills
/// it alone.
pub const WIDE_ALL_SOURCES: u64 = 4 * ALL_SOURCES;
/// During a storm, how many sources' allowance a wide prefix's unproven
/// sources share: a few fine prefixes' unproven budgets, so the new
/// clients of a fine prefix the storm does not use still get through.
pub const WIDE_UNPROVEN_SOURCES: u64 = 4;

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
    /// The wider prefixes that hold these, with budgets of their own.
    pub wide: WideLimit,
}

/// The wide level of the prefix budgets: every packet the fine prefix
/// passes is charged to the wide prefix that holds it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WideLimit {
    /// /16 and /32 by default; at most the fine level's lengths.
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    /// What a wide prefix's sources pass together; None: no budget.
    pub all: Option<Rate>,
    /// During a storm, what its unproven sources pass together.
    pub unproven: Option<Rate>,
}

impl WideLimit {
    /// No wide budgets.
    pub const OFF: WideLimit = WideLimit {
        v4_prefix: 16,
        v6_prefix: 32,
        all: None,
        unproven: None,
    };
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
            wide: WideLimit {
                all: scaled(WIDE_ALL_SOURCES),
                unproven: scaled(WIDE_UNPROVEN_SOURCES),
                ..WideLimit::OFF
            },
        }
    }

    /// The kernel's form, for sources grouped by `v4_source` and
    /// `v6_source` bits: a budget's prefix must hold whole sources, and a
    /// wide prefix whole fine ones.
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
        let w = &self.wide;
        for (family, len, fine) in [
            ("IPv4", w.v4_prefix, self.v4_prefix),
            ("IPv6", w.v6_prefix, self.v6_prefix),
        ] {
            if len > fine {
                return Err(PolicyError::WideNarrowerThanFine { family, len, fine });
            }
        }
        Ok(PrefixParams {
            fine: PrefixLevel::new(
                self.v4_prefix,
                self.v6_prefix,
                bucket(self.all, "prefix budget", "packet")?,
                bucket(self.unproven, "unproven prefix budget", "packet")?,
            ),
            wide: PrefixLevel::new(
                w.v4_prefix,
                w.v6_prefix,
                bucket(w.all, "wide prefix budget", "packet")?,
                bucket(w.unproven, "unproven wide prefix budget", "packet")?,
            ),
            monitor: self.monitor as u32,
            _pad: 0,
        })
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
        p.wide.v4_prefix = 30;
        let e = p.params(28, 64).unwrap_err().to_string();
        assert_eq!(
            e,
            "wide prefix budget /30 is narrower than the IPv4 prefix budget's /28; a wide prefix must hold whole budget prefixes: at most /28"
        );
    }

    #[test]
    fn the_wide_budgets_follow_the_default_limit_too() {
        let p = PrefixLimit::following(&Limit::DEFAULT, false);
        assert_eq!((p.wide.v4_prefix, p.wide.v6_prefix), (16, 32));
        assert_eq!(
            p.wide.all,
            Some(Rate {
                per_sec: 64_000,
                burst: 128_000
            })
        );
        assert_eq!(
            p.wide.unproven,
            Some(Rate {
                per_sec: 4_000,
                burst: 8_000
            })
        );
        let k = p.params(32, 64).unwrap();
        assert!(k.wide.all.is_limited() && k.wide.unproven.is_limited());
        assert_eq!(k.wide.v4_mask, u32::from_be_bytes([255, 255, 0, 0]).to_be());
    }
}
