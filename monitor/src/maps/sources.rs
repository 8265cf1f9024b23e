//! The source table from user space (layout in
//! `monitor_common::maps::SOURCES`): single sources through the index, and
//! the full read as a sequential sweep of the mmap-ed flow records, a
//! window at a time, split over threads by slot range.

use std::{
    collections::HashSet,
    os::fd::OwnedFd,
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
    time::Instant,
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, MapError as AyaMapError},
};
use monitor_common::{
    maps as names,
    types::{SlotClock, SourceControl, SourceFlow, SourceKey, SourceState},
};

use super::{
    MapError,
    drops::{DropCache, Pending},
    dup_fd,
    mmap::{Window, page_size, read_words},
    op,
    seen::{Due, SeenFilter},
    syscall_error,
};

/// Slots per mmap window: 4 MiB, so a sweep's resident memory stays
/// small (the mapping is populated as a whole when made, and unmapped
/// after) while each mmap call is amortised over 65,536 sources.
const WINDOW: u32 = 65_536;
const SLOT: usize = std::mem::size_of::<SourceFlow>();
/// Slots ahead of the one read that the sweep asks the CPU to fetch.
const PREFETCH: usize = 16;

/// The index, the slots' two arrays and the clock of one source table,
/// and the drop cache whose counts belong to its sources' flow records.
pub struct SourceTable {
    index: HashMap<MapData, SourceKey, u32>,
    /// A descriptor of the index of our own, for batched reads.
    index_fd: OwnedFd,
    flows: Array<MapData, SourceFlow>,
    /// A descriptor of the flow records of our own, for mmap.
    flows_fd: OwnedFd,
    control: Array<MapData, SourceControl>,
    /// A descriptor of the control records of our own, for batched reads.
    control_fd: OwnedFd,
    clock: Array<MapData, SlotClock>,
    drops: DropCache,
    /// Which keys the index may hold (`monitor_common::seen`).
    seen: SeenFilter,
    capacity: u32,
}

impl SourceTable {
    /// Takes the table out of a loaded object whose slots number
    /// `capacity`, and gives the clock that capacity (a fresh table has 0,
    /// which tracks nothing).
    pub(crate) fn take(ebpf: &mut Ebpf, capacity: u32) -> Result<Self, MapError> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(MapError::Missing(name));
        let mut table = Self::from_maps(
            take(names::SOURCES)?,
            take(names::SOURCE_FLOWS)?,
            take(names::SOURCE_CONTROL)?,
            take(names::SOURCE_CLOCK)?,
            take(names::DROPS)?,
            take(names::SEEN)?,
        )?;
        if table.capacity != capacity {
            return Err(MapError::Full {
                map: names::SOURCE_FLOWS,
                capacity: table.capacity,
                what: format!("the loader asked for {capacity} slots"),
            });
        }
        let mut clock = table.clock()?;
        if clock.capacity != capacity as u64 {
            clock.capacity = capacity as u64;
            table
                .clock
                .set(0, clock, 0)
                .map_err(op(names::SOURCE_CLOCK, "writing the capacity"))?;
        }
        Ok(table)
    }

    /// Opens the table pinned in `dir` (a daemon's layout directory), to
    /// look at a daemon's sources from outside it (tests, the bench).
    pub fn from_pins(dir: &Path) -> Result<Self, MapError> {
        let open = |name: &'static str, wrap: fn(MapData) -> Map| {
            MapData::from_pin(dir.join(name))
                .map(wrap)
                .map_err(op(name, "opening the pin"))
        };
        Self::from_maps(
            open(names::SOURCES, Map::HashMap)?,
            open(names::SOURCE_FLOWS, Map::Array)?,
            open(names::SOURCE_CONTROL, Map::Array)?,
            open(names::SOURCE_CLOCK, Map::Array)?,
            open(names::DROPS, Map::Array)?,
            open(names::SEEN, Map::Array)?,
        )
    }

    fn from_maps(
        index: Map,
        flows: Map,
        control: Map,
        clock: Map,
        drops: Map,
        seen: Map,
    ) -> Result<Self, MapError> {
        let flows_fd = dup_fd(&flows, names::SOURCE_FLOWS)?;
        let index_fd = dup_fd(&index, names::SOURCES)?;
        let control_fd = dup_fd(&control, names::SOURCE_CONTROL)?;
        let seen_fd = dup_fd(&seen, names::SEEN)?;
        let seen_words = match &seen {
            Map::Array(d) => d
                .info()
                .map_err(op(names::SEEN, "reading the map's info"))?,
            _ => return Err(MapError::Missing(names::SEEN)),
        }
        .max_entries();
        let flows: Array<MapData, SourceFlow> = flows
            .try_into()
            .map_err(op(names::SOURCE_FLOWS, "opening"))?;
        let capacity = flows.len();
        let clock: Array<MapData, SlotClock> = clock
            .try_into()
            .map_err(op(names::SOURCE_CLOCK, "opening"))?;
        let seen = SeenFilter::open(&seen_fd, seen_words)?;
        // A table whose hand never moved never held a source: its new
        // filter has no bit to miss, and is tested at once.
        seen.test_if_empty(
            clock
                .get(&0, 0)
                .map_err(op(names::SOURCE_CLOCK, "reading"))?
                .hand,
        );
        Ok(Self {
            index: index.try_into().map_err(op(names::SOURCES, "opening"))?,
            index_fd,
            flows,
            flows_fd,
            control: control
                .try_into()
                .map_err(op(names::SOURCE_CONTROL, "opening"))?,
            control_fd,
            clock,
            drops: DropCache::open(drops)?,
            seen,
            capacity,
        })
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn clock(&self) -> Result<SlotClock, MapError> {
        self.clock
            .get(&0, 0)
            .map_err(op(names::SOURCE_CLOCK, "reading"))
    }

    /// Sets the clock: for tests and benchmarks (a hand moved, or claims
    /// stopped with capacity 0); the kernel moves the hand meanwhile.
    pub fn set_clock(&mut self, clock: SlotClock) -> Result<(), MapError> {
        self.clock
            .set(0, clock, 0)
            .map_err(op(names::SOURCE_CLOCK, "writing"))
    }

    /// The state of one source key, if tracked.
    pub fn get(&self, key: &SourceKey) -> Result<Option<SourceState>, MapError> {
        let slot = match self.index.get(key, 0) {
            Ok(s) => s,
            Err(AyaMapError::KeyNotFound) => return Ok(None),
            Err(e) => return Err(op(names::SOURCES, "reading")(e)),
        };
        let flow = self.flow(slot)?;
        // An index entry a race left behind (see the kernel's `find`).
        if flow.key != *key {
            return Ok(None);
        }
        let ctl = self
            .control
            .get(&slot, 0)
            .map_err(op(names::SOURCE_CONTROL, "reading"))?;
        // The slot may have gone to another source between the reads; the
        // flow record's key, read again, says whether the control record
        // was still this source's.
        if self.flow(slot)?.key != *key {
            return Ok(None);
        }
        let mut state = SourceState::from_parts(&flow, &ctl);
        self.drops.add_to(key, slot, &mut state);
        Ok(Some(state))
    }

    fn flow(&self, slot: u32) -> Result<SourceFlow, MapError> {
        self.flows
            .get(&slot, 0)
            .map_err(op(names::SOURCE_FLOWS, "reading"))
    }

    /// Every tracked source read through the index, a few syscalls per
    /// source: slow, for small tables and as a cross-check of the sweep.
    pub fn by_index(&self) -> Result<Vec<(SourceKey, SourceState)>, MapError> {
        let mut out = Vec::new();
        for item in self.index.keys() {
            let key = match item {
                Ok(k) => k,
                // Removed while we iterate.
                Err(AyaMapError::KeyNotFound) => continue,
                Err(e) => return Err(op(names::SOURCES, "iterating")(e)),
            };
            if let Some(state) = self.get(&key)? {
                out.push((key, state));
            }
        }
        Ok(out)
    }

    /// Calls `each` with the flow record of every tracked source (with
    /// what the drop cache counted for it added); returns how many there
    /// were. (The control records are not swept; `get` reads a source's
    /// whole state.)
    pub fn for_each(&self, each: impl FnMut(&SourceFlow)) -> Result<usize, MapError> {
        self.sweep(0, self.used()?, &self.drops.pending(), each)
    }

    /// The drop cache's entries, every CPU's (for tests and diagnostics).
    pub fn drop_cache(&self) -> &DropCache {
        &self.drops
    }

    /// Slots `0..used` may hold sources: the hand has claimed each slot
    /// below it at least once (claims go round in order), none past it.
    /// A sweep stops there, so it costs what the table holds until the
    /// table has been full once, not its capacity. (A claim in flight
    /// past the hand read is seen by the next sweep.)
    fn used(&self) -> Result<u32, MapError> {
        Ok(self.clock()?.hand.min(self.capacity as u64) as u32)
    }

    /// Sweeps the flow records in `parts.len()` threads, each calling its
    /// own `part` for the sources of its share of the slots; returns how
    /// many there were, and the parts (with what they gathered). The
    /// threads run at `SWEEP_NICE` (`yield_to_the_host`).
    pub fn for_each_split<F>(&self, mut parts: Vec<F>) -> Result<(usize, Vec<F>), MapError>
    where
        F: FnMut(&SourceFlow) + Send,
    {
        let n = parts.len().max(1) as u64;
        // Shares start on page boundaries, as mmap offsets must.
        let align = (page_size() / SLOT).max(1) as u64;
        let cap = self.used()? as u64;
        let bound = |i: u64| ((cap * i / n).div_ceil(align) * align).min(cap) as u32;
        let pending = self.drops.pending();
        let pending = &pending;
        let counts: Vec<Result<usize, MapError>> = std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .iter_mut()
                .enumerate()
                .map(|(i, part)| {
                    let (from, to) = (bound(i as u64), bound(i as u64 + 1));
                    s.spawn(move || {
                        yield_to_the_host();
                        self.sweep(from, to, pending, part)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(syscall_error(names::SOURCE_FLOWS, "sweeping", "mmap")(
                            std::io::Error::other("a sweeping thread panicked"),
                        ))
                    })
                })
                .collect()
        });
        let mut total = 0;
        for c in counts {
            total += c?;
        }
        Ok((total, parts))
    }

    /// Calls `each` for the sources in slots `from..to` (`from` on a page
    /// boundary), with the counts `pending` (sorted by slot) holds for
    /// them added. A slot the kernel is claiming while we read may show
    /// its new key with part of its old counters, once; nothing else is
    /// torn in a way that matters (each counter is one aligned word). A
    /// drop-cache entry the kernel folds into its flow record between the
    /// two reads counts twice in this one reading.
    fn sweep(
        &self,
        from: u32,
        to: u32,
        pending: &[Pending],
        mut each: impl FnMut(&SourceFlow),
    ) -> Result<usize, MapError> {
        let mut found = 0;
        let mut at = from;
        let mut next = pending.partition_point(|p| p.slot < from);
        while at < to {
            let count = WINDOW.min(to - at);
            let window = Window::<SourceFlow>::map(&self.flows_fd, at, count)
                .map_err(syscall_error(names::SOURCE_FLOWS, "mapping", "mmap"))?;
            for i in 0..count as usize {
                let p = window.slot(i);
                window.prefetch(i + PREFETCH);
                // SAFETY: `p` is inside the mapping, which lives as long
                // as `window`; the kernel writes it concurrently, hence
                // the atomic reads (plain data, any bit pattern valid).
                let family = unsafe { AtomicU32::from_ptr(&raw const (*p).key.family as *mut u32) }
                    .load(Ordering::Relaxed);
                if family == 0 {
                    continue;
                }
                // SAFETY: as above; `SourceFlow` is 8 aligned words.
                let mut flow = unsafe { read_words::<SourceFlow, 8>(p) };
                let slot = at + i as u32;
                while let Some(p) = pending.get(next).filter(|p| p.slot <= slot) {
                    if p.slot == slot {
                        p.add_to_flow(&mut flow);
                    }
                    next += 1;
                }
                found += 1;
                each(&flow);
            }
            at += count;
        }
        Ok(found)
    }

    /// Keeps the indexed-source filter (`monitor_common::seen`): when due,
    /// clears the half the kernel does not test, or (at least `SETTLE`
    /// later) reads the table into it and tests it. Call it every interval;
    /// it returns what it did, and after a fill how many bits the tested
    /// half has set.
    pub fn keep_seen(&mut self, now: Instant) -> Result<(Due, u32), MapError> {
        match self.seen.due(now) {
            Due::Nothing => Ok((Due::Nothing, 0)),
            Due::Clear => {
                self.seen.clear(now);
                Ok((Due::Clear, 0))
            }
            Due::Fill => {
                self.for_each(|f| self.seen.fill(&f.key))?;
                Ok((Due::Fill, self.seen.finish_fill(now)))
            }
        }
    }

    /// Takes back the slots of the sources first seen at or after
    /// `since_ns` (coarse ns) that have shown nothing of being real (no
    /// ACK seen, not banned at `now_ns`) and sent no SYN: a storm's
    /// sources, which claimed slots before the storm was found. Their
    /// packets are then judged as
    /// a never-seen source's are, on the prefix budget they were on
    /// already (`prefix::budget`: first seen since the storm began; one
    /// whose packet passes claims a slot again with its second), without
    /// the index entry and two records a tracked source reads, which a
    /// storm of tens of thousands of sources that repeat misses in the
    /// cache on every packet; the filter is rebuilt at once, so the kernel
    /// stops looking them up. As with an eviction, a source's flow counts
    /// go with its slot. Sources whose rule slot is in `unlimited`
    /// (`Maps::unlimited_rule_slots`: allowed or only watched) keep theirs:
    /// they would pass all the same. Returns how many.
    ///
    /// Batched reads of the control records and the index, then a few
    /// syscalls per source taken back: once per storm.
    pub fn demote_since(
        &mut self,
        since_ns: u64,
        now_ns: u64,
        unlimited: &HashSet<u32>,
    ) -> Result<u32, MapError> {
        let controls =
            super::batch::array_values::<SourceControl>(&self.control_fd, self.used()?, WINDOW)
                .map_err(syscall_error(
                    names::SOURCE_CONTROL,
                    "reading",
                    "BPF_MAP_LOOKUP_BATCH",
                ))?;
        let storms = |c: &SourceControl| {
            c.first_seen_ns >= since_ns
                && c.acks == 0
                && c.ban_until_ns <= now_ns
                && !unlimited.contains(&c.rule_slot)
        };
        let mut slots: Vec<(u32, SourceKey)> =
            super::batch::hash_entries::<SourceKey, u32>(&self.index_fd, 4096)
                .map_err(syscall_error(
                    names::SOURCES,
                    "reading",
                    "BPF_MAP_LOOKUP_BATCH",
                ))?
                .into_iter()
                .filter(|(_, slot)| controls.get(*slot as usize).is_some_and(storms))
                .map(|(key, slot)| (slot, key))
                .collect();
        slots.sort_unstable_by_key(|(slot, _)| *slot);
        let mut demoted = 0;
        let done = self.take_back(&slots, &mut demoted);
        if demoted > 0 {
            self.seen.rebuild_soon();
        }
        done.map(|()| demoted)
    }

    /// Frees each of `slots` (in slot order) that still holds its key: the
    /// index entry removed, then the key's family cleared in the mapped
    /// record (a free slot to the clock, left out of sweeps and of the
    /// filter's fill) by a compare-and-swap, just after the whole key was
    /// read again: a claim of the slot by another source in between would
    /// have to land within those few instructions.
    fn take_back(&mut self, slots: &[(u32, SourceKey)], demoted: &mut u32) -> Result<(), MapError> {
        let mut window: Option<(u32, Window<SourceFlow>)> = None;
        for &(slot, key) in slots {
            let first = slot - slot % WINDOW;
            let w = match window.take() {
                Some((f, w)) if f == first => w,
                _ => Window::map_rw(&self.flows_fd, first, WINDOW.min(self.capacity - first))
                    .map_err(syscall_error(names::SOURCE_FLOWS, "mapping", "mmap"))?,
            };
            let p = w.slot((slot - first) as usize);
            // SAFETY: `p` is inside the mapping; plain data read as atomic
            // words, as the sweep reads it.
            let read = || unsafe { read_words::<SourceFlow, 8>(p) };
            let holds = || read().key == key;
            let flow = read();
            // A source that sent SYNs stays: the SYN-flood detector bans
            // it from its record, and a SYN-cookie handshake verifies it.
            if flow.syns == 0 && flow.key == key {
                match self.index.remove(&key) {
                    Ok(()) | Err(AyaMapError::KeyNotFound) => {}
                    Err(e) => return Err(op(names::SOURCES, "removing")(e)),
                }
                if holds() {
                    // SAFETY: a writable mapping of the record; an aligned
                    // u32, written only atomically here and by the kernel.
                    let family =
                        unsafe { AtomicU32::from_ptr(&raw const (*p).key.family as *mut u32) };
                    let _ =
                        family.compare_exchange(key.family, 0, Ordering::SeqCst, Ordering::Relaxed);
                }
                *demoted += 1;
            }
            window = Some((first, w));
        }
        Ok(())
    }

    /// Whether the kernel would look `key` up in the index: its bit is
    /// set in the filter's tested half, or the filter is not tested yet.
    pub fn seen_may_hold(&self, key: &SourceKey) -> bool {
        self.seen.may_hold(key)
    }

    /// Whether `key`'s bit is set in the filter's tested half and in the
    /// other one, in that order (for tests: the kernel sets both).
    pub fn seen_bits(&self, key: &SourceKey) -> (bool, bool) {
        let bits = self.seen.bits(key);
        let tested = self.seen.tested_half() as usize;
        (bits[tested], bits[1 - tested])
    }

    /// Whether the kernel tests the filter yet.
    pub fn seen_testing(&self) -> bool {
        self.seen.testing()
    }

    /// Tracks `entries` (keys and states) the way the kernel would, each
    /// in the slot under the clock hand (no second chance), or in its own
    /// slot if already tracked. Only for a data path that is not claiming
    /// slots meanwhile: benchmarks and tests fill tables this way. In the
    /// kernel's order, so that a daemon rebuilding the filter meanwhile
    /// (`keep_seen`) misses none: the hand moved past the slot, the slot
    /// written, the filter's bit set, then the index entry.
    pub fn insert(
        &mut self,
        entries: impl IntoIterator<Item = (SourceKey, SourceState)>,
    ) -> Result<(), MapError> {
        let mut clock = self.clock()?;
        if clock.capacity == 0 {
            return Ok(());
        }
        for (key, state) in entries {
            let (flow, ctl) = state.into_parts(key);
            let slot = match self.index.get(&key, 0) {
                Ok(s) => {
                    self.write_slot(s, flow, ctl)?;
                    continue;
                }
                Err(AyaMapError::KeyNotFound) => (clock.hand % clock.capacity) as u32,
                Err(e) => return Err(op(names::SOURCES, "reading")(e)),
            };
            clock.hand += 1;
            self.clock
                .set(0, clock, 0)
                .map_err(op(names::SOURCE_CLOCK, "writing"))?;
            let old = self.flow(slot)?;
            if old.in_use() && self.index.get(&old.key, 0).ok() == Some(slot) {
                self.index
                    .remove(&old.key)
                    .map_err(op(names::SOURCES, "removing"))?;
            }
            self.write_slot(slot, flow, ctl)?;
            self.seen.note(&key);
            self.index
                .insert(key, slot, 0)
                .map_err(op(names::SOURCES, "inserting"))?;
        }
        Ok(())
    }

    fn write_slot(
        &mut self,
        slot: u32,
        flow: SourceFlow,
        ctl: SourceControl,
    ) -> Result<(), MapError> {
        self.flows
            .set(slot, flow, 0)
            .map_err(op(names::SOURCE_FLOWS, "writing"))?;
        self.control
            .set(slot, ctl, 0)
            .map_err(op(names::SOURCE_CONTROL, "writing"))
    }
}

/// The sweep threads' nice value. A walk of a large table reads its whole
/// flow-record array (64 MiB at a million slots, a few ms on every core
/// it is given), and the host's service shares those cores: at nice 0 a
/// request that arrives during a walk waits behind it, which showed in
/// the ceiling bench as the legitimate clients' p99. What a walk feeds
/// (top talkers, the tracked count, the detectors that judge single
/// sources by it) can wait a few ms while the cores are busy (nice 10 is
/// about a tenth of a busy core's time); the kernel's enforcement never
/// waits for it, nor do the detectors that read the counters. Nice ranks
/// threads within one scheduling group: where the service runs in a
/// cgroup (or autogroup) of its own, as under systemd, the groups' CPU
/// weights (`CPUWeight=`) rank the daemon against it, and this ranks the
/// walk below the daemon's own work.
pub const SWEEP_NICE: i32 = 10;

/// Lowers the calling thread (a sweep thread, which ends with the walk)
/// to `SWEEP_NICE`, never raises it (a daemon started nicer stays so).
/// If the kernel refuses, the walk runs as before.
fn yield_to_the_host() {
    // SAFETY: gettid, then get/setpriority on this thread's own id; no
    // memory is shared. getpriority returns the nice value itself (-1 can
    // be one).
    let tid = unsafe { libc::gettid() } as libc::id_t;
    // SAFETY: as above.
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    if current >= SWEEP_NICE {
        return;
    }
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, SWEEP_NICE) } != 0 {
        tracing::debug!(
            "the sweep thread keeps its priority: {}",
            std::io::Error::last_os_error()
        );
    }
}
