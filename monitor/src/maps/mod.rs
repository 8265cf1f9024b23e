//! Typed access to the program's maps. `Maps` owns every map, and its
//! fields are private: each family of maps has one file here with the
//! only code that touches it (`policy`, `bans`, `counters`, `detect`,
//! `cookies`, `sources` with the drop cache's counts in `drops` and the
//! indexed-source filter in `seen`, `replay`;
//! LPM helpers in `trie`, batch reads in `batch`, mappings in `mmap`). The
//! kernel is the only other party (see the writer/reader notes in
//! `monitor_common::maps`).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd as _, OwnedFd},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError as AyaMapError, lpm_trie::LpmTrie},
};
use ipnet::IpNet;
use monitor_common::{
    maps::{self as names, MAX_IFINDEX},
    syncookie::VerifiedKey,
    types::{ReplayRecord, RuleParams, RuntimeConfig, SourceFlow, SourceKey, SourceState, family},
};

mod bans;
mod batch;
mod cookies;
mod counters;
mod detect;
mod drops;
mod mmap;
mod policy;
mod replay;
mod seen;
mod sources;
mod trie;

pub use counters::{Counters, ReasonCounters};
pub use drops::{DropCache, Pending};
pub use policy::ApplyError;
pub use seen::{Due as SeenDue, REBUILD_EVERY as SEEN_REBUILD_EVERY, SETTLE as SEEN_SETTLE};
pub use sources::{SWEEP_NICE, SourceTable};

/// A map operation that failed, naming the map and the operation.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("the XDP object has no map `{0}`; the object and this binary are out of step")]
    Missing(&'static str),
    #[error("map `{map}`: {op} failed")]
    Op {
        map: &'static str,
        op: &'static str,
        #[source]
        source: AyaMapError,
    },
    #[error("map `{map}` has {entries} entries, a size this binary cannot read: {what}")]
    Size {
        map: &'static str,
        entries: u32,
        what: &'static str,
    },
    #[error("map `{map}` is full ({capacity} entries): {what}")]
    Full {
        map: &'static str,
        capacity: u32,
        what: String,
    },
}

/// The kernel's error number behind `e`: the first `std::io::Error` in
/// its chain of sources (aya wraps each failed syscall's).
pub(crate) fn os_errno(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cause = c.source();
    }
    None
}

fn op(map: &'static str, op: &'static str) -> impl FnOnce(AyaMapError) -> MapError {
    move |source| MapError::Op { map, op, source }
}

/// A failed raw `bpf(2)` call on `map`.
fn syscall_error(
    map: &'static str,
    op: &'static str,
    call: &'static str,
) -> impl FnOnce(std::io::Error) -> MapError {
    move |io_error| MapError::Op {
        map,
        op,
        source: AyaMapError::SyscallError(aya::sys::SyscallError { call, io_error }),
    }
}

/// A descriptor of array or hash `map` of our own, for the batch
/// syscalls and mmap.
fn dup_fd(map: &aya::maps::Map, name: &'static str) -> Result<OwnedFd, MapError> {
    use aya::maps::Map;
    let data = match map {
        Map::PerCpuArray(d) | Map::Array(d) | Map::HashMap(d) | Map::LruHashMap(d) => d,
        _ => return Err(MapError::Missing(name)),
    };
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(syscall_error(name, "duplicating the descriptor", "dup"))
}

/// Takes map `name` out of `ebpf`, keeping only a descriptor.
fn take_fd(ebpf: &mut Ebpf, name: &'static str) -> Result<OwnedFd, MapError> {
    let map = ebpf.take_map(name).ok_or(MapError::Missing(name))?;
    dup_fd(&map, name)
}

/// Every map of one loaded object.
pub struct Maps {
    pub sources: SourceTable,
    /// Both policy sets, indexed by `generation & 1`.
    policy_v4: [LpmTrie<MapData, [u8; 4], u32>; 2],
    policy_v6: [LpmTrie<MapData, [u8; 16], u32>; 2],
    /// Both sets' rule parameters: set `s` at `s · RULE_SLOTS + slot`.
    rules: Array<MapData, RuleParams>,
    ifaces: Array<MapData, u32>,
    bans_v4: LpmTrie<MapData, [u8; 4], u64>,
    bans_v6: LpmTrie<MapData, [u8; 16], u64>,
    config: Array<MapData, RuntimeConfig>,
    /// The per-CPU arrays, read in one batch each (see `batch`).
    counters: OwnedFd,
    malformed: OwnedFd,
    source_events: OwnedFd,
    signals: OwnedFd,
    hot: HashMap<MapData, SourceKey, u32>,
    syn_bucket: Array<MapData, u64>,
    bogons_v4: LpmTrie<MapData, [u8; 4], u8>,
    bogons_v6: LpmTrie<MapData, [u8; 16], u8>,
    replay_clock: Array<MapData, u64>,
    replay_out: Array<MapData, ReplayRecord>,
    cookie_ports: Array<MapData, u64>,
    /// `VERIFIED` through aya (removal) and a descriptor of our own for
    /// the batch read that counts it.
    verified: HashMap<MapData, VerifiedKey, u64>,
    verified_fd: OwnedFd,
    verified_filter: Array<MapData, u64>,
    cookie_events: OwnedFd,
}

macro_rules! take {
    ($ebpf:expr, $name:expr) => {{
        let map = $ebpf.take_map($name).ok_or(MapError::Missing($name))?;
        map.try_into().map_err(op($name, "opening"))?
    }};
}

impl Maps {
    pub(crate) fn take(ebpf: &mut Ebpf, max_sources: u32) -> Result<Self, MapError> {
        let verified = ebpf
            .take_map(names::VERIFIED)
            .ok_or(MapError::Missing(names::VERIFIED))?;
        let verified_fd = dup_fd(&verified, names::VERIFIED)?;
        let mut maps = Self {
            sources: SourceTable::take(ebpf, max_sources)?,
            policy_v4: [
                take!(ebpf, names::POLICY_V4[0]),
                take!(ebpf, names::POLICY_V4[1]),
            ],
            policy_v6: [
                take!(ebpf, names::POLICY_V6[0]),
                take!(ebpf, names::POLICY_V6[1]),
            ],
            rules: take!(ebpf, names::RULES),
            ifaces: take!(ebpf, names::IFACES),
            bans_v4: take!(ebpf, names::BANS_V4),
            bans_v6: take!(ebpf, names::BANS_V6),
            config: take!(ebpf, names::CONFIG),
            counters: take_fd(ebpf, names::COUNTERS)?,
            malformed: take_fd(ebpf, names::MALFORMED)?,
            source_events: take_fd(ebpf, names::SOURCE_EVENTS)?,
            signals: take_fd(ebpf, names::SIGNALS)?,
            hot: take!(ebpf, names::HOT),
            syn_bucket: take!(ebpf, names::SYN_BUCKET),
            bogons_v4: take!(ebpf, names::BOGONS_V4),
            bogons_v6: take!(ebpf, names::BOGONS_V6),
            replay_clock: take!(ebpf, names::REPLAY_CLOCK),
            replay_out: take!(ebpf, names::REPLAY_OUT),
            cookie_ports: take!(ebpf, names::COOKIE_PORTS),
            verified: verified
                .try_into()
                .map_err(op(names::VERIFIED, "opening"))?,
            verified_fd,
            verified_filter: take!(ebpf, names::VERIFIED_FILTER),
            cookie_events: take_fd(ebpf, names::COOKIE_EVENTS)?,
        };
        // A ban trie the daemon finds empty costs a never-seen source's
        // packet no lookup until the next ban (`Maps::ban`). Without the
        // marks every such packet looks: a failure costs lookups, not the
        // load.
        if let Err(e) = maps.note_empty_bans() {
            tracing::warn!(
                event = "empty_tries_failed",
                "marking the empty ban tries: {e:#}"
            );
        }
        // Without its bits a verified source proves itself once more: a
        // failure here costs handshakes, not the load.
        if let Err(e) = maps.refresh_verified_filter(crate::clock::coarse_ns(), true) {
            tracing::warn!(
                event = "verified_filter_failed",
                "filling the verified-source filter: {e:#}"
            );
        }
        Ok(maps)
    }

    pub fn runtime_config(&self) -> Result<RuntimeConfig, MapError> {
        self.config.get(&0, 0).map_err(op(names::CONFIG, "reading"))
    }

    fn set_runtime_config(&mut self, cfg: &RuntimeConfig) -> Result<(), MapError> {
        self.config
            .set(0, cfg, 0)
            .map_err(op(names::CONFIG, "writing"))
    }

    /// Marks the trie of `bit` (`monitor_common::tries`) empty or not, in
    /// a write of its own (the order of the daemon's writes is what keeps
    /// the bits on the safe side; see there).
    fn mark_empty(&mut self, bit: u32, empty: bool) -> Result<(), MapError> {
        let mut cfg = self.runtime_config()?;
        let bits = monitor_common::tries::with(cfg.empty_tries, bit, empty);
        if bits == cfg.empty_tries {
            return Ok(());
        }
        cfg.empty_tries = bits;
        self.set_runtime_config(&cfg)
    }

    /// Gives interface `ifindex` counter slot `slot` (1..MAX_IFACES).
    pub(crate) fn set_iface_slot(&mut self, ifindex: u32, slot: u32) -> Result<(), MapError> {
        if ifindex >= MAX_IFINDEX {
            // Counted under slot 0; nothing to write.
            return Ok(());
        }
        self.ifaces
            .set(ifindex, slot, 0)
            .map_err(op(names::IFACES, "writing an interface slot"))
    }

    /// The state of one source key, if tracked.
    pub fn source(&self, key: &SourceKey) -> Result<Option<SourceState>, MapError> {
        self.sources.get(key)
    }

    /// The source key `addr` falls under with the current prefixes.
    pub fn source_key(&self, addr: IpAddr) -> Result<SourceKey, MapError> {
        Ok(source_key(&self.runtime_config()?, addr))
    }

    /// Every tracked source with its whole state, read through the index
    /// (a few syscalls per source: for tests and small tables; the daemon
    /// sweeps the flow records instead).
    pub fn sources(&self) -> Result<Vec<(SourceKey, SourceState)>, MapError> {
        self.sources.by_index()
    }

    /// Calls `each` with the flow record of every tracked source, in one
    /// sweep; returns how many there were.
    pub fn for_each_source(&self, each: impl FnMut(&SourceFlow)) -> Result<usize, MapError> {
        self.sources.for_each(each)
    }

    /// Sweeps the flow records in `parts.len()` threads, each calling its
    /// own `part` for its share of the slots; returns how many sources
    /// there were, and the parts (with what they gathered).
    pub fn for_each_source_split<F>(&self, parts: Vec<F>) -> Result<(usize, Vec<F>), MapError>
    where
        F: FnMut(&SourceFlow) + Send,
    {
        self.sources.for_each_split(parts)
    }

    pub fn max_sources(&self) -> u32 {
        self.sources.capacity()
    }

    /// The drop cache (whose counts `source` and the sweeps already add).
    pub fn drop_cache(&self) -> &DropCache {
        self.sources.drop_cache()
    }
}

/// The source key for `addr` under `cfg`'s prefixes.
pub fn source_key(cfg: &RuntimeConfig, addr: IpAddr) -> SourceKey {
    match addr {
        IpAddr::V4(a) => SourceKey::v4(u32::from_ne_bytes(a.octets()), cfg.v4_mask),
        IpAddr::V6(a) => SourceKey::v6(&words(&a.octets()), &cfg.v6_mask),
    }
}

/// The prefix a source key stands for, as text ("192.0.2.7", "2001:db8::/64").
pub fn source_key_net(key: &SourceKey, cfg: &RuntimeConfig) -> IpNet {
    if key.family == family::IPV4 as u32 {
        let a = Ipv4Addr::from(key.addr[0].to_ne_bytes());
        let len = u32::from_be_bytes(cfg.v4_mask.to_ne_bytes()).count_ones() as u8;
        IpNet::new(IpAddr::V4(a), len).unwrap_or(IpNet::from(IpAddr::V4(a)))
    } else {
        let mut b = [0u8; 16];
        for (i, w) in key.addr.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        let len: u32 = cfg
            .v6_mask
            .iter()
            .map(|w| u32::from_be_bytes(w.to_ne_bytes()).count_ones())
            .sum();
        let a = Ipv6Addr::from(b);
        IpNet::new(IpAddr::V6(a), len as u8).unwrap_or(IpNet::from(IpAddr::V6(a)))
    }
}

pub(crate) fn words(b: &[u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, x) in w.iter_mut().enumerate() {
        *x = u32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
    }
    w
}
