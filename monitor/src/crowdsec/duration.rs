//! Go's duration strings, as CrowdSec's Local API writes a decision's
//! time left: a sign, then numbers with fractions and units, e.g.
//! `3h59m59s`, `59.245451599s`, `-17.6ms`, `0s` (Go's
//! `time.ParseDuration`). Read to whole nanoseconds.

/// Nanoseconds per unit, by suffix (Go accepts both micro signs).
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// `s` as signed nanoseconds; the error says what is wrong with it.
pub fn parse(s: &str) -> Result<i128, String> {
    let bad =
        |why: &str| format!("duration {s:?}: {why} (a Go duration such as 4h, 3h59m59s or 59.5s)");
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number without a unit"))?;
        let (number, tail) = rest.split_at(digits);
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(bad("a unit without a number"));
        }
        let (unit, scale) = UNITS
            .iter()
            .filter(|(u, _)| tail.starts_with(u))
            // "ms" before "m", "ns" before "s": the longest suffix.
            .max_by_key(|(u, _)| u.len())
            .ok_or_else(|| bad("an unknown unit"))?;
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad("a number too large"))?
        };
        // The fraction to nanoseconds, truncated as Go does.
        let mut part = whole.checked_mul(*scale).ok_or_else(|| bad("too long"))?;
        let mut unit_scale = *scale;
        for d in frac.bytes().take(30) {
            unit_scale /= 10;
            part += u128::from(d - b'0') * unit_scale;
        }
        total = total.checked_add(part).ok_or_else(|| bad("too long"))?;
        rest = &tail[unit.len()..];
    }
    let total = i128::try_from(total).map_err(|_| bad("too long"))?;
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn reads_what_the_local_api_writes() {
        assert_eq!(parse("4h"), Ok(4 * 3600 * S));
        assert_eq!(parse("3h59m59s"), Ok((3 * 3600 + 59 * 60 + 59) * S));
        assert_eq!(parse("59.245451599s"), Ok(59_245_451_599));
        assert_eq!(parse("-17.6ms"), Ok(-17_600_000));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("0s"), Ok(0));
        assert_eq!(parse("1h0m0.5s"), Ok(3600 * S + S / 2));
        assert_eq!(parse("150µs"), Ok(150_000));
        assert_eq!(parse("2us3ns"), Ok(2_003));
        assert_eq!(parse(".5s"), Ok(S / 2));
    }

    #[test]
    fn refuses_what_is_not_a_duration_and_says_so() {
        for (bad, why) in [
            ("", "empty"),
            ("10", "a number without a unit"),
            ("5d", "an unknown unit"),
            ("h", "a unit without a number"),
            ("1.2.3s", "a unit without a number"),
            ("-", "empty"),
            (
                "99999999999999999999999999999999999999999h",
                "a number too large",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
