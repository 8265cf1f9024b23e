//! The SYN-cookie maps: the protected-port bitmap, the cookie settings in
//! the runtime config, the per-CPU cookie counters and the verified
//! sources (`monitor_common::syncookie`).

use monitor_common::{
    maps as names,
    syncookie::{CookieParams, PORT_WORDS, VerifiedKey, cookie_event, port_slot},
};

use super::{MapError, Maps, op, syscall_error};

/// The cookie counters summed over CPUs, indexed by `cookie_event::*`.
pub type CookieEvents = [u64; cookie_event::COUNT as usize];

impl Maps {
    /// Makes `ports` (and only them) the protected ports.
    pub fn set_cookie_ports(&mut self, ports: &[u16]) -> Result<(), MapError> {
        let mut words = vec![0u64; PORT_WORDS as usize];
        for &p in ports {
            let (w, bit) = port_slot(p);
            words[w as usize] |= bit;
        }
        for (i, w) in words.iter().enumerate() {
            let old = self
                .cookie_ports
                .get(&(i as u32), 0)
                .map_err(op(names::COOKIE_PORTS, "reading"))?;
            if old != *w {
                self.cookie_ports
                    .set(i as u32, *w, 0)
                    .map_err(op(names::COOKIE_PORTS, "writing"))?;
            }
        }
        Ok(())
    }

    /// The protected ports, as the kernel holds them.
    pub fn cookie_ports(&self) -> Result<Vec<u16>, MapError> {
        let mut out = Vec::new();
        for i in 0..PORT_WORDS {
            let w = self
                .cookie_ports
                .get(&i, 0)
                .map_err(op(names::COOKIE_PORTS, "reading"))?;
            out.extend(
                (0..64)
                    .filter(|b| w & (1 << b) != 0)
                    .map(|b| (i * 64 + b) as u16),
            );
        }
        Ok(out)
    }

    /// Writes the cookie settings into the runtime config (the rest of it
    /// unchanged).
    pub fn set_cookie_params(&mut self, params: CookieParams) -> Result<(), MapError> {
        let mut cfg = self.runtime_config()?;
        cfg.cookie = params;
        self.set_runtime_config(&cfg)
    }

    /// The cookie counters, summed over CPUs.
    pub fn cookie_events(&self) -> Result<CookieEvents, MapError> {
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
        let mut out = CookieEvents::default();
        out.copy_from_slice(&sums);
        Ok(out)
    }

    /// Sources verified now (entries whose expiry, on the kernel's coarse
    /// monotonic clock, is still ahead).
    pub fn verified_count(&self) -> Result<u64, MapError> {
        let now = crate::clock::coarse_ns();
        let mut n = 0;
        for entry in self.verified.iter() {
            let (_, until) = entry.map_err(op(names::VERIFIED, "reading"))?;
            if until > now {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Forgets every verified source (cookies unconfigured).
    pub fn clear_verified(&mut self) -> Result<(), MapError> {
        let keys: Vec<VerifiedKey> = self
            .verified
            .keys()
            .collect::<Result<_, _>>()
            .map_err(op(names::VERIFIED, "listing"))?;
        for k in keys {
            // Gone already (expired and evicted) is fine.
            let _ = self.verified.remove(&k);
        }
        Ok(())
    }
}
