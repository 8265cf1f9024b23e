//! Token buckets as GCRA (the generic cell rate algorithm).
//!
//! A token bucket with rate `r` and burst `b` is exactly equivalent to GCRA
//! with an emission interval `I = 1/r` and a tolerance `b·I`: instead of a
//! token count and a last-update time, GCRA keeps one number, the
//! *theoretical arrival time* (TAT). A packet of cost `c` arriving at `now`
//! conforms when `max(TAT, now) + c·I - now <= b·I`, and then moves TAT to
//! that value. One `u64` of state per bucket is what lets the kernel update a
//! bucket from several CPUs at once with a single compare-and-swap instead of
//! a spin lock (see `monitor-ebpf/src/limit.rs`).
//!
//! Units, all integers, so the arithmetic is exact:
//! - time is kept in *ticks* of 1/256 ns (`TICK_SHIFT`) counted from a clock
//!   base the daemon sets when it creates the maps (`RuntimeConfig::
//!   clock_base_ns`); a u64 of ticks lasts 2^56 ns, 2.28 years, from that
//!   base (the daemon rebases before then, refilling every bucket);
//! - the interval is a whole number of ticks per unit (packet or byte),
//!   rounded *up*, so a bucket is never looser than configured; the
//!   rounding makes it stricter by at most `rate / 256e9`: 0.004% at 10 Mpps,
//!   0.5% at 10 Gbit/s of bytes, and stays under 1% up to 20 Gbit/s from a
//!   single source;
//! - a packet costs `cost · interval` ticks with no further rounding, so a
//!   burst of exactly `burst` units passes back to back, and over any window
//!   of length T at most `burst + rate·T` units pass.

/// Ticks per nanosecond, as a shift: 1 tick = 1/256 ns.
pub const TICK_SHIFT: u32 = 8;
const TICKS_PER_SEC: u128 = 1_000_000_000u128 << TICK_SHIFT;
/// Largest cost one packet is charged, in units (bytes): far above any
/// frame XDP sees, and small enough that `cost · interval` cannot overflow
/// (interval <= 2^38 ticks for any rate >= 1, so the product is < 2^58).
pub const MAX_COST: u64 = 1 << 20;

/// One bucket's parameters, as the kernel uses them.
///
/// `interval == 0` means "no limit on this dimension" (for example a
/// rule that limits packets but not bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketParams {
    /// Ticks per unit (packet or byte), rounded up.
    pub interval: u64,
    /// Largest allowed `TAT - now`, in ticks: `burst · interval`.
    pub tolerance: u64,
}
const _: () = assert!(core::mem::size_of::<BucketParams>() == 16);

/// Why [`BucketParams::new`] refused a rate or burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketError {
    /// A rate of zero would drop everything; use a `deny` rule instead.
    ZeroRate,
    /// A burst of zero would drop everything; the burst must be at least one
    /// packet, or at least one maximum-size frame for a byte bucket.
    ZeroBurst,
}

impl BucketParams {
    /// No limit on this dimension.
    pub const UNLIMITED: Self = Self {
        interval: 0,
        tolerance: 0,
    };

    /// A bucket refilling `rate_per_sec` units per second that holds at most
    /// `burst` units.
    pub fn new(rate_per_sec: u64, burst: u64) -> Result<Self, BucketError> {
        if rate_per_sec == 0 {
            return Err(BucketError::ZeroRate);
        }
        if burst == 0 {
            return Err(BucketError::ZeroBurst);
        }
        let interval = TICKS_PER_SEC.div_ceil(rate_per_sec as u128) as u64;
        let tolerance = (burst as u128 * interval as u128).min(u64::MAX as u128) as u64;
        Ok(Self {
            interval,
            tolerance,
        })
    }

    /// Whether this dimension is limited at all.
    #[inline(always)]
    pub fn is_limited(&self) -> bool {
        self.interval != 0
    }

    /// What a packet of `cost` units costs, in ticks.
    #[inline(always)]
    pub fn charge(&self, cost: u64) -> u64 {
        let cost = if cost > MAX_COST { MAX_COST } else { cost };
        cost * self.interval
    }
}

/// Nanoseconds since the clock base to ticks.
#[inline(always)]
pub fn ticks(ns_since_base: u64) -> u64 {
    ns_since_base << TICK_SHIFT
}

/// The GCRA decision: `Some(new_tat)` if a packet of `cost` units arriving
/// at `now` (ticks) conforms to the bucket whose state is `tat`, `None` if it
/// must be dropped (the state then stays as it was: a dropped packet costs
/// nothing).
#[inline(always)]
pub fn conform(tat: u64, now: u64, cost: u64, params: &BucketParams) -> Option<u64> {
    let base = if tat > now { tat } else { now };
    let new_tat = base.saturating_add(params.charge(cost));
    if new_tat - now <= params.tolerance {
        Some(new_tat)
    } else {
        None
    }
}

/// Tokens left in the bucket at `now`, in whole units: what an operator
/// sees as "remaining burst". For display only.
pub fn tokens_left(tat: u64, now: u64, params: &BucketParams) -> u64 {
    if !params.is_limited() {
        return u64::MAX;
    }
    let used = tat.saturating_sub(now);
    params.tolerance.saturating_sub(used) / params.interval
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const NS_PER_SEC: u64 = SEC;

    fn run(params: &BucketParams, arrivals: &[(u64, u64)]) -> (u64, u64) {
        let mut tat = 0;
        let (mut passed, mut dropped) = (0, 0);
        for &(t_ns, cost) in arrivals {
            match conform(tat, ticks(t_ns), cost, params) {
                Some(n) => {
                    tat = n;
                    passed += cost;
                }
                None => dropped += cost,
            }
        }
        (passed, dropped)
    }

    #[test]
    fn rejects_zero_rate_and_burst() {
        assert_eq!(BucketParams::new(0, 10), Err(BucketError::ZeroRate));
        assert_eq!(BucketParams::new(10, 0), Err(BucketError::ZeroBurst));
    }

    #[test]
    fn back_to_back_gets_exactly_the_burst() {
        // Table: (rate, burst) -> a burst of 10x burst packets at one instant
        // passes exactly `burst`.
        for (rate, burst) in [(1, 1), (100, 10), (1_000, 1), (10_000_000, 64), (3, 7)] {
            let p = BucketParams::new(rate, burst).unwrap();
            let arrivals: std::vec::Vec<_> = (0..burst * 10).map(|_| (SEC, 1)).collect();
            assert_eq!(run(&p, &arrivals).0, burst, "rate {rate} burst {burst}");
        }
    }

    #[test]
    fn refills_at_the_rate() {
        // 1000 pps, burst 10, offered 10k pps for 2 s: 10 + 1000·2 pass
        // (within one packet for the arrival at exactly t = 2 s).
        let p = BucketParams::new(1_000, 10).unwrap();
        let arrivals: std::vec::Vec<_> = (0..20_000u64).map(|i| (SEC + i * 100_000, 1)).collect();
        let (passed, _) = run(&p, &arrivals);
        assert!((2_009..=2_010).contains(&passed), "passed {passed}");
    }

    #[test]
    fn byte_bucket_charges_length() {
        // 1500 B/s, burst 3000 B: two 1500-byte frames pass, the third waits
        // a second (plus the 1/256 ns per byte the interval is rounded up:
        // the refill is never faster than configured).
        let p = BucketParams::new(1_500, 3_000).unwrap();
        let (passed, dropped) = run(&p, &[(SEC, 1500), (SEC, 1500), (SEC, 1500)]);
        assert_eq!((passed, dropped), (3_000, 1_500));
        let (passed, _) = run(&p, &[(SEC, 1500), (SEC, 1500), (2 * SEC, 1500)]);
        assert_eq!(passed, 3_000, "a hair short of a second");
        let (passed, _) = run(&p, &[(SEC, 1500), (SEC, 1500), (2 * SEC + 1_000, 1500)]);
        assert_eq!(passed, 4_500);
    }

    #[test]
    fn frame_larger_than_byte_burst_never_passes() {
        let p = BucketParams::new(1_000_000, 1_000).unwrap();
        assert_eq!(conform(0, ticks(SEC), 1_500, &p), None);
    }

    #[test]
    fn rounding_error_stays_under_one_percent_to_20_gbit() {
        // (rate, worst relative error allowed): 10 Mpps, 10 Gbit/s and
        // 20 Gbit/s of bytes, and odd rates.
        for (rate, bound) in [
            (10_000_000u64, 1e-4),
            (1_250_000_000, 0.005),
            (2_500_000_000, 0.01),
            (3, 1e-9),
            (7_777_777, 1e-4),
        ] {
            let p = BucketParams::new(rate, 1).unwrap();
            let exact = 256e9 / rate as f64;
            let err = (p.interval as f64 - exact) / exact;
            assert!((0.0..=bound).contains(&err), "rate {rate}: err {err}");
        }
    }

    #[test]
    fn charge_cannot_overflow() {
        let p = BucketParams::new(1, 1).unwrap();
        assert!(p.charge(MAX_COST) < u64::MAX / 32);
        assert_eq!(p.charge(u64::MAX), p.charge(MAX_COST));
    }

    #[test]
    fn tokens_left_reports_remaining_burst() {
        let p = BucketParams::new(100, 10).unwrap();
        let now = ticks(SEC);
        assert_eq!(tokens_left(0, now, &p), 10);
        let mut tat = 0;
        for _ in 0..4 {
            tat = conform(tat, now, 1, &p).unwrap();
        }
        assert_eq!(tokens_left(tat, now, &p), 6);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Over any window [a, b] of the arrivals, what passes is at most
            /// burst + rate·(b - a).
            #[test]
            fn never_more_than_burst_plus_rate_times_window(
                rate in 1u64..5_000_000,
                burst in 1u64..5_000,
                gaps in proptest::collection::vec((0u64..2_000_000, 1u64..3), 1..400),
            ) {
                let p = BucketParams::new(rate, burst).unwrap();
                let mut t = SEC;
                let mut tat = 0;
                let mut passed: std::vec::Vec<(u64, u64)> = std::vec::Vec::new();
                for (gap, cost) in gaps {
                    t += gap;
                    if let Some(n) = conform(tat, ticks(t), cost, &p) {
                        tat = n;
                        passed.push((t, cost));
                    }
                }
                for i in 0..passed.len() {
                    let mut sum = 0u128;
                    for j in i..passed.len() {
                        sum += passed[j].1 as u128;
                        let window = (passed[j].0 - passed[i].0) as u128;
                        let allowed = burst as u128 * NS_PER_SEC as u128 + rate as u128 * window;
                        // Compare in units·ns to stay exact.
                        prop_assert!(sum * NS_PER_SEC as u128 <= allowed,
                            "window {i}..={j}: {sum} units in {window} ns");
                    }
                }
            }

            /// A source whose arrivals are spaced at least one interval apart
            /// (plus a nanosecond, since time is whole nanoseconds) is never
            /// dropped, whatever its burst.
            #[test]
            fn under_rate_is_never_dropped(
                rate in 1u64..10_000_000,
                burst in 1u64..100,
                extra in proptest::collection::vec(0u64..1_000_000, 1..500),
            ) {
                let p = BucketParams::new(rate, burst).unwrap();
                let spacing = NS_PER_SEC.div_ceil(rate) + 1;
                let mut t = SEC;
                let mut tat = 0;
                for e in extra {
                    t += spacing + e;
                    let next = conform(tat, ticks(t), 1, &p);
                    prop_assert!(next.is_some(), "dropped at {t}");
                    tat = next.unwrap();
                }
            }

            /// TAT only moves forward, and refills: after a long enough pause
            /// the full burst is available again.
            #[test]
            fn refill_is_monotonic(rate in 1u64..1_000_000, burst in 1u64..1_000, pause in 0u64..10) {
                let p = BucketParams::new(rate, burst).unwrap();
                let now = ticks(SEC);
                let mut tat = 0;
                let mut last = 0;
                while let Some(n) = conform(tat, now, 1, &p) {
                    prop_assert!(n >= last);
                    last = n;
                    tat = n;
                }
                let later = now + ticks(pause * SEC);
                let before = tokens_left(tat, now, &p);
                let after = tokens_left(tat, later, &p);
                prop_assert!(after >= before);
                let full = ticks(NS_PER_SEC * burst / rate + SEC);
                prop_assert_eq!(tokens_left(tat, now + full, &p), burst);
            }
        }
    }
}
