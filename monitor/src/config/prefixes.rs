//! `[prefix_limit]`: what the sources of one prefix pass together
//! (`policy::PrefixLimit`). Without the section the budgets follow the
//! default limit, also when `tollgate limit set` changes it; with it,
//! each value written replaces the one that would follow, and a value
//! left out still follows the file's default limit.
//!
//! ```toml
//! [prefix_limit]
//! ipv4_prefix = 24            # the prefixes budgets are kept for
//! ipv6_prefix = 48
//! packets_per_second = "16k"  # a prefix's sources together
//! burst_packets = "32k"
//! mode = "enforce"            # or "monitor": count refusals, drop nothing
//! [prefix_limit.unproven]     # during a storm: its unproven sources together
//! packets_per_second = "1k"
//! burst_packets = "2k"
//! [prefix_limit.wide]         # the wider prefixes that hold those
//! ipv4_prefix = 16
//! ipv6_prefix = 32
//! packets_per_second = "64k"
//! burst_packets = "128k"
//! [prefix_limit.wide.unproven]
//! packets_per_second = "4k"
//! burst_packets = "8k"
//! ```
//!
//! `enabled = false` turns the budgets off (in `[prefix_limit.wide]`, the
//! wide level's alone).

use serde::Deserialize;
use toml::Spanned;

use super::{
    Mode,
    located::{Checker, ConfigError},
    schema::{LimitFile, Quantity},
    settings::Sources,
};
use crate::policy::{Limit, LimitField, PrefixLimit, Rate, WideLimit};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PrefixLimitFile {
    enabled: Option<bool>,
    ipv4_prefix: Option<Spanned<u8>>,
    ipv6_prefix: Option<Spanned<u8>>,
    packets_per_second: Option<Spanned<Quantity>>,
    burst_packets: Option<Spanned<Quantity>>,
    mode: Option<Mode>,
    unproven: Option<LimitFile>,
    wide: Option<WideFile>,
}

/// `[prefix_limit.wide]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct WideFile {
    enabled: Option<bool>,
    ipv4_prefix: Option<Spanned<u8>>,
    ipv6_prefix: Option<Spanned<u8>>,
    packets_per_second: Option<Spanned<Quantity>>,
    burst_packets: Option<Spanned<Quantity>>,
    unproven: Option<LimitFile>,
}

/// The section, checked: None without it (the budgets follow the default
/// limit in force).
pub(super) fn prefix_limit(
    c: &Checker,
    f: Option<&PrefixLimitFile>,
    sources: &Sources,
    default: (&Limit, bool),
) -> Result<Option<PrefixLimit>, ConfigError> {
    let Some(f) = f else { return Ok(None) };
    let following = PrefixLimit::following(default.0, default.1);
    let v4_prefix = budget_prefix(c, &f.ipv4_prefix, "ipv4_prefix", 24, sources.v4_prefix)?;
    let v6_prefix = budget_prefix(c, &f.ipv6_prefix, "ipv6_prefix", 48, sources.v6_prefix)?;
    let (all, unproven) = rates(
        c,
        (&f.packets_per_second, &f.burst_packets, f.unproven.as_ref()),
        "prefix_limit",
        (following.all, following.unproven),
    )?;
    // A wide budget left out holds at least four of the fine prefixes
    // written (a fine budget above what follows the default limit would
    // otherwise meet a tighter wide one).
    let wide_following = WideLimit {
        all: at_least(following.wide.all, all, 4),
        unproven: at_least(following.wide.unproven, unproven, 4),
        ..following.wide
    };
    let wide = wide_limit(c, f.wide.as_ref(), &wide_following, (v4_prefix, v6_prefix))?;
    if f.enabled == Some(false) {
        return Ok(Some(PrefixLimit {
            v4_prefix,
            v6_prefix,
            all: None,
            unproven: None,
            monitor: false,
            wide: WideLimit {
                all: None,
                unproven: None,
                ..wide
            },
        }));
    }
    Ok(Some(PrefixLimit {
        v4_prefix,
        v6_prefix,
        all,
        unproven,
        monitor: f.mode.map_or(default.1, |m| m == Mode::Monitor),
        wide,
    }))
}

/// `rate`, raised to `n` times `fine` where that is more (None stays
/// None: no wide budget).
fn at_least(rate: Option<Rate>, fine: Option<Rate>, n: u64) -> Option<Rate> {
    match (rate, fine) {
        (Some(r), Some(f)) => Some(Rate {
            per_sec: r.per_sec.max(f.per_sec.saturating_mul(n)),
            burst: r.burst.max(f.burst.saturating_mul(n)),
        }),
        (r, _) => r,
    }
}

/// `[prefix_limit.wide]`, checked against the fine level's lengths: the
/// budgets that follow (`following`) without it.
fn wide_limit(
    c: &Checker,
    f: Option<&WideFile>,
    following: &WideLimit,
    (v4_fine, v6_fine): (u8, u8),
) -> Result<WideLimit, ConfigError> {
    let Some(f) = f else {
        return Ok(WideLimit {
            v4_prefix: following.v4_prefix.min(v4_fine),
            v6_prefix: following.v6_prefix.min(v6_fine),
            ..*following
        });
    };
    let length = |v: &Option<Spanned<u8>>, name: &str, default: u8, fine: u8| {
        let at = format!("prefix_limit.{name}");
        let bound = Bound {
            len: fine,
            what: "the budget's prefix",
            at: &at,
            rule: "a wide prefix must hold whole budget prefixes",
        };
        prefix_within(c, v, &format!("prefix_limit.wide.{name}"), default, &bound)
    };
    let v4_prefix = length(&f.ipv4_prefix, "ipv4_prefix", following.v4_prefix, v4_fine)?;
    let v6_prefix = length(&f.ipv6_prefix, "ipv6_prefix", following.v6_prefix, v6_fine)?;
    if f.enabled == Some(false) {
        return Ok(WideLimit {
            v4_prefix,
            v6_prefix,
            ..WideLimit::OFF
        });
    }
    let (all, unproven) = rates(
        c,
        (&f.packets_per_second, &f.burst_packets, f.unproven.as_ref()),
        "prefix_limit.wide",
        (following.all, following.unproven),
    )?;
    Ok(WideLimit {
        v4_prefix,
        v6_prefix,
        all,
        unproven,
    })
}

/// A level's two budgets as written at `at` (its rate and burst, and its
/// `unproven` table), each falling back to the one that follows.
fn rates(
    c: &Checker,
    (per_sec, burst, unproven): (
        &Option<Spanned<Quantity>>,
        &Option<Spanned<Quantity>>,
        Option<&LimitFile>,
    ),
    at: &str,
    following: (Option<Rate>, Option<Rate>),
) -> Result<(Option<Rate>, Option<Rate>), ConfigError> {
    let all = LimitFile {
        packets_per_second: per_sec.clone(),
        burst_packets: burst.clone(),
        ..LimitFile::default()
    };
    let all = packets(c, &all, at)?.or(following.0);
    let unproven = match unproven {
        Some(u) => packets(c, u, &format!("{at}.unproven"))?.or(following.1),
        None => following.1,
    };
    Ok((all, unproven))
}

/// A budget's prefix length: at most the source prefix of its family, so
/// a budget holds whole sources.
fn budget_prefix(
    c: &Checker,
    v: &Option<Spanned<u8>>,
    name: &str,
    default: u8,
    source: u8,
) -> Result<u8, ConfigError> {
    let family = if name.starts_with("ipv4") {
        "sources.ipv4_prefix"
    } else {
        "sources.ipv6_prefix"
    };
    let bound = Bound {
        len: source,
        what: "a source",
        at: family,
        rule: "a budget's prefix must hold whole sources",
    };
    prefix_within(c, v, &format!("prefix_limit.{name}"), default, &bound)
}

/// The prefix length a length must not exceed, and what says so.
struct Bound<'a> {
    len: u8,
    /// What has that length, and the key it comes from.
    what: &'a str,
    at: &'a str,
    /// Why it bounds.
    rule: &'a str,
}

/// The prefix length at `key` (`default`, at most the bound, if absent),
/// refused at its line if narrower than `bound`.
fn prefix_within(
    c: &Checker,
    v: &Option<Spanned<u8>>,
    key: &str,
    default: u8,
    bound: &Bound,
) -> Result<u8, ConfigError> {
    let max = bound.len;
    c.number(v, key, default.min(max), |n| {
        if n > max {
            Err(format!(
                "/{n} is narrower than {} (/{max}, {}); {}: at most {max}",
                bound.what, bound.at, bound.rule
            ))
        } else {
            Ok(())
        }
    })
}

/// The packet rate written in `l`, if any; bytes are refused (a prefix
/// budget counts packets).
fn packets(c: &Checker, l: &LimitFile, at: &str) -> Result<Option<Rate>, ConfigError> {
    for f in [LimitField::BytesPerSecond, LimitField::BurstBytes] {
        if let Some(q) = l.get(f) {
            return Err(c.err(
                q.span(),
                format!("{at}.{}", f.key()),
                "a prefix budget counts packets only; limit bytes per source in [default_limit] or a rule",
            ));
        }
    }
    if l.mode.is_some() {
        return Err(c.whole(format!(
            "{at}.mode: the unproven budget takes its mode from [prefix_limit]; remove it"
        )));
    }
    if l.is_empty() {
        return Ok(None);
    }
    Ok(c.limit(l, at, 0..0)?.packets)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::policy::{Limit, PrefixLimit, Rate};

    fn parse(text: &str) -> Result<super::super::Config, String> {
        super::super::parse(Path::new("t.toml"), text, false).map_err(|e| e.to_string())
    }

    #[test]
    fn without_the_section_the_budgets_follow_the_default_limit_in_force() {
        let c = parse("interfaces = [\"lo\"]\n").unwrap();
        assert_eq!(c.prefix_limit, None);
        assert_eq!(
            c.policy(&[]).prefix_limit(),
            PrefixLimit::following(&Limit::DEFAULT, false)
        );
    }

    #[test]
    fn values_written_replace_those_that_follow_and_the_rest_still_follow() {
        let c = parse(
            "interfaces = [\"lo\"]\n[default_limit]\npackets_per_second = 500\nburst_packets = 800\nmode = \"monitor\"\n[prefix_limit]\nipv6_prefix = 56\npackets_per_second = \"4k\"\nburst_packets = \"8k\"\n",
        )
        .unwrap();
        let p = c.prefix_limit.unwrap();
        assert_eq!((p.v4_prefix, p.v6_prefix), (24, 56));
        assert_eq!(
            p.all,
            Some(Rate {
                per_sec: 4_000,
                burst: 8_000
            })
        );
        assert_eq!(
            p.unproven,
            Some(Rate {
                per_sec: 500,
                burst: 800
            })
        );
        assert!(p.monitor, "the mode follows the default limit's");
        let off = parse("interfaces = [\"lo\"]\n[prefix_limit]\nenabled = false\n").unwrap();
        let off = off.prefix_limit.unwrap();
        assert_eq!((off.all, off.unproven), (None, None));
        assert_eq!((off.wide.all, off.wide.unproven), (None, None));
    }

    #[test]
    fn the_wide_level_follows_the_default_limit_unless_written() {
        let c = parse(
            "interfaces = [\"lo\"]\n[default_limit]\npackets_per_second = 500\nburst_packets = 800\n[prefix_limit]\nipv6_prefix = 40\n[prefix_limit.wide]\nipv4_prefix = 12\npackets_per_second = \"20k\"\nburst_packets = \"40k\"\n",
        )
        .unwrap();
        let w = c.prefix_limit.unwrap().wide;
        // The /32 that would follow is wider than the /40: kept.
        assert_eq!((w.v4_prefix, w.v6_prefix), (12, 32));
        assert_eq!(
            w.all,
            Some(Rate {
                per_sec: 20_000,
                burst: 40_000
            })
        );
        assert_eq!(
            w.unproven,
            Some(Rate {
                per_sec: 2_000,
                burst: 3_200
            })
        );
        // A fine budget written above what follows: the wide one that
        // follows holds four of them.
        let big = parse(
            "interfaces = [\"lo\"]\n[prefix_limit]\npackets_per_second = \"100k\"\nburst_packets = \"200k\"\n",
        )
        .unwrap();
        assert_eq!(
            big.prefix_limit.unwrap().wide.all,
            Some(Rate {
                per_sec: 400_000,
                burst: 800_000
            })
        );
        let off =
            parse("interfaces = [\"lo\"]\n[prefix_limit]\n[prefix_limit.wide]\nenabled = false\n")
                .unwrap();
        let off = off.prefix_limit.unwrap();
        assert_eq!((off.wide.all, off.wide.unproven), (None, None));
        assert!(off.all.is_some(), "the fine level stays");
    }

    #[test]
    fn bad_values_are_refused_at_their_line_with_the_fix() {
        for (text, want) in [
            (
                "interfaces = [\"lo\"]\n[sources]\nipv4_prefix = 24\n[prefix_limit]\nipv4_prefix = 28\n",
                "t.toml:5: prefix_limit.ipv4_prefix: /28 is narrower than a source (/24, sources.ipv4_prefix); a budget's prefix must hold whole sources: at most 24",
            ),
            (
                "interfaces = [\"lo\"]\n[prefix_limit]\nipv6_prefix = 40\n[prefix_limit.wide]\nipv6_prefix = 44\n",
                "t.toml:5: prefix_limit.wide.ipv6_prefix: /44 is narrower than the budget's prefix (/40, prefix_limit.ipv6_prefix); a wide prefix must hold whole budget prefixes: at most 40",
            ),
            (
                "interfaces = [\"lo\"]\n[prefix_limit.wide.unproven]\nburst_bytes = \"1MB\"\n",
                "t.toml:3: prefix_limit.wide.unproven.burst_bytes: a prefix budget counts packets only; limit bytes per source in [default_limit] or a rule",
            ),
            (
                "interfaces = [\"lo\"]\n[prefix_limit.unproven]\nbytes_per_second = \"1MB\"\n",
                "t.toml:3: prefix_limit.unproven.bytes_per_second: a prefix budget counts packets only; limit bytes per source in [default_limit] or a rule",
            ),
            (
                "interfaces = [\"lo\"]\n[prefix_limit]\npackets_per_second = 0\n",
                "t.toml:3: prefix_limit.packets_per_second: must be greater than zero; to drop everything from a CIDR, use a deny rule",
            ),
        ] {
            assert_eq!(parse(text).err().as_deref(), Some(want), "for:\n{text}");
        }
    }
}
