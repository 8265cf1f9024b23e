//! SYN cookies: the protected-port bitmap and the cookie settings the
//! daemon writes, the cookie counters and the verified sources it reads.
//! The kernel writes `VERIFIED` (a source that returned a valid cookie,
//! with its expiry) and the counters; the daemon only counts and clears
//! the verified sources.

use std::collections::BTreeMap;

use monitor_common::{
    maps as names,
    syncookie::{
        CookieParams, PORT_WORDS, VERIFIED_FILTER_WORDS, VerifiedKey, cookie_event, port_slot,
    },
};

use super::{MapError, Maps, op, syscall_error};

/// Verified sources read per batch call.
const VERIFIED_CHUNK: u32 = 4096;

impl Maps {
    /// Protects exactly `ports`: every word of the bitmap is written, so
    /// ports no longer listed are cleared. Each word is one store, so a
    /// packet sees a port either before or after the change.
    pub fn set_cookie_ports(&mut self, ports: &[u16]) -> Result<(), MapError> {
        let mut words = vec![0u64; PORT_WORDS as usize];
        for p in ports {
            let (word, bit) = port_slot(*p);
            words[word as usize] |= bit;
        }
        for (i, w) in words.iter().enumerate() {
            self.cookie_ports
                .set(i as u32, *w, 0)
                .map_err(op(names::COOKIE_PORTS, "writing the port bitmap"))?;
        }
        Ok(())
    }

    /// The cookie settings in force (mode `OFF` unless configured).
    pub fn cookie_params(&self) -> Result<CookieParams, MapError> {
        Ok(self.runtime_config()?.cookie)
    }

    /// Writes the cookie settings into the runtime config (one store;
    /// everything else in it is kept).
    pub fn set_cookie_params(&mut self, params: CookieParams) -> Result<(), MapError> {
        let mut cfg = self.runtime_config()?;
        cfg.cookie = params;
        self.set_runtime_config(&cfg)
    }

    /// The cookie counters (`cookie_event::*`), summed over CPUs.
    pub fn cookie_events(&self) -> Result<[u64; cookie_event::COUNT as usize], MapError> {
        let sums = super::batch::per_cpu_array_sums(
            &self.cookie_events,
            cookie_event::COUNT,
            |a: u64, b| a + b,
        )
        .map_err(syscall_error(
            names::COOKIE_EVENTS,
            "batch reading",
            "bpf_map_lookup_batch",
        ))?;
        let mut out = [0u64; cookie_event::COUNT as usize];
        out.copy_from_slice(&sums);
        Ok(out)
    }

    /// Verified sources still in force at `now_coarse_ns`
    /// (`CLOCK_MONOTONIC_COARSE`, the clock the kernel stamps them with);
    /// expired entries linger until the LRU evicts them or the source
    /// verifies again, and are not counted.
    pub fn verified_sources(&self, now_coarse_ns: u64) -> Result<usize, MapError> {
        let expiries =
            super::batch::hash_values::<VerifiedKey, u64>(&self.verified_fd, VERIFIED_CHUNK)
                .map_err(batch_error)?;
        Ok(expiries
            .iter()
            .filter(|until| **until > now_coarse_ns)
            .count())
    }

    /// Verified entries held, expired or not: at most `MAX_VERIFIED`,
    /// the kernel's LRU evicting the least recently verified past it.
    pub fn verified_entries(&self) -> Result<usize, MapError> {
        super::batch::hash_values::<VerifiedKey, u64>(&self.verified_fd, VERIFIED_CHUNK)
            .map(|v| v.len())
            .map_err(batch_error)
    }

    /// Whether `key` is held (expired or not).
    pub fn is_verified_entry(&self, key: &VerifiedKey) -> bool {
        self.verified_until(key).is_some()
    }

    /// Until when (coarse clock ns) `key` is verified, if it is held.
    pub fn verified_until(&self, key: &VerifiedKey) -> Option<u64> {
        self.verified.get(key, 0).ok()
    }

    /// Marks `entries` verified until their expiry (coarse clock), as a
    /// valid cookie would, their filter bits too: benchmarks and tests
    /// fill the map this way. A filter word is read and written back, so
    /// a bit the kernel sets in between is lost (that source proves itself
    /// once more): not for a running host.
    pub fn remember_verified(
        &mut self,
        entries: impl IntoIterator<Item = (VerifiedKey, u64)>,
    ) -> Result<(), MapError> {
        let mut keys = Vec::new();
        for (key, until) in entries {
            self.verified
                .insert(key, until, 0)
                .map_err(op(names::VERIFIED, "inserting"))?;
            keys.push(key);
        }
        let words = filter_words(keys)
            .into_iter()
            .map(|(i, bits)| {
                let held = self
                    .verified_filter
                    .get(&i, 0)
                    .map_err(op(names::VERIFIED_FILTER, "reading"))?;
                Ok((i, held | bits))
            })
            .collect::<Result<Vec<_>, MapError>>()?;
        self.set_filter_words(words)
    }

    /// Forgets every verified source (cookies unconfigured: a later
    /// configuration starts from nobody verified), and clears the filter.
    /// Returns how many went.
    pub fn clear_verified(&mut self) -> Result<usize, MapError> {
        let keys: Vec<VerifiedKey> = self.verified.keys().filter_map(Result::ok).collect();
        for k in &keys {
            // Gone already (evicted, or the kernel replaced it): fine.
            let _ = self.verified.remove(k);
        }
        self.set_filter_words((0..VERIFIED_FILTER_WORDS).map(|i| (i, 0)))?;
        Ok(keys.len())
    }

    /// Rewrites the filter from the sources verified at `now_coarse_ns`,
    /// so bits of sources gone from `VERIFIED` or expired stop sending
    /// lookups there; returns how many bits are set. `fresh`: the filter
    /// is a new load's, all zero, and only the words with bits are
    /// written (a load adopts an earlier daemon's pinned `VERIFIED`);
    /// otherwise every word is. A source the kernel verifies between this
    /// read and the write of its word loses its bit and proves itself with
    /// a cookie once more.
    pub fn refresh_verified_filter(
        &mut self,
        now_coarse_ns: u64,
        fresh: bool,
    ) -> Result<u32, MapError> {
        let held =
            super::batch::hash_entries::<VerifiedKey, u64>(&self.verified_fd, VERIFIED_CHUNK)
                .map_err(batch_error)?;
        let words = filter_words(
            held.into_iter()
                .filter(|(_, until)| *until > now_coarse_ns)
                .map(|(key, _)| key),
        );
        let bits = words.values().map(|w| w.count_ones()).sum();
        if fresh {
            self.set_filter_words(words)?;
        } else {
            let all = (0..VERIFIED_FILTER_WORDS).map(|i| (i, words.get(&i).copied().unwrap_or(0)));
            self.set_filter_words(all)?;
        }
        Ok(bits)
    }

    /// Writes filter words, one store each, so a packet sees a word
    /// either before or after (a bit the kernel sets in between is lost;
    /// see the callers).
    fn set_filter_words(
        &mut self,
        words: impl IntoIterator<Item = (u32, u64)>,
    ) -> Result<(), MapError> {
        for (i, w) in words {
            self.verified_filter
                .set(i, w, 0)
                .map_err(op(names::VERIFIED_FILTER, "writing"))?;
        }
        Ok(())
    }
}

/// The filter words with the bits of `keys` set.
fn filter_words(keys: impl IntoIterator<Item = VerifiedKey>) -> BTreeMap<u32, u64> {
    let mut words = BTreeMap::new();
    for key in keys {
        let (word, bit) = key.filter_slot();
        *words.entry(word).or_insert(0u64) |= bit;
    }
    words
}

/// A failed batch read of `VERIFIED`.
fn batch_error(e: std::io::Error) -> MapError {
    syscall_error(names::VERIFIED, "batch reading", "bpf_map_lookup_batch")(e)
}
