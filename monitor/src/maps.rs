//! Typed access to the program's maps. `Maps` owns every map; the kernel is
//! the only other party (see the writer/reader notes in
//! `monitor_common::maps`).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd as _, OwnedFd},
};

use aya::{
    Ebpf,
    maps::{
        Array, HashMap, MapData, MapError as AyaMapError,
        lpm_trie::{Key, LpmTrie},
    },
};
use ipnet::IpNet;

use crate::sources::SourceTable;
use monitor_common::{
    bucket::BucketParams,
    maps::{self as names, source_event},
    maps::{MAX_IFINDEX, signal},
    reason::{COUNTER_SLOTS, MAX_IFACES, Malformed, Reason, Verdict, counter_index},
    types::{
        Counter, ReplayRecord, RuleParams, RuntimeConfig, SourceFlow, SourceKey, SourceState,
        family,
    },
};

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
    #[error("map `{map}` is full ({capacity} entries): {what}")]
    Full {
        map: &'static str,
        capacity: u32,
        what: String,
    },
}

pub(crate) fn op(map: &'static str, op: &'static str) -> impl FnOnce(AyaMapError) -> MapError {
    move |source| MapError::Op { map, op, source }
}

/// A failed raw `bpf(2)` call on `map`.
pub(crate) fn syscall_error(
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

/// A descriptor of array `map` of our own, for the batch syscalls and mmap.
pub(crate) fn dup_fd(map: &aya::maps::Map, name: &'static str) -> Result<OwnedFd, MapError> {
    use aya::maps::Map;
    let data = match map {
        Map::PerCpuArray(d) | Map::Array(d) => d,
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

/// Every entry of a per-CPU array, summed over CPUs, in one batch read.
fn per_cpu_sums<T: Copy + Default>(
    fd: &OwnedFd,
    name: &'static str,
    entries: u32,
    add: impl Fn(T, T) -> T,
) -> Result<Vec<T>, MapError> {
    crate::batch::per_cpu_array_sums(fd, entries, add).map_err(syscall_error(
        name,
        "batch reading",
        "bpf_map_lookup_batch",
    ))
}

/// Every map of one loaded object.
pub struct Maps {
    pub sources: SourceTable,
    /// Both policy sets, indexed by `generation & 1`.
    pub(crate) policy_v4: [LpmTrie<MapData, [u8; 4], u32>; 2],
    pub(crate) policy_v6: [LpmTrie<MapData, [u8; 16], u32>; 2],
    /// Both sets' rule parameters: set `s` at `s · RULE_SLOTS + slot`.
    pub(crate) rules: Array<MapData, RuleParams>,
    ifaces: Array<MapData, u32>,
    pub(crate) bans_v4: LpmTrie<MapData, [u8; 4], u64>,
    pub(crate) bans_v6: LpmTrie<MapData, [u8; 16], u64>,
    pub(crate) config: Array<MapData, RuntimeConfig>,
    /// The per-CPU arrays, read in one batch each (see `batch`).
    counters: OwnedFd,
    malformed: OwnedFd,
    source_events: OwnedFd,
    signals: OwnedFd,
    hot: HashMap<MapData, SourceKey, u32>,
    syn_bucket: Array<MapData, u64>,
    bogons_v4: LpmTrie<MapData, [u8; 4], u8>,
    bogons_v6: LpmTrie<MapData, [u8; 16], u8>,
    pub(crate) replay_clock: Array<MapData, u64>,
    pub(crate) replay_out: Array<MapData, ReplayRecord>,
}

macro_rules! take {
    ($ebpf:expr, $name:expr) => {{
        let map = $ebpf.take_map($name).ok_or(MapError::Missing($name))?;
        map.try_into().map_err(op($name, "opening"))?
    }};
}

impl Maps {
    pub(crate) fn take(ebpf: &mut Ebpf, max_sources: u32) -> Result<Self, MapError> {
        Ok(Self {
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
        })
    }

    pub fn runtime_config(&self) -> Result<RuntimeConfig, MapError> {
        self.config.get(&0, 0).map_err(op(names::CONFIG, "reading"))
    }

    pub(crate) fn set_runtime_config(&mut self, cfg: &RuntimeConfig) -> Result<(), MapError> {
        self.config
            .set(0, cfg, 0)
            .map_err(op(names::CONFIG, "writing"))
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

    /// Global counters summed over CPUs, by interface slot, reason and
    /// verdict: three batch reads.
    pub fn counters(&self) -> Result<Counters, MapError> {
        let mut out = Counters::default();
        let all = per_cpu_sums(&self.counters, names::COUNTERS, COUNTER_SLOTS, add)?;
        for (slot, per_iface) in out.by_iface.iter_mut().enumerate() {
            for reason in Reason::ALL {
                for verdict in Verdict::ALL {
                    per_iface[reason as usize][verdict as usize] =
                        all[counter_index(slot as u32, reason, verdict) as usize];
                }
            }
        }
        let malformed = per_cpu_sums(
            &self.malformed,
            names::MALFORMED,
            Malformed::COUNT as u32,
            add,
        )?;
        out.malformed.copy_from_slice(&malformed);
        let events = per_cpu_sums(
            &self.source_events,
            names::SOURCE_EVENTS,
            source_event::COUNT,
            |a: u64, b| a + b,
        )?;
        out.source_events.copy_from_slice(&events);
        Ok(out)
    }

    /// Host-wide detection signals (`signal::*`), summed over CPUs.
    pub fn signals(&self) -> Result<[u64; signal::COUNT as usize], MapError> {
        let mut out = [0u64; signal::COUNT as usize];
        let sums = per_cpu_sums(&self.signals, names::SIGNALS, signal::COUNT, |a: u64, b| {
            a + b
        })?;
        out.copy_from_slice(&sums);
        Ok(out)
    }

    /// Replaces the bogon ranges new sources are checked against.
    pub fn set_bogons(&mut self, nets: &[IpNet]) -> Result<(), MapError> {
        clear_trie(&mut self.bogons_v4, names::BOGONS_V4)?;
        clear_trie(&mut self.bogons_v6, names::BOGONS_V6)?;
        for n in nets {
            match n {
                IpNet::V4(n) => self
                    .bogons_v4
                    .insert(&lpm_v4(n), 1, 0)
                    .map_err(op(names::BOGONS_V4, "inserting"))?,
                IpNet::V6(n) => self
                    .bogons_v6
                    .insert(&lpm_v6(n), 1, 0)
                    .map_err(op(names::BOGONS_V6, "inserting"))?,
            }
        }
        Ok(())
    }

    /// The sources that went over their limit since the last call, and a
    /// new hot window so they report again if they still do.
    pub fn take_hot(&mut self) -> Result<Vec<SourceKey>, MapError> {
        let keys: Vec<SourceKey> = self.hot.keys().filter_map(Result::ok).collect();
        for k in &keys {
            let _ = self.hot.remove(k);
        }
        let mut cfg = self.runtime_config()?;
        cfg.hot_window = cfg.hot_window.wrapping_add(1).max(1);
        self.set_runtime_config(&cfg)?;
        Ok(keys)
    }

    /// Sets (or, with `BucketParams::UNLIMITED`, lifts) the host-wide
    /// limit on new TCP connections, starting from a full bucket.
    /// Sets the host-wide SYN limit; sources first seen before
    /// `known_before_s` (seconds on the bucket clock) that have completed
    /// a handshake are exempt.
    pub fn set_syn_limit(
        &mut self,
        params: BucketParams,
        known_before_s: u32,
    ) -> Result<(), MapError> {
        self.syn_bucket
            .set(0, 0, 0)
            .map_err(op(names::SYN_BUCKET, "resetting"))?;
        let mut cfg = self.runtime_config()?;
        cfg.syn_limit = params;
        cfg.syn_known_before_s = known_before_s;
        self.set_runtime_config(&cfg)
    }

    /// Starts a new destination-port window: every source's sketch starts
    /// over at its next packet.
    pub fn next_port_window(&mut self) -> Result<u32, MapError> {
        let mut cfg = self.runtime_config()?;
        cfg.port_window = cfg.port_window.wrapping_add(1);
        self.set_runtime_config(&cfg)?;
        Ok(cfg.port_window)
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

/// The address an LPM trie is keyed by (4 or 16 bytes).
pub(crate) trait LpmAddr: aya::Pod {
    fn net(self, prefix_len: u32) -> Option<IpNet>;
}

impl LpmAddr for [u8; 4] {
    fn net(self, prefix_len: u32) -> Option<IpNet> {
        ipnet::Ipv4Net::new(self.into(), prefix_len as u8)
            .ok()
            .map(IpNet::V4)
    }
}

impl LpmAddr for [u8; 16] {
    fn net(self, prefix_len: u32) -> Option<IpNet> {
        ipnet::Ipv6Net::new(self.into(), prefix_len as u8)
            .ok()
            .map(IpNet::V6)
    }
}

/// Every prefix of `trie` (named `map` in errors) with its value.
pub(crate) fn trie_entries<K: LpmAddr, V: aya::Pod>(
    trie: &LpmTrie<MapData, K, V>,
    map: &'static str,
) -> Result<Vec<(IpNet, V)>, MapError> {
    let mut out = Vec::new();
    for kv in trie.iter() {
        let (k, v) = kv.map_err(op(map, "iterating"))?;
        if let Some(net) = k.data().net(k.prefix_len()) {
            out.push((net, v));
        }
    }
    Ok(out)
}

/// Removes every prefix of `trie` (named `map` in errors).
pub(crate) fn clear_trie<K: aya::Pod, V: aya::Pod>(
    trie: &mut LpmTrie<MapData, K, V>,
    map: &'static str,
) -> Result<(), MapError> {
    let keys: Vec<_> = trie.keys().filter_map(Result::ok).collect();
    for k in keys {
        trie.remove(&k).map_err(op(map, "clearing"))?;
    }
    Ok(())
}

pub(crate) fn lpm_v4(net: &ipnet::Ipv4Net) -> Key<[u8; 4]> {
    Key::new(net.prefix_len() as u32, net.network().octets())
}

pub(crate) fn lpm_v6(net: &ipnet::Ipv6Net) -> Key<[u8; 16]> {
    Key::new(net.prefix_len() as u32, net.network().octets())
}

/// `[reason][verdict]` counters of one interface slot.
pub type ReasonCounters = [[Counter; Verdict::COUNT]; Reason::COUNT];

/// Global counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `[interface slot][reason][verdict]`; slot 0 is traffic on no slot
    /// (test runs).
    pub by_iface: [ReasonCounters; MAX_IFACES],
    pub malformed: [Counter; Malformed::COUNT],
    pub source_events: [u64; source_event::COUNT as usize],
}

fn add(a: Counter, b: Counter) -> Counter {
    Counter {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
    }
}

impl Counters {
    /// All interfaces together.
    pub fn get(&self, reason: Reason, verdict: Verdict) -> Counter {
        self.by_iface
            .iter()
            .map(|i| i[reason as usize][verdict as usize])
            .fold(Counter::default(), add)
    }

    /// Packets with this reason, whatever the verdict.
    pub fn packets(&self, reason: Reason) -> u64 {
        Verdict::ALL
            .iter()
            .map(|v| self.get(reason, *v).packets)
            .sum()
    }

    pub fn total(&self, verdict: Verdict) -> Counter {
        Reason::ALL
            .iter()
            .map(|r| self.get(*r, verdict))
            .fold(Counter::default(), add)
    }
}
