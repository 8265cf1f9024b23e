//! What a source's next packet would get, from what applies to it now, in
//! the kernel's order (`monitor-ebpf/src/decide.rs`, `enforce`): an allow
//! rule passes it, a deny rule drops it, a ban drops it, then the packet
//! bucket and the byte bucket must each hold the packet. A rule in monitor
//! mode passes what it would drop (verdict `monitor`); a ban is always
//! enforced. For `tollgate explain`: the kernel decides, this says why.

use monitor_common::{
    bucket::{BucketParams, tokens_left},
    reason::{Reason, Verdict},
};

use super::{Action, Limit, Rate};

/// The bucket levels of a tracked source, in whole units; `None` for a
/// dimension the limit leaves unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

impl Levels {
    /// The levels of buckets at `pkt_tat` and `byte_tat` (their GCRA
    /// states) under `limit`, at `now` (ticks since the bucket clock's
    /// base).
    pub fn of(limit: &Limit, pkt_tat: u64, byte_tat: u64, now: u64) -> Self {
        let level = |rate: Option<Rate>, tat| {
            rate.and_then(|r| BucketParams::new(r.per_sec, r.burst).ok())
                .map(|p| tokens_left(tat, now, &p))
        };
        Self {
            packets: level(limit.packets, pkt_tat),
            bytes: level(limit.bytes, byte_tat),
        }
    }
}

/// The smallest frame a source can send (Ethernet minimum without FCS):
/// what the byte bucket must hold for the next packet to pass.
pub const SMALLEST_FRAME: u64 = 60;

/// The next packet's reason, verdict and why, in words. `levels` is
/// `None` for a source not tracked yet: its first packet finds full
/// buckets.
pub fn next_packet(
    action: &Action,
    monitor: bool,
    banned: bool,
    levels: Option<Levels>,
) -> (Reason, Verdict, String) {
    let would_drop = if monitor {
        Verdict::Monitor
    } else {
        Verdict::Drop
    };
    match action {
        Action::Allow => return (Reason::Allow, Verdict::Pass, "an allow rule".into()),
        Action::Deny => return (Reason::Deny, would_drop, "a deny rule".into()),
        Action::Limit(_) => {}
    }
    if banned {
        return (Reason::Banned, Verdict::Drop, "banned".into());
    }
    let Some(levels) = levels else {
        return (
            Reason::Pass,
            Verdict::Pass,
            "not tracked yet: its first packet finds full buckets".into(),
        );
    };
    if levels.packets == Some(0) {
        return (
            Reason::RateLimitedPackets,
            would_drop,
            "its packet bucket is empty".into(),
        );
    }
    match levels.bytes {
        Some(b) if b < SMALLEST_FRAME => (
            Reason::RateLimitedBytes,
            would_drop,
            format!("its byte bucket holds {b} bytes, less than the smallest frame"),
        ),
        Some(b) => (
            Reason::Pass,
            Verdict::Pass,
            format!("within its limit (a frame of up to {b} bytes)"),
        ),
        None => (Reason::Pass, Verdict::Pass, "within its limit".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Limit;

    const LIMIT: Action = Action::Limit(Limit::DEFAULT);
    const FULL: Levels = Levels {
        packets: Some(10),
        bytes: Some(5_000),
    };

    #[test]
    fn levels_are_the_tokens_left_at_now() {
        let limit = Limit {
            packets: Some(Rate {
                per_sec: 100,
                burst: 10,
            }),
            bytes: None,
        };
        // A fresh bucket (TAT in the past) is full; one that took the
        // whole burst just now is empty.
        let l = Levels::of(&limit, 0, 0, 1 << 40);
        assert_eq!(
            l,
            Levels {
                packets: Some(10),
                bytes: None
            }
        );
        let p = BucketParams::new(100, 10).unwrap();
        let now = 1 << 40;
        let l = Levels::of(&limit, now + p.tolerance, 0, now);
        assert_eq!(l.packets, Some(0));
    }

    #[test]
    fn allow_then_deny_then_ban_then_the_buckets() {
        let next = |a: &Action, monitor, banned, levels| {
            let (r, v, _) = next_packet(a, monitor, banned, levels);
            (r, v)
        };
        assert_eq!(
            next(&Action::Allow, false, true, None),
            (Reason::Allow, Verdict::Pass),
            "allow wins over a ban"
        );
        assert_eq!(
            next(&Action::Deny, true, false, None),
            (Reason::Deny, Verdict::Monitor)
        );
        assert_eq!(
            next(&Action::Deny, false, true, None),
            (Reason::Deny, Verdict::Drop)
        );
        assert_eq!(
            next(&LIMIT, true, true, Some(FULL)),
            (Reason::Banned, Verdict::Drop),
            "a ban is enforced even in monitor mode"
        );
        assert_eq!(
            next(&LIMIT, false, false, None),
            (Reason::Pass, Verdict::Pass)
        );
        assert_eq!(
            next(&LIMIT, false, false, Some(FULL)),
            (Reason::Pass, Verdict::Pass)
        );
        let empty = Levels {
            packets: Some(0),
            ..FULL
        };
        assert_eq!(
            next(&LIMIT, false, false, Some(empty)),
            (Reason::RateLimitedPackets, Verdict::Drop)
        );
        assert_eq!(
            next(&LIMIT, true, false, Some(empty)),
            (Reason::RateLimitedPackets, Verdict::Monitor)
        );
        let few_bytes = Levels {
            bytes: Some(59),
            ..FULL
        };
        assert_eq!(
            next(&LIMIT, false, false, Some(few_bytes)),
            (Reason::RateLimitedBytes, Verdict::Drop)
        );
        let unlimited = Levels {
            packets: None,
            bytes: None,
        };
        assert_eq!(
            next(&LIMIT, false, false, Some(unlimited)),
            (Reason::Pass, Verdict::Pass)
        );
    }
}
