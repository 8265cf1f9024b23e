//! The one parser of each value an operator writes for the policy: a
//! CIDR, a limit's four numbers, an action, a ban's length. The config
//! file, the CLI, the control socket and the state file all call these, so
//! the same mistake gets the same message wherever it is made; the config
//! adds the file, line and key in front.

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{Action, Limit, Rate, Rule};
use crate::units;

/// Longest ban: a month; longer is a deny rule.
pub const MAX_BAN: Duration = Duration::from_secs(30 * 86_400);

/// Largest per-source rates accepted: far above what one source can send
/// through a 100G NIC, so anything larger is a typo.
const MAX_PPS: u64 = 1_000_000_000;
const MAX_BYTES_PER_SEC: u64 = 12_500_000_000;

/// The message for allow and deny rules that carry numbers.
pub const RATES_ONLY_FOR_LIMIT: &str =
    "only action = \"limit\" takes rates and bursts; remove them or change the action";

/// An address or a network: `192.0.2.7`, `192.0.2.0/24`, `2001:db8::/48`.
/// Host bits must be clear, so what is written is what is matched.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let text = s.trim();
    let net: IpNet = text
        .parse()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!(
                "`{text}` is not an address or CIDR; write an address, or a network with its prefix length, e.g. 192.0.2.7, 192.0.2.0/24 or 2001:db8::/48"
            )
        })?;
    if net.trunc() != net {
        return Err(format!(
            "`{text}` has host bits set; write the network address, {}",
            net.trunc()
        ));
    }
    Ok(net)
}

/// One of a limit's four numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitField {
    PacketsPerSecond,
    BurstPackets,
    BytesPerSecond,
    BurstBytes,
}

impl LimitField {
    pub const ALL: [LimitField; 4] = [
        LimitField::PacketsPerSecond,
        LimitField::BurstPackets,
        LimitField::BytesPerSecond,
        LimitField::BurstBytes,
    ];

    /// The key in the config file and the control protocol (the CLI flag
    /// is the same with dashes).
    pub fn key(self) -> &'static str {
        match self {
            LimitField::PacketsPerSecond => "packets_per_second",
            LimitField::BurstPackets => "burst_packets",
            LimitField::BytesPerSecond => "bytes_per_second",
            LimitField::BurstBytes => "burst_bytes",
        }
    }

    /// Parses the field's text: its unit, not zero, not absurd.
    pub fn parse(self, text: &str) -> Result<u64, String> {
        let v = match self {
            LimitField::PacketsPerSecond | LimitField::BurstPackets => units::count(text)?,
            // A bare number could be bytes or bits a second (interfaces
            // are quoted in bits, APIs in bytes): the operator says which.
            LimitField::BytesPerSecond
                if !text.trim().is_empty()
                    && text.trim().chars().all(|c| c.is_ascii_digit() || c == '.') =>
            {
                return Err(format!(
                    "`{}` has no unit; a byte rate needs one: bytes with B, KB, MB, GB (or KiB, MiB, GiB), or bits with bit, kbit, Mbit, Gbit (e.g. `{}B` or `{}Mbit`)",
                    text.trim(),
                    text.trim(),
                    text.trim()
                ));
            }
            LimitField::BytesPerSecond | LimitField::BurstBytes => units::bytes(text)?,
        };
        if v == 0 {
            return Err(
                "must be greater than zero; to drop everything from a CIDR, use a deny rule".into(),
            );
        }
        let max = match self {
            LimitField::PacketsPerSecond => Some((MAX_PPS, "1G packets per second")),
            LimitField::BytesPerSecond => Some((MAX_BYTES_PER_SEC, "100Gbit (12.5GB) per second")),
            _ => None,
        };
        if let Some((max, shown)) = max
            && v > max
        {
            return Err(format!(
                "`{}` is absurd for one source; at most {shown}",
                text.trim()
            ));
        }
        Ok(v)
    }

    /// The rate of a burst, the burst of a rate.
    fn partner(self) -> LimitField {
        match self {
            LimitField::PacketsPerSecond => LimitField::BurstPackets,
            LimitField::BurstPackets => LimitField::PacketsPerSecond,
            LimitField::BytesPerSecond => LimitField::BurstBytes,
            LimitField::BurstBytes => LimitField::BytesPerSecond,
        }
    }

    fn is_rate(self) -> bool {
        matches!(
            self,
            LimitField::PacketsPerSecond | LimitField::BytesPerSecond
        )
    }
}

/// A limit that does not hold together: which field (none: the whole
/// limit) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitError {
    pub field: Option<LimitField>,
    pub message: String,
}

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.field {
            Some(k) => write!(f, "{}: {}", k.key(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn missing(given: LimitField) -> LimitError {
    let other = given.partner();
    let what = if given.is_rate() {
        "the burst allowed above the rate"
    } else {
        "the sustained rate"
    };
    LimitError {
        field: Some(given),
        message: format!("needs `{}` too ({what})", other.key()),
    }
}

/// Each number `text` gives (by field), parsed: the one loop the config
/// file and `LimitSpec` share.
pub fn parse_limit_numbers<'a>(
    text: impl Fn(LimitField) -> Option<&'a str>,
) -> Result<[Option<u64>; 4], LimitError> {
    let mut out = [None; 4];
    for (i, f) in LimitField::ALL.into_iter().enumerate() {
        if let Some(t) = text(f) {
            out[i] = Some(f.parse(t).map_err(|message| LimitError {
                field: Some(f),
                message,
            })?);
        }
    }
    Ok(out)
}

/// `base` with the numbers `v` gives (in `LimitField::ALL` order, `None`:
/// not given) changed and the others kept. A pair `base` lacks needs both
/// of its numbers.
fn limit_over(base: &Limit, v: [Option<u64>; 4]) -> Result<Limit, LimitError> {
    let pair = |old: Option<Rate>, rate: usize, burst: usize| match (old, v[rate], v[burst]) {
        (_, Some(per_sec), Some(burst)) => Ok(Some(Rate { per_sec, burst })),
        (old, None, None) => Ok(old),
        (Some(o), Some(per_sec), None) => Ok(Some(Rate { per_sec, ..o })),
        (Some(o), None, Some(burst)) => Ok(Some(Rate { burst, ..o })),
        (None, Some(_), None) => Err(missing(LimitField::ALL[rate])),
        (None, None, Some(_)) => Err(missing(LimitField::ALL[burst])),
    };
    Ok(Limit {
        packets: pair(base.packets, 0, 1)?,
        bytes: pair(base.bytes, 2, 3)?,
    })
}

/// A limit from its parsed numbers, in `LimitField::ALL` order (`None`:
/// not given): each rate needs its burst, and one of the two pairs must be
/// there.
pub fn limit_from_parts(v: [Option<u64>; 4]) -> Result<Limit, LimitError> {
    let none = Limit {
        packets: None,
        bytes: None,
    };
    let limit = limit_over(&none, v)?;
    if limit == none {
        return Err(LimitError {
            field: None,
            message: "a limit needs packets_per_second and burst_packets, or bytes_per_second and burst_bytes".into(),
        });
    }
    Ok(limit)
}

/// A limit as the CLI, the control socket and the state file write it:
/// each number as text with its unit, each optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_per_second: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_packets: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_bytes: Option<String>,
}

impl LimitSpec {
    pub fn get(&self, f: LimitField) -> Option<&str> {
        match f {
            LimitField::PacketsPerSecond => self.packets_per_second.as_deref(),
            LimitField::BurstPackets => self.burst_packets.as_deref(),
            LimitField::BytesPerSecond => self.bytes_per_second.as_deref(),
            LimitField::BurstBytes => self.burst_bytes.as_deref(),
        }
    }

    /// Whether no number is given.
    pub fn is_empty(&self) -> bool {
        LimitField::ALL.iter().all(|f| self.get(*f).is_none())
    }

    /// Each given number, parsed.
    fn numbers(&self) -> Result<[Option<u64>; 4], LimitError> {
        parse_limit_numbers(|f| self.get(f))
    }

    /// The whole limit these numbers describe.
    pub fn parse(&self) -> Result<Limit, LimitError> {
        limit_from_parts(self.numbers()?)
    }

    /// `base` with the given numbers changed and the others kept
    /// (`tollgate limit set --packets-per-second 2k` keeps the burst and
    /// the byte limit). A pair `base` lacks needs both of its numbers.
    pub fn over(&self, base: &Limit) -> Result<Limit, LimitError> {
        limit_over(base, self.numbers()?)
    }

    /// The spec of `l`, with units, so it reads back as the same limit.
    pub fn from_limit(l: &Limit) -> Self {
        Self {
            packets_per_second: l.packets.map(|r| r.per_sec.to_string()),
            burst_packets: l.packets.map(|r| r.burst.to_string()),
            bytes_per_second: l.bytes.map(|r| format!("{}B", r.per_sec)),
            burst_bytes: l.bytes.map(|r| format!("{}B", r.burst)),
        }
    }
}

/// The name an action is written with.
pub fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Limit(_) => "limit",
    }
}

/// An action by name, with the numbers a `limit` takes (and the others
/// must not have).
pub fn parse_action(name: &str, limit: &LimitSpec) -> Result<Action, String> {
    match name {
        "allow" | "deny" if !limit.is_empty() => Err(RATES_ONLY_FOR_LIMIT.into()),
        "allow" => Ok(Action::Allow),
        "deny" => Ok(Action::Deny),
        "limit" => Ok(Action::Limit(limit.parse().map_err(|e| e.to_string())?)),
        other => Err(format!(
            "unknown action `{other}`; one of allow, deny, limit"
        )),
    }
}

/// A whole rule as the control socket and the state file write it.
pub fn parse_rule(
    cidr: &str,
    action: &str,
    limit: &LimitSpec,
    monitor: bool,
) -> Result<Rule, String> {
    Ok(Rule {
        net: parse_cidr(cidr)?,
        action: parse_action(action, limit)?,
        monitor,
    })
}

/// A ban's length: `30s`, `10m`, `1h`, at most `30d`.
pub fn ban_ttl(text: &str) -> Result<Duration, String> {
    let ttl = units::duration(text)?;
    if ttl.is_zero() || ttl > MAX_BAN {
        return Err(format!(
            "`{}`: a ban lasts between 1s and 30d; for a permanent block add a deny rule",
            text.trim()
        ));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pps: Option<&str>, bp: Option<&str>, bps: Option<&str>, bb: Option<&str>) -> LimitSpec {
        LimitSpec {
            packets_per_second: pps.map(Into::into),
            burst_packets: bp.map(Into::into),
            bytes_per_second: bps.map(Into::into),
            burst_bytes: bb.map(Into::into),
        }
    }

    #[test]
    fn cidrs_and_addresses() {
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(
            parse_cidr(" 2001:db8::/48 ").unwrap().to_string(),
            "2001:db8::/48"
        );
        assert_eq!(
            parse_cidr("192.0.2.7/24").unwrap_err(),
            "`192.0.2.7/24` has host bits set; write the network address, 192.0.2.0/24"
        );
        assert!(
            parse_cidr("192.0.2.300")
                .unwrap_err()
                .contains("is not an address or CIDR")
        );
    }

    /// A byte rate without a unit is refused with the units to use; a
    /// burst of bytes may be a plain number (a size has one meaning).
    #[test]
    fn a_byte_rate_needs_a_unit() {
        let e = LimitField::BytesPerSecond.parse("80").unwrap_err();
        assert!(
            e.starts_with("`80` has no unit; a byte rate needs one"),
            "{e}"
        );
        assert_eq!(LimitField::BytesPerSecond.parse("80Mbit"), Ok(10_000_000));
        assert_eq!(LimitField::BytesPerSecond.parse("80MB"), Ok(80_000_000));
        assert_eq!(LimitField::BurstBytes.parse("1514"), Ok(1514));
        assert!(
            spec(None, None, Some("80"), Some("2MB"))
                .parse()
                .unwrap_err()
                .to_string()
                .starts_with("bytes_per_second: `80` has no unit")
        );
    }

    #[test]
    fn a_spec_over_a_limit_changes_only_what_it_gives() {
        let base = Limit::DEFAULT;
        let l = spec(Some("2k"), Some("4k"), None, None)
            .over(&base)
            .unwrap();
        assert_eq!(
            l.packets,
            Some(Rate {
                per_sec: 2000,
                burst: 4000
            })
        );
        assert_eq!(l.bytes, base.bytes, "the byte limit stays");
        let l = spec(None, Some("3k"), None, None).over(&base).unwrap();
        assert_eq!(
            l.packets,
            Some(Rate {
                per_sec: 1000,
                burst: 3000
            })
        );
        assert_eq!(spec(None, None, None, None).over(&base).unwrap(), base);
        let packets_only = Limit {
            bytes: None,
            ..base
        };
        assert_eq!(
            spec(None, None, Some("1MB"), None)
                .over(&packets_only)
                .unwrap_err()
                .to_string(),
            "bytes_per_second: needs `burst_bytes` too (the burst allowed above the rate)"
        );
    }

    #[test]
    fn specs_round_trip_through_their_text() {
        let l = Limit::DEFAULT;
        assert_eq!(LimitSpec::from_limit(&l).parse().unwrap(), l);
    }

    #[test]
    fn allow_and_deny_take_no_numbers() {
        let numbers = spec(Some("10"), Some("10"), None, None);
        assert_eq!(
            parse_action("deny", &numbers).unwrap_err(),
            RATES_ONLY_FOR_LIMIT
        );
        assert_eq!(
            parse_action("deny", &LimitSpec::default()),
            Ok(Action::Deny)
        );
        assert!(matches!(
            parse_action("limit", &numbers),
            Ok(Action::Limit(_))
        ));
        assert!(
            parse_action("block", &numbers)
                .unwrap_err()
                .starts_with("unknown action")
        );
    }

    #[test]
    fn ban_lengths() {
        assert_eq!(ban_ttl("10m"), Ok(Duration::from_secs(600)));
        assert!(ban_ttl("31d").unwrap_err().contains("between 1s and 30d"));
        assert!(ban_ttl("0s").is_err());
        assert!(ban_ttl("soon").unwrap_err().contains("is not a duration"));
    }
}
