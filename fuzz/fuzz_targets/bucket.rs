//! The token bucket (GCRA) on any rate, burst, state and time: no
//! overflow, a new state within the tolerance, and a fresh bucket passes
//! its burst whole and no more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_common::bucket::{BucketParams, conform};

fuzz_target!(|input: (u64, u64, u64, u64, u32)| {
    let (rate, burst, tat, now, cost) = input;
    let Ok(p) = BucketParams::new(rate, burst) else {
        assert!(rate == 0 || burst == 0);
        return;
    };
    if let Some(new_tat) = conform(tat, now, u64::from(cost), &p) {
        assert!(new_tat >= now && new_tat - now <= p.tolerance);
    }
    // A fresh bucket at `now`: `burst` packets at once pass, one more
    // does not (while the tolerance did not saturate).
    let burst = burst.min(2_000);
    let Ok(p) = BucketParams::new(rate, burst) else {
        return;
    };
    if now > u64::MAX / 2 {
        return;
    }
    let mut state = now;
    for i in 0..burst {
        state = conform(state, now, 1, &p)
            .unwrap_or_else(|| panic!("packet {i} of a burst of {burst} refused at rate {rate}"));
    }
    assert!(
        conform(state, now, 1, &p).is_none(),
        "burst {burst} + 1 passed at rate {rate}"
    );
});
