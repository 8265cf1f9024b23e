//! The program's maps. Names, key/value types, writers, readers and
//! what happens when full are documented on the constants in
//! `monitor_common::maps`; the statics are named exactly as those constants
//! say, because aya names a map after its static.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray},
};
use monitor_common::{
    drops::{DROPS_PER_CPU, DropEntry},
    maps::{
        DEFAULT_MAX_SOURCES, MAX_BANS_PER_FAMILY, MAX_BOGONS, MAX_HOT, MAX_IFINDEX,
        MAX_RULES_PER_FAMILY, PROBATION_SLOTS, RULE_SLOTS, index_entries, signal, source_event,
    },
    prefix::{PREFIX_SLOTS, PrefixSlot},
    reason::{COUNTER_SLOTS, Malformed},
    seen,
    syncookie::{
        MAX_VERIFIED, PORT_WORDS, SynAt, VERIFIED_FILTER_WORDS, VerifiedKey, cookie_event,
    },
    types::{
        Counter, PacketInfo, ReplayRecord, RuleParams, RuntimeConfig, SlotClock, SourceControl,
        SourceFlow, SourceKey,
    },
};

#[map]
pub static TG_SOURCES: HashMap<SourceKey, u32> =
    HashMap::with_max_entries(index_entries(DEFAULT_MAX_SOURCES), 0);

/// Sized by the loader (`seen::map_words` of the capacity).
#[map]
pub static TG_SEEN: Array<u64> =
    Array::with_max_entries(seen::map_words(DEFAULT_MAX_SOURCES), BPF_F_MMAPABLE);

#[map]
pub static TG_SRC_FLOWS: Array<SourceFlow> =
    Array::with_max_entries(DEFAULT_MAX_SOURCES, BPF_F_MMAPABLE);

#[map]
pub static TG_SRC_CTL: Array<SourceControl> = Array::with_max_entries(DEFAULT_MAX_SOURCES, 0);

#[map]
pub static TG_SRC_CLOCK: Array<SlotClock> = Array::with_max_entries(1, 0);

#[map]
pub static TG_POLICY4_A: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(MAX_RULES_PER_FAMILY, 0);
#[map]
pub static TG_POLICY4_B: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(MAX_RULES_PER_FAMILY, 0);

#[map]
pub static TG_POLICY6_A: LpmTrie<[u8; 16], u32> =
    LpmTrie::with_max_entries(MAX_RULES_PER_FAMILY, 0);
#[map]
pub static TG_POLICY6_B: LpmTrie<[u8; 16], u32> =
    LpmTrie::with_max_entries(MAX_RULES_PER_FAMILY, 0);

#[map]
pub static TG_RULES: Array<RuleParams> = Array::with_max_entries(2 * RULE_SLOTS, 0);

#[map]
pub static TG_IFACES: Array<u32> = Array::with_max_entries(MAX_IFINDEX, 0);

#[map]
pub static TG_BANS_V4: LpmTrie<[u8; 4], u64> = LpmTrie::with_max_entries(MAX_BANS_PER_FAMILY, 0);

#[map]
pub static TG_BANS_V6: LpmTrie<[u8; 16], u64> = LpmTrie::with_max_entries(MAX_BANS_PER_FAMILY, 0);

#[map]
pub static TG_CONFIG: Array<RuntimeConfig> = Array::with_max_entries(1, 0);

#[map]
pub static TG_COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map]
pub static TG_MALFORMED: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(Malformed::COUNT as u32, 0);

#[map]
pub static TG_SRC_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(source_event::COUNT, 0);

#[map]
pub static TG_HOT: HashMap<SourceKey, u32> = HashMap::with_max_entries(MAX_HOT, 0);

#[map]
pub static TG_SYN_BUCKET: Array<u64> = Array::with_max_entries(1, 0);

#[map]
pub static TG_SIGNALS: PerCpuArray<u64> = PerCpuArray::with_max_entries(signal::COUNT, 0);

#[map]
pub static TG_BOGONS4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(MAX_BOGONS, 0);
#[map]
pub static TG_BOGONS6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_BOGONS, 0);

#[map]
pub static TG_REPLAY_CLK: Array<u64> = Array::with_max_entries(1, 0);

#[map]
pub static TG_REPLAY_OUT: Array<ReplayRecord> = Array::with_max_entries(1, 0);

#[map]
pub static TG_COOKIE_PORTS: Array<u64> = Array::with_max_entries(PORT_WORDS, 0);

#[map]
pub static TG_VERIFIED: LruHashMap<VerifiedKey, u64> =
    LruHashMap::with_max_entries(MAX_VERIFIED, 0);

#[map]
pub static TG_VERIFIED_FILTER: Array<u64> = Array::with_max_entries(VERIFIED_FILTER_WORDS, 0);

#[map]
pub static TG_COOKIE_EVENTS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(cookie_event::COUNT, 0);

#[map]
pub static TG_SYN_AT: PerCpuArray<SynAt> = PerCpuArray::with_max_entries(1, 0);

/// The packet being judged (`maps::PACKET` says why not the stack).
#[map]
pub static TG_PACKET: PerCpuArray<PacketInfo> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static TG_PROBATION: Array<SourceKey> = Array::with_max_entries(PROBATION_SLOTS, 0);

#[map]
pub static TG_PREFIXES: Array<PrefixSlot> = Array::with_max_entries(PREFIX_SLOTS, 0);

/// Sized by the loader: `DROPS_PER_CPU` per possible CPU.
#[map]
pub static TG_DROPS: Array<DropEntry> = Array::with_max_entries(DROPS_PER_CPU, BPF_F_MMAPABLE);

/// The multi-buffer programs' jump table (`tollgate` to `tollgate_synack`).
#[map]
pub static TG_JUMP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The single-buffer programs' (`tollgate_linear` to
/// `tollgate_synack_linear`): the kernel lets a program array hold, and be
/// called from, programs of one kind only, multi-buffer or not.
#[map]
pub static TG_JUMP_LINEAR: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The parameters of rule `slot` in policy set `set` (`generation & 1`),
/// falling back to the set's default slot.
#[inline(always)]
pub fn rule(set: u32, slot: u32) -> Option<&'static RuleParams> {
    let base = set * RULE_SLOTS;
    TG_RULES
        .get(base + slot)
        .or_else(|| TG_RULES.get(base + monitor_common::maps::DEFAULT_RULE_SLOT))
}
