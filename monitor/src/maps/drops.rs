//! The drop cache from user space (layout in `monitor_common::maps::DROPS`
//! and `monitor_common::drops`): the counts its entries hold for sources
//! of the source table, which `SourceTable` adds to their flow records as
//! it reads them, so a source dropped on the fast path shows every packet.

use std::os::fd::OwnedFd;

use aya::maps::{Array, Map, MapData};
use monitor_common::{
    drops::{DROP_WAYS, DROPS_PER_CPU, DropEntry, NO_SLOT, set_of},
    maps as names,
    types::{SourceFlow, SourceKey, SourceState},
};

use super::{MapError, dup_fd, mmap::Window, op, syscall_error};

/// What one entry holds for a source in the table, not yet in its flow
/// record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub slot: u32,
    pub key: SourceKey,
    pub packets: u64,
    pub bytes: u64,
    pub syns: u64,
}

impl Pending {
    /// Adds the counts to `flow` if it is this entry's source.
    pub fn add_to_flow(&self, flow: &mut SourceFlow) {
        if flow.key == self.key {
            flow.packets += self.packets;
            flow.bytes += self.bytes;
            flow.dropped += self.packets;
            flow.syns += self.syns;
        }
    }

    fn add_to_state(&self, s: &mut SourceState) {
        s.packets += self.packets;
        s.bytes += self.bytes;
        s.dropped += self.packets;
        s.syns += self.syns;
    }
}

/// The whole cache, mapped once (`DROPS_PER_CPU` entries of 72 bytes per
/// possible CPU: 144 KiB each).
pub struct DropCache {
    window: Window<DropEntry>,
    entries: u32,
    /// Keeps the map (and so the mapping's memory) alive.
    _fd: OwnedFd,
}

impl DropCache {
    pub(super) fn open(map: Map) -> Result<Self, MapError> {
        let fd = dup_fd(&map, names::DROPS)?;
        let array: Array<MapData, DropEntry> =
            map.try_into().map_err(op(names::DROPS, "opening"))?;
        let entries = array.len();
        let window =
            Window::map(&fd, 0, entries).map_err(syscall_error(names::DROPS, "mapping", "mmap"))?;
        Ok(Self {
            window,
            entries,
            _fd: fd,
        })
    }

    fn entry(&self, i: u32) -> DropEntry {
        // SAFETY: `i < entries`, inside the mapping; `DropEntry` is 9
        // aligned words of plain data.
        unsafe { super::mmap::read_words::<DropEntry, 9>(self.window.slot(i as usize)) }
    }

    /// Every entry (for tests and diagnostics).
    pub fn entries(&self) -> Vec<DropEntry> {
        (0..self.entries).map(|i| self.entry(i)).collect()
    }

    /// What the entries hold for sources in the table, sorted by slot (a
    /// source can have one entry per CPU).
    pub fn pending(&self) -> Vec<Pending> {
        let mut out: Vec<Pending> = (0..self.entries)
            .map(|i| self.entry(i))
            .filter_map(pending)
            .collect();
        out.sort_unstable_by_key(|p| p.slot);
        out
    }

    /// The reason `key`'s packets are being dropped for, if an entry on
    /// some CPU still drops them at `now` (coarse ns): its set on every
    /// CPU, the latest-ending entry's reason.
    pub fn reason_of(&self, key: &SourceKey, now: u64) -> Option<u32> {
        let set = set_of(key) * DROP_WAYS;
        (0..self.entries)
            .step_by(DROPS_PER_CPU as usize)
            .flat_map(|cpu_base| (0..DROP_WAYS).map(move |way| cpu_base + set + way))
            .map(|i| self.entry(i))
            .filter(|e| e.key.same(key) && e.until_ns > now)
            .max_by_key(|e| e.until_ns)
            .map(|e| e.reason)
    }

    /// Adds what the entries hold for `key` in `slot` to its state: its
    /// set on every CPU.
    pub fn add_to(&self, key: &SourceKey, slot: u32, state: &mut SourceState) {
        let set = set_of(key) * DROP_WAYS;
        for cpu_base in (0..self.entries).step_by(DROPS_PER_CPU as usize) {
            for way in 0..DROP_WAYS {
                if let Some(p) = pending(self.entry(cpu_base + set + way))
                    && p.slot == slot
                    && p.key == *key
                {
                    p.add_to_state(state);
                }
            }
        }
    }
}

fn pending(e: DropEntry) -> Option<Pending> {
    (e.key.family != 0 && e.packets > 0 && e.slot != NO_SLOT).then_some(Pending {
        slot: e.slot,
        key: e.key,
        packets: e.packets,
        bytes: e.bytes,
        syns: e.syns,
    })
}
