//! Rates, sizes and durations as operators write them: `10k`, `5MB`,
//! `1Gbit`, `30s`, `10m`. Decimal prefixes (k = 1,000) as network rates are
//! quoted; `KiB`/`MiB`/`GiB` for binary sizes.

use std::time::Duration;

/// A count with an optional k/M/G suffix (packets, or a plain number).
pub fn count(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let err = || {
        format!(
            "`{s}` is not a count; write a whole number, optionally with k, M or G (e.g. `10k`)"
        )
    };
    let (num, mult) = split_suffix(
        s,
        &[
            ("k", 1_000),
            ("K", 1_000),
            ("M", 1_000_000),
            ("G", 1_000_000_000),
        ],
    )
    .ok_or_else(err)?;
    scale(num, mult, s).map_err(|_| err())
}

/// Bytes (a size, or bytes per second): `1500`, `64KB`, `5MB`, `2MiB`, or
/// bits with `bit`/`kbit`/`Mbit`/`Gbit` (divided by 8).
pub fn bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    const UNITS: &[(&str, u64)] = &[
        ("Gbit", 1_000_000_000),
        ("Mbit", 1_000_000),
        ("kbit", 1_000),
        ("bit", 1),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("kB", 1_000),
        ("KB", 1_000),
        ("B", 1),
    ];
    let err = || {
        format!(
            "`{s}` is not a size; write bytes with B, KB, MB, GB (or KiB, MiB, GiB), or bits with bit, kbit, Mbit, Gbit (e.g. `5MB`, `100Mbit`)"
        )
    };
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let (num, mult) = split_suffix(s, UNITS).ok_or_else(err)?;
    let bits = s.ends_with("bit");
    let v = scale(num, mult, s).map_err(|_| err())?;
    Ok(if bits { v / 8 } else { v })
}

/// A duration: `500ms`, `30s`, `10m`, `1h`, `7d`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let unitless = s.ends_with(|c: char| c.is_ascii_digit());
    let (num, mult) = split_suffix(
        s,
        &[
            ("ms", 1),
            ("s", 1_000),
            ("m", 60_000),
            ("h", 3_600_000),
            ("d", 86_400_000),
        ],
    )
    .filter(|(n, _)| !n.is_empty() && !unitless)
    .ok_or_else(|| {
        format!("`{s}` is not a duration; write a number with ms, s, m, h or d (e.g. `30s`, `10m`)")
    })?;
    Ok(Duration::from_millis(scale(num, mult, s)?))
}

fn split_suffix<'a>(s: &'a str, units: &[(&str, u64)]) -> Option<(&'a str, u64)> {
    for (u, m) in units {
        if let Some(n) = s.strip_suffix(u) {
            return Some((n.trim(), *m));
        }
    }
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') && !s.is_empty() {
        return Some((s, 1));
    }
    None
}

/// `num` (possibly with a decimal point) times `mult`, as a whole number.
fn scale(num: &str, mult: u64, whole: &str) -> Result<u64, String> {
    let bad = || format!("`{whole}` is not a number with a unit");
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(mult)
            .ok_or_else(|| format!("`{whole}` is too large"));
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    if !f.is_finite() || f < 0.0 {
        return Err(bad());
    }
    let v = f * mult as f64;
    if v.fract() != 0.0 || v > u64::MAX as f64 {
        return Err(format!("`{whole}` is not a whole number of units"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        for (s, v) in [
            ("10", 10),
            ("10k", 10_000),
            ("1.5k", 1_500),
            ("2M", 2_000_000),
            ("1G", 1_000_000_000),
        ] {
            assert_eq!(count(s), Ok(v), "{s}");
        }
        for s in ["", "k", "ten", "1.0001k", "-5", "5x"] {
            assert!(count(s).is_err(), "{s}");
        }
    }

    #[test]
    fn sizes_and_bit_rates() {
        for (s, v) in [
            ("1500", 1_500),
            ("1500B", 1_500),
            ("64KB", 64_000),
            ("5MB", 5_000_000),
            ("2MiB", 2 << 20),
            ("1Gbit", 125_000_000),
            ("100Mbit", 12_500_000),
            ("8kbit", 1_000),
        ] {
            assert_eq!(bytes(s), Ok(v), "{s}");
        }
        for s in ["5 apples", "MB", "1.2.3MB"] {
            assert!(bytes(s).is_err(), "{s}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for s in ["30", "s", "ten s", "5 weeks"] {
            assert!(duration(s).is_err(), "{s}");
        }
    }
}
