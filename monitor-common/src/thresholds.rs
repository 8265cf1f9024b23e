//! The detectors' thresholds by name: the `[detect]` key of each, the
//! detector it belongs to, and reading or changing one (checked as the
//! config checks it), for `tollgate detect show`, `set` and `reset`.

use crate::detect::{Detector, Thresholds};

/// Every threshold: its `[detect]` key and the detector that uses it.
pub const KEYS: [(&str, Detector); 9] = [
    ("flood_pps", Detector::Flood),
    ("flood_bps", Detector::Flood),
    ("syn_pps", Detector::SynFlood),
    ("syn_ratio", Detector::SynFlood),
    ("global_syn_pps", Detector::GlobalSynFlood),
    ("scan_ports", Detector::PortScan),
    ("new_sources_per_second", Detector::SpoofedStorm),
    ("spike_sigma", Detector::Spike),
    ("spike_floor_pps", Detector::Spike),
];

/// Why a threshold was not changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdError {
    /// No threshold of that name (`KEYS` lists them).
    UnknownKey,
    /// Zero, negative, or not a number.
    NotPositive,
    /// `scan_ports` below 2 or not a whole number: a scan touches at least
    /// two ports.
    BadPortCount,
}

impl Thresholds {
    /// The value of `key`, if it names a threshold.
    pub fn get(&self, key: &str) -> Option<f64> {
        Some(match key {
            "flood_pps" => self.flood_pps,
            "flood_bps" => self.flood_bps,
            "syn_pps" => self.syn_pps,
            "syn_ratio" => self.syn_ratio,
            "global_syn_pps" => self.global_syn_pps,
            "scan_ports" => self.scan_ports as f64,
            "new_sources_per_second" => self.new_sources_per_sec,
            "spike_sigma" => self.spike_sigma,
            "spike_floor_pps" => self.spike_floor_pps,
            _ => return None,
        })
    }

    /// Sets `key` to `v`, checked; on an error nothing changes.
    pub fn set(&mut self, key: &str, v: f64) -> Result<(), ThresholdError> {
        if !(v > 0.0 && v.is_finite()) {
            return Err(if self.get(key).is_some() {
                ThresholdError::NotPositive
            } else {
                ThresholdError::UnknownKey
            });
        }
        let slot = match key {
            "flood_pps" => &mut self.flood_pps,
            "flood_bps" => &mut self.flood_bps,
            "syn_pps" => &mut self.syn_pps,
            "syn_ratio" => &mut self.syn_ratio,
            "global_syn_pps" => &mut self.global_syn_pps,
            "scan_ports" => {
                if v < 2.0 || v != (v as u32) as f64 {
                    return Err(ThresholdError::BadPortCount);
                }
                self.scan_ports = v as u32;
                return Ok(());
            }
            "new_sources_per_second" => &mut self.new_sources_per_sec,
            "spike_sigma" => &mut self.spike_sigma,
            "spike_floor_pps" => &mut self.spike_floor_pps,
            _ => return Err(ThresholdError::UnknownKey),
        };
        *slot = v;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_reads_and_writes_its_own_threshold() {
        for (i, (key, _)) in KEYS.iter().enumerate() {
            let mut t = Thresholds::default();
            let v = 1000.0 + i as f64;
            t.set(key, v).unwrap();
            assert_eq!(t.get(key), Some(v), "{key}");
            for (other, _) in KEYS.iter().filter(|(k, _)| k != key) {
                assert_eq!(
                    t.get(other),
                    Thresholds::default().get(other),
                    "{key} left {other}"
                );
            }
        }
    }

    #[test]
    fn bad_values_change_nothing() {
        let mut t = Thresholds::default();
        assert_eq!(t.set("flood_pps", 0.0), Err(ThresholdError::NotPositive));
        assert_eq!(
            t.set("flood_pps", f64::NAN),
            Err(ThresholdError::NotPositive)
        );
        assert_eq!(t.set("scan_ports", 1.0), Err(ThresholdError::BadPortCount));
        assert_eq!(t.set("scan_ports", 2.5), Err(ThresholdError::BadPortCount));
        assert_eq!(t.set("floods", 5.0), Err(ThresholdError::UnknownKey));
        assert_eq!(t, Thresholds::default());
    }
}
