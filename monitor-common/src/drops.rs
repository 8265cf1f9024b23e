//! The drop cache: per CPU, the sources whose every next packet is known
//! to be dropped, and until when. A banned source, a denied one, one
//! over its packet (or byte) limit or refused by its prefix's budget costs
//! the full pipeline once; its further packets until `until_ns` cost an
//! Ethernet/IP source read, one array lookup and per-CPU counts
//! (`maps::DROPS` says where it lives and who folds the counts).
//!
//! The clock on the fast path: the entry's drop is checked against the
//! coarse clock (a helper call, about 20 ns where returns go through a
//! mitigation thunk, a third of the fast path) once per clock tick only.
//! A drop that lasts at least `CONFIRM_MARGIN_NS` past the fine clock's
//! reading (a ban, a deny rule, the wait of a limit under 10 per second)
//! is confirmed for the tick (`DropEntry::jiffy`, the kernel's tick
//! count, which the verifier turns into one load). Why that is safe: the
//! coarse clock is the fine clock's value at its last update, and it is
//! updated after the tick count (by the CPU that keeps time, which may be
//! another), so within one tick count it can only reach the fine time at
//! which that count is replaced or the update runs; the tick count stays
//! unchanged while packets arrive for one or two ticks, at most five
//! where the timekeeping CPU stalls (another CPU takes the update over
//! then), 50 ms at HZ=100, the coarsest tick, which the 100 ms margin
//! covers. So the pipeline, reading the coarse clock, would still drop.
//! Shorter drops (a source over a fast limit, whose next packet conforms
//! within milliseconds) read the coarse clock on every packet, as the
//! pipeline would.
//!
//! What the fast path does not record: the source's last-seen time, its
//! port sketch and ACK count (the pipeline's packets, at least one per
//! clock tick for an over-limit source, still feed them).
//!
//! Exactness, why a cached drop is the drop the pipeline would make:
//!
//! - a ban drops until its expiry, a deny rule for good: both only while
//!   the policy generation the entry was written at holds (the daemon
//!   bumps it on every change to rules, limits and bans);
//! - a packet over its limit does not change the GCRA state (it is not
//!   charged), so the instant the next packet conforms is known when it is
//!   dropped (`conforms_at`). For the byte bucket it is the instant a
//!   packet of one byte would conform: no packet conforms earlier. A
//!   packet-bucket drop is cached only for a rule with no byte limit: a
//!   byte-bucket refusal on another CPU gives back a packet charge it took
//!   for a moment, and a drop decided on that moment's state must not be
//!   stretched into the future.
//! - a refusal by the prefix budget every source shares (`Budget::All`)
//!   holds until that budget has a unit again: a refused packet charges
//!   nothing, and the prefix's other sources only take units. Cached only
//!   for a tracked source under a rule with no byte limit (a longer packet
//!   may meet that bucket first); a fine-level refusal is cached as if a
//!   charge another CPU's packet holds there for a moment were back
//!   (`prefix::lasting` in the kernel crate). A source on the unproven
//!   budget is not cached: a SYN-cookie handshake moves it to the other.
//! - an over-limit drop is not used while SYN cookies are on for TCP to a
//!   protected port or a packet whose port the fast path does not read
//!   (the cookie gate answers such a SYN before the buckets see it); a
//!   UDP storm's drops stay on the fast path while the cookies are on.

use crate::{
    bucket::{BucketParams, TICK_SHIFT},
    types::SourceKey,
};

/// Sets of the cache per CPU, two entries (ways) each: 2,048 entries per
/// CPU (144 KiB). A few hundred sources dropped at once rarely share a
/// set; two that do each keep one way.
pub const DROP_SETS: u32 = 1024;
pub const DROP_WAYS: u32 = 2;
/// Entries per CPU: CPU `c`'s cache is entries `c · DROPS_PER_CPU ..`.
pub const DROPS_PER_CPU: u32 = DROP_SETS * DROP_WAYS;

/// How long past the fine clock's reading a drop must last for the fast
/// path to take it without reading a clock again in the same tick
/// (`confirmable`; the module's doc says why it covers the coarse
/// clock's catching up within one tick count).
pub const CONFIRM_MARGIN_NS: u64 = 100_000_000;

/// Whether a drop until `until_ns` may be confirmed for the tick the fast
/// path read before `fine_now` (`CLOCK_MONOTONIC` ns, the coarse clock's
/// base, never behind it).
#[inline(always)]
pub fn confirmable(until_ns: u64, fine_now: u64) -> bool {
    until_ns.saturating_sub(fine_now) >= CONFIRM_MARGIN_NS
}

/// `DropEntry::slot` of an entry whose source has no slot in the source
/// table (its counts go to the global counters only).
pub const NO_SLOT: u32 = u32::MAX;

/// One cached drop. Written by the pipeline when it drops a packet for a
/// reason that holds for a while; read and counted by the fast path on
/// every packet of its source; read by the daemon, which adds `packets`
/// and `bytes` to the source's flow record as it reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEntry {
    /// `family == 0`: an empty entry.
    pub key: SourceKey,
    /// The source's slot in the source table when written (`NO_SLOT`).
    pub slot: u32,
    /// `CLOCK_MONOTONIC_COARSE` ns: packets before it are dropped.
    pub until_ns: u64,
    /// The kernel's tick count (`jiffies`) in which the fast path last
    /// found the drop to last `CONFIRM_MARGIN_NS` more: packets in the
    /// same tick are dropped without reading the coarse clock. 0: none
    /// (the pipeline clears it whenever it writes the entry).
    pub jiffy: u64,
    /// `RuntimeConfig::generation` when written; another one voids it.
    pub generation: u32,
    /// `reason::Reason` of the drops.
    pub reason: u32,
    /// Packets and bytes this entry dropped since its key was written,
    /// not yet in the flow record of `slot` (the pipeline adds them there
    /// when the entry goes to another source).
    pub packets: u64,
    pub bytes: u64,
    /// Of those packets, TCP SYNs without ACK (the detectors tell a SYN
    /// flood by them). Counted where the TCP header follows the IP header
    /// directly, as nearly every SYN has it; one behind IPv6 extension
    /// headers counts as a packet only.
    pub syns: u64,
}
const _: () = assert!(core::mem::size_of::<DropEntry>() == 72);

impl DropEntry {
    /// Whether this entry was written for `key` under `generation` (it
    /// drops the key's packets until `until_ns`).
    #[inline(always)]
    pub fn holds(&self, key: &SourceKey, generation: u32) -> bool {
        self.key.same(key) && self.generation == generation
    }

    /// Whether the entry's drop still holds in tick `jiffy` (never 0: the
    /// kernel's count starts near 2^32): yes if this tick confirmed it,
    /// else by the coarse clock, read with `now` only then, as the
    /// pipeline would; and then confirms the tick if the drop lasts
    /// `CONFIRM_MARGIN_NS` past the fine clock (`fine`, read only then).
    /// The caller reads the tick count before either clock: an interrupt
    /// between the reads (XDP runs with interrupts on) then pairs an old
    /// tick with a newer clock, a confirmation no later packet matches;
    /// the other order could pair a new tick with a clock from before it.
    #[inline(always)]
    pub fn still_drops(
        &mut self,
        jiffy: u64,
        now: impl FnOnce() -> u64,
        fine: impl FnOnce() -> u64,
    ) -> bool {
        if self.jiffy == jiffy {
            return true;
        }
        let now = now();
        if now >= self.until_ns {
            return false;
        }
        // The coarse reading first: a short drop (it is never ahead of the
        // fine clock) costs no second clock read.
        if confirmable(self.until_ns, now) && confirmable(self.until_ns, fine()) {
            self.jiffy = jiffy;
        }
        true
    }
}

/// The set of `key` (Fibonacci hashing of the folded address words; the
/// family is in the key only to keep an IPv4 and an IPv6 key apart).
#[inline(always)]
pub fn set_of(key: &SourceKey) -> u32 {
    let folded = key.addr[0]
        ^ key.addr[1].rotate_left(7)
        ^ key.addr[2].rotate_left(13)
        ^ key.addr[3].rotate_left(19)
        ^ key.family;
    folded.wrapping_mul(0x9E37_79B1) >> (32 - DROP_SETS.trailing_zeros())
}

/// The first instant (ticks since the clock base) at which a packet of
/// `cost` units conforms to the bucket in state `tat` (`conform` is
/// `Some` from then on, `None` before while the state stays `tat`).
#[inline(always)]
pub fn conforms_at(tat: u64, cost: u64, params: &BucketParams) -> u64 {
    tat.saturating_add(params.charge(cost))
        .saturating_sub(params.tolerance)
}

/// The first nanosecond since the clock base whose ticks reach `ticks`
/// (rounded up: before it, the clock's ticks are still below).
#[inline(always)]
pub fn ns_reaching(ticks: u64) -> u64 {
    ticks.div_ceil(1 << TICK_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::{conform, ticks};

    /// Dropped at every nanosecond before the computed instant, admitted
    /// from it on: checked around it for limits from 1 to 10^6 per second,
    /// packet and byte costs, and bucket states ahead of and behind now.
    #[test]
    fn the_cached_instant_is_exactly_when_the_next_packet_conforms() {
        for (rate, burst) in [
            (1, 1),
            (10, 3),
            (1_000, 50),
            (123_457, 1_000),
            (1_000_000, 7),
        ] {
            let p = BucketParams::new(rate, burst).unwrap();
            for cost in [1, 60, 1_500] {
                if cost > burst {
                    continue;
                }
                for ahead_ns in [0u64, 1, 999, 1_000_000, 3_000_000_000] {
                    let now_ns = 5_000_000_000u64;
                    let tat = ticks(now_ns) + p.tolerance + ticks(ahead_ns);
                    assert!(conform(tat, ticks(now_ns), cost, &p).is_none());
                    let at = ns_reaching(conforms_at(tat, cost, &p));
                    assert!(at > now_ns, "rate {rate} cost {cost} ahead {ahead_ns}");
                    assert!(
                        conform(tat, ticks(at - 1), cost, &p).is_none(),
                        "rate {rate} cost {cost}: admitted one ns early"
                    );
                    assert!(
                        conform(tat, ticks(at), cost, &p).is_some(),
                        "rate {rate} cost {cost}: still refused at the instant"
                    );
                }
            }
        }
    }

    /// A packet of one byte conforms no later than any larger packet: the
    /// byte bucket's cached instant never drops a packet that would pass.
    #[test]
    fn the_smallest_packet_conforms_first() {
        let p = BucketParams::new(10_000, 3_000).unwrap();
        let tat = ticks(1_000_000_000) + p.tolerance + ticks(50_000);
        for cost in [2, 64, 1_500] {
            assert!(conforms_at(tat, 1, &p) <= conforms_at(tat, cost, &p));
        }
    }

    #[test]
    fn sets_spread_neighbouring_addresses_and_stay_in_range() {
        let mut seen = [0u32; DROP_SETS as usize];
        for i in 0..4096u32 {
            let k = SourceKey::v4((0xC000_0200u32 + i).to_be(), u32::MAX);
            let s = set_of(&k);
            assert!(s < DROP_SETS);
            seen[s as usize] += 1;
        }
        // 4 per set on average; Fibonacci hashing of a run is near even.
        assert!(seen.iter().all(|&n| n <= 12), "{:?}", seen.iter().max());
    }

    #[test]
    fn an_entry_holds_its_key_under_its_generation() {
        let key = SourceKey::v4(0x0102_0304, u32::MAX);
        let e = DropEntry {
            key,
            until_ns: 100,
            generation: 6,
            ..DropEntry::default()
        };
        assert!(e.holds(&key, 6));
        assert!(!e.holds(&key, 8));
        assert!(!e.holds(&SourceKey::v4(0x0102_0305, u32::MAX), 6));
        assert!(!DropEntry::default().holds(&key, 0));
    }

    /// A short drop reads the clock on every packet and ends at its
    /// instant; a long one reads it once per tick, and a new tick reads
    /// it again (so its end is still the clock's). The confirmation asks
    /// the fine clock, which may be ahead of the coarse one.
    #[test]
    fn a_drop_holds_until_its_instant_and_only_a_long_one_skips_the_clock() {
        const TICK: u64 = 4_294_000_000;
        // Three packets in `TICK` with both clocks at 1,000 ns: each still
        // dropped; how many read the coarse clock.
        let three = |e: &mut DropEntry, fine: fn() -> u64| {
            let mut reads = 0;
            for _ in 0..3 {
                assert!(e.still_drops(
                    TICK,
                    || {
                        reads += 1;
                        1_000
                    },
                    fine
                ));
            }
            reads
        };
        let mut short = DropEntry {
            until_ns: 1_000 + CONFIRM_MARGIN_NS - 1,
            ..DropEntry::default()
        };
        let reads = three(&mut short, || {
            unreachable!("a short drop by the coarse clock asks no more")
        });
        assert_eq!((reads, short.jiffy), (3, 0), "never confirmed");
        let end = short.until_ns;
        assert!(!short.still_drops(TICK, || end, || unreachable!()));

        let mut long = DropEntry {
            until_ns: 1_000 + CONFIRM_MARGIN_NS,
            ..DropEntry::default()
        };
        // Long by the coarse clock, short by the fine one: not confirmed.
        assert!(long.still_drops(TICK, || 1_000, || 1_001));
        assert_eq!(long.jiffy, 0);
        let reads = three(&mut long, || 1_000);
        assert_eq!((reads, long.jiffy), (1, TICK), "confirmed for its tick");
        let end = long.until_ns;
        assert!(
            !long.still_drops(TICK + 1, || end, || end),
            "the next tick reads the clock"
        );
    }
}
