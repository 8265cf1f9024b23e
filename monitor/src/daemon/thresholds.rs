//! The detectors' thresholds changed at run time (`tollgate detect set`,
//! `reset`): kept over the config file's, saved in the state file, and
//! shown as `runtime` by `detect show`, the way `limit set` works for
//! limits. A reload keeps them; `detect reset` goes back to the file's.

use std::collections::BTreeMap;

use monitor_common::{
    detect::{Detector, Thresholds},
    thresholds::{KEYS, ThresholdError},
};

use super::Daemon;
use crate::{
    clock::coarse_ns,
    config::Mode,
    control::replies::{
        DetectState, DetectorLine, LearnedLine, Readings, ThresholdChanged, ThresholdLine,
    },
    events::event,
    policy::Origin,
};

/// Runtime overrides of the config's thresholds, by `[detect]` key.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Overrides(pub BTreeMap<String, f64>);

impl Overrides {
    /// The config's thresholds with the overrides applied.
    pub fn apply(&self, base: &Thresholds) -> Thresholds {
        let mut t = *base;
        for (k, v) in &self.0 {
            // Checked when set or restored.
            let _ = t.set(k, *v);
        }
        t
    }

    /// Overrides read back from the state file; those no longer valid are
    /// dropped, with a note each.
    pub fn restore(saved: &BTreeMap<String, f64>) -> (Self, Vec<String>) {
        let mut out = Self::default();
        let mut notes = Vec::new();
        for (k, v) in saved {
            match Thresholds::default().set(k, *v) {
                Ok(()) => {
                    out.0.insert(k.clone(), *v);
                }
                Err(e) => notes.push(format!(
                    "the saved threshold {k} = {v} was dropped: {}",
                    why(k, *v, e)
                )),
            }
        }
        (out, notes)
    }
}

fn why(key: &str, v: f64, e: ThresholdError) -> String {
    match e {
        ThresholdError::UnknownKey => format!(
            "no threshold is called {key}; one of {}",
            KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        ),
        ThresholdError::NotPositive => format!("{key} {v}: give a positive number"),
        ThresholdError::BadPortCount => {
            format!("{key} {v}: give a whole number of ports, at least 2")
        }
    }
}

impl Daemon {
    /// The thresholds in force: the config's, with runtime overrides.
    pub(super) fn thresholds(&self) -> Thresholds {
        self.overrides.apply(&self.config.detect.thresholds)
    }

    pub(super) fn detect_show(&self) -> DetectState {
        let t = self.thresholds();
        let detections = self.respond.detections();
        // The detectors in force, as `Detector::ALL` lists them.
        let detectors = Detector::ALL
            .iter()
            .map(|d| DetectorLine {
                name: d.name().into(),
                mode: match self.config.detect.mode_of(*d) {
                    Mode::Enforce => "enforce",
                    Mode::Monitor => "monitor",
                }
                .into(),
                thresholds: KEYS
                    .iter()
                    .filter(|(_, of)| of == d)
                    .map(|(k, _)| ThresholdLine {
                        key: (*k).into(),
                        value: t.get(k).unwrap_or_default(),
                        origin: if self.overrides.0.contains_key(*k) {
                            Origin::Runtime
                        } else {
                            Origin::Config
                        },
                    })
                    .collect(),
                detections: detections.get(d.name()).copied().unwrap_or(0),
            })
            .collect();
        let l = self.detect.learned();
        DetectState {
            detectors,
            learned: LearnedLine {
                packets_per_second_mean: l.pps.0,
                packets_per_second_stddev: l.pps.1,
                new_sources_per_second_mean: l.new_sources.0,
                new_sources_per_second_stddev: l.new_sources.1,
                syn_per_second_mean: l.syns,
                typical_source_pps: l.typical_source_pps,
                warmup_intervals_left: l.warmup_left,
            },
            readings: l.last.map(|r| Readings {
                packets_per_second: r[0],
                syn_per_second: r[1],
                new_sources_per_second: r[2],
                bogon_sources_per_second: r[3],
                prefix_refusals_per_second: r[4],
            }),
            bans_active: self.bans.active(coarse_ns()),
            max_bans: self.config.detect.max_bans,
            syn_limit_active: self.respond.syn_limited(),
            storm_answer_active: self.respond.storm(),
        }
    }

    pub(super) fn detect_set(
        &mut self,
        key: &str,
        value: &str,
        actor: &str,
    ) -> Result<ThresholdChanged, String> {
        let v: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{key} {value}: not a number; give a plain number, e.g. 20000"))?;
        let mut t = self.thresholds();
        t.set(key, v).map_err(|e| why(key, v, e))?;
        let before = self.overrides.clone();
        self.overrides.0.insert(key.to_owned(), v);
        if let Err(e) = self.save() {
            self.overrides = before;
            return Err(e);
        }
        self.threshold_event("threshold_set", key, v, actor);
        Ok(ThresholdChanged {
            key: key.to_owned(),
            value: v,
            origin: Origin::Runtime,
        })
    }

    /// Back to the config's value of `key`, or of every threshold.
    pub(super) fn detect_reset(
        &mut self,
        key: Option<&str>,
        actor: &str,
    ) -> Result<Vec<ThresholdChanged>, String> {
        let keys: Vec<String> = match key {
            Some(k) if Thresholds::default().get(k).is_none() => {
                return Err(why(k, 0.0, ThresholdError::UnknownKey));
            }
            Some(k) => vec![k.to_owned()],
            None => self.overrides.0.keys().cloned().collect(),
        };
        let before = self.overrides.clone();
        for k in &keys {
            self.overrides.0.remove(k);
        }
        if let Err(e) = self.save() {
            self.overrides = before;
            return Err(e);
        }
        let t = self.thresholds();
        let mut out = Vec::new();
        for k in keys {
            let v = t.get(&k).unwrap_or_default();
            self.threshold_event("threshold_reset", &k, v, actor);
            out.push(ThresholdChanged {
                key: k,
                value: v,
                origin: Origin::Config,
            });
        }
        Ok(out)
    }

    fn threshold_event(&mut self, kind: &'static str, key: &str, v: f64, actor: &str) {
        let message = match kind {
            "threshold_reset" => format!("{key} is the config file's again"),
            _ => format!("{key} changed at run time"),
        };
        self.events.push(
            event(kind, None, "applied", message)
                .by(actor)
                .value(key, v),
        );
    }
}
