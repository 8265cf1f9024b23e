//! The per-CPU counter arrays (verdicts by interface and reason,
//! malformed headers, source events, detection signals), each read in one
//! batch and summed over CPUs.

use std::os::fd::OwnedFd;

use monitor_common::{
    maps::{self as names, signal, source_event},
    reason::{COUNTER_SLOTS, MAX_IFACES, Malformed, Reason, Verdict, counter_index},
    types::Counter,
};

use super::{MapError, Maps, syscall_error};

/// Every entry of a per-CPU array, summed over CPUs, in one batch read.
fn per_cpu_sums<T: Copy + Default>(
    fd: &OwnedFd,
    name: &'static str,
    entries: u32,
    add: impl Fn(T, T) -> T,
) -> Result<Vec<T>, MapError> {
    super::batch::per_cpu_array_sums(fd, entries, add).map_err(syscall_error(
        name,
        "batch reading",
        "bpf_map_lookup_batch",
    ))
}

impl Maps {
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
