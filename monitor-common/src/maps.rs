//! Map and program names (aya names a map after its static, and only 15
//! bytes reach the kernel), and the sizes with the reason for each.

/// The source table is an index (hash: `SourceKey` -> slot, u32) over
/// slots in two arrays: `SOURCE_FLOWS` (`SourceFlow`: the key and the
/// flow counters, one cache line) and `SOURCE_CONTROL` (`SourceControl`:
/// buckets, cached policy, times). The flows are an mmap-able array, so
/// the daemon reads a million sources as one sequential sweep of 64 MiB
/// instead of a million hash-bucket visits through the batch syscalls
/// (~0.4 s on one core here); what it does not sweep stays out of the
/// mapping, which it pays for per page.
///
/// Writer: the kernel (claims slots, buckets, flow counters). Reader: the
/// daemon. When full, a new source takes the slot under the clock hand
/// (`SOURCE_CLOCK`) unless that slot's source was referenced since the
/// hand last passed (CLOCK, second chance, at most `CLOCK_TRIES` slots
/// looked at): a spoofed-source storm, whose sources are seen once,
/// recycles its own slots while the clients that keep sending keep
/// theirs. Each eviction is counted (`source_event::EVICTED`). A packet
/// checks that its slot still holds its key: an index entry left behind
/// by a race is removed and the source claims a new slot.
pub const SOURCES: &str = "TG_SOURCES";
/// The slots' flow records: array (mmap-able, `BPF_F_MMAPABLE`) of
/// `SourceFlow`, as many as the configured capacity.
pub const SOURCE_FLOWS: &str = "TG_SRC_FLOWS";
/// The slots' control records: array of `SourceControl`, as many.
pub const SOURCE_CONTROL: &str = "TG_SRC_CTL";
/// The clock: array of one `SlotClock`. Writer: the kernel (the hand,
/// atomically), the loader (the capacity).
pub const SOURCE_CLOCK: &str = "TG_SRC_CLOCK";
/// The indexed-source filter (`seen`): array (mmap-able) of
/// `seen::map_words(capacity)` u64, a header and two bitmaps. A clear bit
/// in the tested half says a key is not in `SOURCES` without the lookup
/// there. Writers: the kernel (a source's bit in both halves before it is
/// indexed), the daemon (the header, and each half rebuilt from the
/// table now and then; `seen` says how that keeps every indexed key's
/// bit set). Pinned with the table it describes: a restarted daemon
/// adopts both, and the program of the daemon before it keeps setting
/// bits in it until the new one replaces it.
pub const SEEN: &str = "TG_SEEN";
/// Slots the clock hand looks at for one new source before it takes the
/// last one even though referenced: a run of this many busy sources side
/// by side (created together) survives a storm.
pub const CLOCK_TRIES: u32 = 16;
/// Entries of the index for a table of `capacity` slots: exactly one per
/// slot. Every entry points at a distinct slot holding its key: a claim
/// removes the evicted source's entry before it inserts its own, and of
/// CPUs racing to index the same new source only one insert succeeds
/// (`BPF_NOEXIST`). No margin, so a power-of-two capacity keeps the
/// hash at as many buckets (a margin would double them: 16 MiB more at
/// the default). A leak would show as `source_event::INSERT_FAILED`.
pub const fn index_entries(capacity: u32) -> u32 {
    capacity
}
/// The policy is double-buffered: two sets of (IPv4 trie, IPv6 trie, rules
/// array). The daemon writes the set not in use, then flips the low bit of
/// `RuntimeConfig::generation` (one 32-bit store), so a packet sees the old
/// policy or the new one, never a mix. Set index = `generation & 1`.
///
/// CIDR policy, IPv4. LPM trie: prefix + 4 bytes -> rule slot (u32).
/// Writer: the daemon. Reader: the kernel on (re)resolve only.
pub const POLICY_V4: [&str; 2] = ["TG_POLICY4_A", "TG_POLICY4_B"];
/// CIDR policy, IPv6. LPM trie: prefix + 16 bytes -> rule slot (u32).
pub const POLICY_V6: [&str; 2] = ["TG_POLICY6_A", "TG_POLICY6_B"];
/// Rule parameters of both sets in one array: `set · RULE_SLOTS + slot` ->
/// `RuleParams`; slot 0 is the default limit. One map, not two, so the
/// verifier can inline the every-packet lookup (a lookup site that may see
/// either of two maps falls back to a helper call). A CIDR keeps its slot
/// across policy swaps, so sources under an unchanged rule keep their
/// buckets. Writer: the daemon. Reader: the kernel, every packet.
pub const RULES: &str = "TG_RULES";
/// Interface slots. Array: ifindex -> slot (u32, 1..MAX_IFACES; 0 = none),
/// so counters carry the interface. Writer: the daemon when it attaches.
pub const IFACES: &str = "TG_IFACES";
/// Largest ifindex with its own counter slot; others count under slot 0.
pub const MAX_IFINDEX: u32 = 4096;
/// Bans, IPv4. LPM trie: prefix + 4 bytes -> expiry (`CLOCK_MONOTONIC` ns,
/// u64). Writer: the daemon. Reader: the kernel on (re)resolve; the expiry
/// is compared in the kernel, so a ban ends on time with no daemon running.
pub const BANS_V4: &str = "TG_BANS_V4";
/// Bans, IPv6. LPM trie: prefix + 16 bytes -> expiry (u64).
pub const BANS_V6: &str = "TG_BANS_V6";
/// Runtime settings. Array of one `RuntimeConfig`. Writer: the daemon.
pub const CONFIG: &str = "TG_CONFIG";
/// Global counters. Per-CPU array: `counter_index(iface slot, reason,
/// verdict)` -> `Counter`. Writer: the kernel. Reader: the daemon (sums the CPUs).
pub const COUNTERS: &str = "TG_COUNTERS";
/// Malformed packets by the header that failed. Per-CPU array:
/// `Malformed as u32` -> `Counter`.
pub const MALFORMED: &str = "TG_MALFORMED";
/// Source-table events. Per-CPU array: `source_event::*` -> u64.
pub const SOURCE_EVENTS: &str = "TG_SRC_EVENTS";
/// Sources that went over their limit this detection window: the
/// daemon's per-second suspects, so a flood is judged within an interval
/// instead of waiting for a sweep of the whole table. Hash: `SourceKey`
/// -> window (u32). Writer: the kernel, once per source per window (on its
/// first limited packet); the daemon reads and clears it. A plain hash
/// rather than an LRU: when full it refuses, and the kernel counts each
/// refusal (`signal::HOT_LOST`), where an LRU would evict in silence.
pub const HOT: &str = "TG_HOT";
/// Capacity of `HOT`: the over-limit sources past this many in one
/// interval are judged only at the periodic walk (among its top talkers)
/// and in aggregate by the storm detectors; the daemon counts them
/// (`tollgate_hot_reports_lost_total`) and says so in its log.
pub const MAX_HOT: u32 = 8_192;

/// The host-wide SYN limit's GCRA word. Array of one u64. Writer: the
/// kernel (compare-and-swap); the daemon resets it when it sets a limit.
pub const SYN_BUCKET: &str = "TG_SYN_BUCKET";

/// Host-wide detection signals. Per-CPU array: `signal::*` -> u64.
/// Writer: the kernel. Reader: the daemon (sums the CPUs).
pub const SIGNALS: &str = "TG_SIGNALS";
/// Bogon and reserved source ranges (RFC 6890), per family. LPM trie:
/// prefix + address -> 1. Writer: the daemon. Reader: the kernel, when a
/// source is first seen (not per packet).
pub const BOGONS_V4: &str = "TG_BOGONS4";
pub const BOGONS_V6: &str = "TG_BOGONS6";
/// Entries per bogon trie.
pub const MAX_BOGONS: u32 = 256;

/// The drop cache (`drops`): an mmap-able array of `drops::DropEntry`,
/// `drops::DROPS_PER_CPU` per possible CPU (the loader sizes it), CPU
/// `c`'s entries from `c · DROPS_PER_CPU`; one CPU never touches another's,
/// so the fast path counts without atomics. Writer: the kernel (the
/// pipeline writes an entry when it drops for a reason that lasts; the
/// fast path counts into it). Reader: the daemon, which adds each entry's
/// counts to its source's flow record as it reads the source table; the
/// kernel adds them to the flow record itself when the entry goes to
/// another source, so no count is lost either way.
pub const DROPS: &str = "TG_DROPS";

/// Sources on probation during a spoofed-source storm
/// (`RuntimeConfig::storm_since_ns`): an array of `PROBATION_SLOTS` `SourceKey`s,
/// one per hash of the key. A never-seen source's first packet is judged
/// without a slot (its rule, ban and deny apply, as for
/// `Reason::Untracked`, and its prefixes' budgets) and, if it passed,
/// writes its key here; its next packet, finding its key, claims a slot.
/// A spoofed source is seen once: it never claims, so the storm costs an
/// index miss (and this write for what its prefixes pass), not a slot
/// claimed under the clock hand and an index entry removed and inserted
/// per packet, and the clients that keep sending keep their slots. Writer
/// and reader: the kernel. Not pinned (probation restarts with the
/// daemon).
pub const PROBATION: &str = "TG_PROBATION";
/// Prefix budgets (`prefix`). Array of `prefix::PREFIX_SLOTS`
/// `prefix::PrefixSlot`, a prefix's slot found by a seeded hash
/// (`prefix::slot_of`): the same cost however many prefixes a storm
/// brings, where an LRU hash inserted each new one. Writer: the kernel,
/// for packets that passed their source's own buckets (or, for a source
/// the table does not hold, its rule and ban) while a budget is in force. Not pinned: a restarted daemon's prefixes start with full
/// budgets, as after a reload.
pub const PREFIXES: &str = "TG_PREFIXES";

/// The `PROBATION` entry of `key`: Fibonacci hashing of its folded words,
/// over all of the entries.
#[inline(always)]
pub fn probation_slot(key: &crate::types::SourceKey) -> u32 {
    key.slot(0, PROBATION_SLOTS.trailing_zeros())
}

/// Entries of `PROBATION` (a power of two): at 2.5 Mpps of spoofed
/// sources an entry is overwritten within ~25 ms, the window a new
/// client's second packet has to come back in (it is only judged without
/// a slot again if it misses it).
pub const PROBATION_SLOTS: u32 = 1 << 16;

/// Indices into `SIGNALS`.
pub mod signal {
    /// TCP segments with SYN set and ACK clear.
    pub const SYN: u32 = 0;
    /// Of those, the ones a ban or deny rule dropped: already answered, so
    /// no evidence that a host-wide measure is needed (index 1 was unused
    /// in layout 3).
    pub const SYN_ANSWERED: u32 = 1;
    /// New sources from a bogon or reserved range.
    pub const BOGON_SOURCE: u32 = 2;
    /// Over-limit sources the full hot list (`HOT`) could not take.
    pub const HOT_LOST: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Replay clock. Array of one u64: the "now" in ns the replay program uses
/// instead of the kernel clock. Writer: `tollgate replay`.
pub const REPLAY_CLOCK: &str = "TG_REPLAY_CLK";
/// Replay output. Array of one `ReplayRecord`, written by the replay and
/// parse-only programs for the packet they just ran.
pub const REPLAY_OUT: &str = "TG_REPLAY_OUT";

/// The packet being judged. Per-CPU array of one `PacketInfo`: the parse
/// writes its description here rather than on the program's stack,
/// because the verifier does not follow the values in a map. On the stack
/// it followed each of the parse's dozens of outcomes through the whole
/// pipeline after it, near its limit of a million instructions; from
/// here every outcome enters the pipeline alike, and the parse can read
/// headers as exactly as tshark does. Not pinned: it lives for one packet.
pub const PACKET: &str = "TG_PACKET";

/// SYN-cookie ports. Array of `syncookie::PORT_WORDS` u64: a bitmap of
/// the protected destination ports (`syncookie::port_slot`). Writer: the
/// daemon. Reader: the kernel, for TCP while cookies are configured.
pub const COOKIE_PORTS: &str = "TG_COOKIE_PORTS";
/// Verified sources. LRU hash `syncookie::VerifiedKey` -> u64, the
/// coarse-clock ns until which the source stays verified. Writer: the
/// kernel (on a valid cookie ACK, and to refresh an entry past half its
/// time); the daemon reads it to count, to fill and rewrite
/// `VERIFIED_FILTER`, and clears it when cookies are unconfigured. When full the least recently used entry goes.
pub const VERIFIED: &str = "TG_VERIFIED";
/// The verified-source filter. Array of `syncookie::VERIFIED_FILTER_WORDS`
/// u64: a source's bit (`VerifiedKey::filter_slot`) is set when it enters
/// `VERIFIED`. A clear bit says "not verified" without the hash lookup,
/// whose random bucket costs a cache miss on every SYN of a flood from
/// random sources (a third of the SYN-cookie path's time). The kernel
/// never clears a bit; a set bit only sends the lookup to `VERIFIED`.
/// Writers: the kernel (on a valid cookie ACK) and the daemon (filled
/// from `VERIFIED` when the maps are taken, rewritten from its live
/// entries every ten minutes, cleared with it). Not pinned: each load
/// fills its own, and a running program keeps its own alive.
pub const VERIFIED_FILTER: &str = "TG_VERIFIED_FILTER";
/// Per-CPU u64 counters indexed by `syncookie::cookie_event`.
pub const COOKIE_EVENTS: &str = "TG_COOKIE_EVENTS";
/// Per-CPU scratch of one `syncookie::SynAt`: the main program leaves the
/// SYN's header offsets here for the SYN-ACK program it tail-calls.
/// Pinned with `JUMP`, so a main program and whichever SYN-ACK program its
/// jump slot holds (an older daemon's, during a restart) share it.
pub const SYN_AT: &str = "TG_SYN_AT";
/// Program array of one: slot `JUMP_SYNACK` holds `PROG_SYNACK`. Filled
/// by whoever loads the main program. Pinned, because the kernel empties a
/// program array when the last descriptor for it closes: without the pin a
/// crashed or stopped daemon's program, still attached, would find the
/// slot empty and drop every SYN to the protected ports until the next
/// daemon. A
/// restarted daemon adopts it and puts its own SYN-ACK program in the
/// slot before it swaps the main program.
pub const JUMP: &str = "TG_JUMP";
/// `JUMP` for the single-buffer programs (`PROG_LINEAR` and
/// `PROG_SYNACK_LINEAR`): the kernel keeps a program array to programs of
/// one kind. Pinned for the same reason.
pub const JUMP_LINEAR: &str = "TG_JUMP_LINEAR";
pub const JUMP_SYNACK: u32 = 0;
/// Builds and sends the SYN-ACK for a SYN the main program chose to
/// answer; reached only by tail call.
pub const PROG_SYNACK: &str = "tollgate_synack";
/// `PROG_SYNACK` for `PROG_LINEAR`.
pub const PROG_SYNACK_LINEAR: &str = "tollgate_synack_linear";

/// The production XDP program: parse, police, limit, count. Multi-buffer
/// (`xdp.frags`), so the kernel attaches it whatever the MTU.
pub const PROG_MAIN: &str = "tollgate";
/// The same, single-buffer: it reads the frame's length without a helper
/// call. Attached wherever the kernel takes it (the interface's MTU fits
/// one buffer); `PROG_MAIN` where it does not.
pub const PROG_LINEAR: &str = "tollgate_linear";
/// The same program with the replay clock and a record of each verdict:
/// for `tollgate replay` and tests through BPF_PROG_TEST_RUN only.
pub const PROG_REPLAY: &str = "tollgate_replay";
/// Parse only (the benchmark's second reference point).
pub const PROG_PARSE: &str = "tollgate_parse";
/// XDP_PASS and nothing else (the benchmark's floor).
pub const PROG_FLOOR: &str = "tollgate_floor";
/// The single-buffer production program without the drop cache; loaded
/// by the bench alone (`LoadOptions::reference`), as its same-run reference.
pub const PROG_UNCACHED: &str = "tollgate_uncached";

/// Indices into `SOURCE_EVENTS`.
pub mod source_event {
    /// A new source entry was inserted.
    pub const CREATED: u32 = 0;
    /// The table took nothing for a new source: another CPU moved the
    /// clock hand while this one looked (both claiming at that instant),
    /// or the index was full. The packet went untracked: bans and deny
    /// rules applied, no buckets (`Reason::Untracked` when it passed).
    pub const INSERT_FAILED: u32 = 1;
    /// A bucket's compare-and-swap lost `CAS_MAX_TRIES` races in a row; the
    /// packet was treated as over the limit.
    pub const CAS_EXHAUSTED: u32 = 2;
    /// A new source took the slot of another, which is no longer tracked.
    pub const EVICTED: u32 = 3;
    /// During a spoofed-source storm, a never-seen source's first packet
    /// was judged without a slot (`PROBATION`).
    pub const PROBATION: u32 = 4;
    /// A never-seen source's packet that its prefixes' budgets refused
    /// was judged without a slot (`prefix`), storm or not: a storm over a
    /// spent prefix claims none. Counted per packet (a refused client is
    /// never-seen again with its next), so not among the new sources the
    /// detectors count.
    pub const REFUSED: u32 = 5;
    pub const COUNT: u32 = 6;
}

/// Default capacity of the source table: at least a million clients, as
/// the issue asks, rounded to a power of two. 2 x 64 bytes per slot plus
/// about 96 per index entry (element and bucket): about 225 MiB of kernel
/// memory, preallocated (`bpftool map show`, memlock).
pub const DEFAULT_MAX_SOURCES: u32 = 1 << 20;
/// Rules per family; a fleet's allow/deny lists run to thousands, not
/// millions. The rules array holds both families plus the default slot.
pub const MAX_RULES_PER_FAMILY: u32 = 16_384;
/// Slots in the rules array: slot 0 is the default limit.
pub const RULE_SLOTS: u32 = 2 * MAX_RULES_PER_FAMILY + 1;
/// Slot of the default limit.
pub const DEFAULT_RULE_SLOT: u32 = 0;
/// Bans per family held in the kernel at once.
pub const MAX_BANS_PER_FAMILY: u32 = 65_536;

/// Version of the layout of the pinned maps: their set, names, key and
/// value types, sizes and the meaning of every field and index. The daemon
/// pins its maps under `<pin_dir>/v<LAYOUT_VERSION>`, so a build with
/// another layout never opens maps it would mis-read. Bump it with any
/// such change (the `layout_fingerprint` test fails on size changes, as a
/// reminder; field reorderings and new meanings are on the reviewer).
pub const LAYOUT_VERSION: u32 = 11;

/// The maps the daemon pins and a restarted daemon adopts: all but the
/// replay program's scratch maps.
pub const PINNED: &[&str] = &[
    SOURCES,
    SOURCE_FLOWS,
    SOURCE_CONTROL,
    SOURCE_CLOCK,
    POLICY_V4[0],
    POLICY_V4[1],
    POLICY_V6[0],
    POLICY_V6[1],
    RULES,
    IFACES,
    BANS_V4,
    BANS_V6,
    CONFIG,
    COUNTERS,
    MALFORMED,
    SOURCE_EVENTS,
    HOT,
    SYN_BUCKET,
    SIGNALS,
    BOGONS_V4,
    BOGONS_V6,
    COOKIE_PORTS,
    VERIFIED,
    COOKIE_EVENTS,
    SYN_AT,
    JUMP,
    JUMP_LINEAR,
    DROPS,
    SEEN,
];

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use crate::{
        drops::DropEntry,
        reason::{COUNTER_SLOTS, Malformed},
        syncookie::SynAt,
        types::{
            Counter, RuleParams, RuntimeConfig, SlotClock, SourceControl, SourceFlow, SourceKey,
        },
        verified::VerifiedKey,
    };

    /// Sizes and counts that define the pinned layout. If this fails, the
    /// layout changed: bump `LAYOUT_VERSION` and then update the numbers.
    #[test]
    fn layout_fingerprint() {
        assert_eq!(
            (
                super::LAYOUT_VERSION,
                size_of::<SourceKey>(),
                size_of::<SourceFlow>(),
                size_of::<SourceControl>(),
                size_of::<SlotClock>(),
                size_of::<RuleParams>(),
                size_of::<RuntimeConfig>(),
                size_of::<Counter>(),
                COUNTER_SLOTS,
                super::source_event::COUNT,
                super::PINNED.len(),
                (
                    Malformed::COUNT,
                    size_of::<DropEntry>(),
                    size_of::<VerifiedKey>(),
                    size_of::<SynAt>(),
                ),
            ),
            (
                11,
                20,
                64,
                64,
                16,
                40,
                224,
                16,
                16 * 13 * 4,
                6,
                29,
                (12, 72, 16, 20)
            ),
            "the pinned map layout changed: bump LAYOUT_VERSION, then update this test"
        );
    }
    /// Never-seen sources spread over the probation entries: random-looking
    /// /64s of a storm use most of them.
    #[test]
    fn probation_slots_spread_over_the_whole_table() {
        let mut used = std::collections::BTreeSet::new();
        for i in 0..(1u32 << 16) {
            let k = crate::types::SourceKey::v6(
                &[0x2001_0db8u32.to_be(), i.wrapping_mul(2_654_435_761), 0, 0],
                &[u32::MAX, u32::MAX, 0, 0],
            );
            let s = super::probation_slot(&k);
            assert!(s < super::PROBATION_SLOTS);
            used.insert(s);
        }
        // A uniform hash fills 1 - 1/e of them (~41,400).
        assert!(used.len() > 30_000, "{} of 65,536 used", used.len());
    }
}
