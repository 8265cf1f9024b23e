//! What the daemon's detectors and responses change in the kernel: the
//! bogon ranges, the hot list of sources over their limit, the host-wide
//! SYN limit and the destination-port window.

use ipnet::IpNet;
use monitor_common::{bucket::BucketParams, maps as names, types::SourceKey};

use super::{
    MapError, Maps, op,
    trie::{clear_trie, lpm_v4, lpm_v6},
};

impl Maps {
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
    /// limit on new TCP connections, starting from a full bucket. Sources
    /// first seen before `known_before_s` (seconds on the bucket clock)
    /// that have completed a handshake are exempt.
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

    /// Starts or ends a storm's answer in the kernel: never-seen sources
    /// on probation (`maps::PROBATION`), and sources first seen since the
    /// storm began on their prefix's unproven budget (`prefix`). A storm
    /// that goes on keeps its start, so the sources first seen before it
    /// stay proven.
    pub fn set_storm(&mut self, on: bool) -> Result<(), MapError> {
        let since = self.runtime_config()?.storm_since_ns;
        self.set_storm_since(match (on, since) {
            (false, _) => 0,
            (true, 0) => crate::clock::coarse_ns().max(1),
            (true, since) => since,
        })
    }

    /// The storm's start, on the program's clock (coarse ns; the replay
    /// clock for the replay program), or 0 to end it.
    pub fn set_storm_since(&mut self, since_ns: u64) -> Result<(), MapError> {
        let mut cfg = self.runtime_config()?;
        cfg.storm_since_ns = since_ns;
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
}
