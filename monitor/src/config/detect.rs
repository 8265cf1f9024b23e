//! `[detect]`: anomaly detection and the automatic response (bans, the
//! host-wide SYN limit). The settings the detectors run with
//! (`DetectConfig`), the per-detector modes, the default bogon list, and
//! the checks of the section. Ban lengths go through the shared
//! `policy::ban_ttl`, so a ban written here obeys the same bounds as one
//! asked for on the CLI.

use std::time::Duration;

use ipnet::IpNet;
use monitor_common::detect::{Detector, Thresholds};
use serde::Deserialize;
use toml::Spanned;

use super::{
    Mode,
    located::{Checker, ConfigError},
    schema::DetectFile,
};

/// `[detect.modes]`: a mode per detector, overriding `detect.mode`.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DetectModesFile {
    pub flood: Option<Mode>,
    pub syn_flood: Option<Mode>,
    pub global_syn_flood: Option<Mode>,
    pub port_scan: Option<Mode>,
    pub spoofed_storm: Option<Mode>,
    pub spike: Option<Mode>,
    pub prefix_storm: Option<Mode>,
}

/// Anomaly detection and automatic response.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    /// `Monitor`: detect and log what would be done, change nothing.
    pub mode: Mode,
    pub thresholds: Thresholds,
    /// Source ranges that are never valid on the wire; new sources from
    /// them count as spoofing signs.
    pub bogons: Vec<IpNet>,
    /// Ban lengths for a source's first, second, third... offence.
    pub ban_ttls: Vec<Duration>,
    /// Automatic bans in force at most.
    pub max_bans: usize,
    /// Per-detector modes (`[detect.modes]`); unset ones follow `mode`.
    pub modes: DetectModesFile,
    /// How long the host-wide SYN limit set against a spoofed SYN flood
    /// lasts (renewed while the flood goes on).
    pub syn_limit_ttl: Duration,
    /// How long a storm's answer (probation, the prefixes' unproven
    /// budgets, under-attack cookies) lasts after its last finding.
    pub storm_ttl: Duration,
}

impl DetectConfig {
    /// The mode detector `d` runs in.
    pub fn mode_of(&self, d: Detector) -> Mode {
        let m = &self.modes;
        match d {
            Detector::Flood => m.flood,
            Detector::SynFlood => m.syn_flood,
            Detector::GlobalSynFlood => m.global_syn_flood,
            Detector::PortScan => m.port_scan,
            Detector::SpoofedStorm => m.spoofed_storm,
            Detector::Spike => m.spike,
            Detector::PrefixStorm => m.prefix_storm,
        }
        .unwrap_or(self.mode)
    }
}

/// Sources no packet can carry: "this network", loopback, multicast,
/// reserved and broadcast; IPv4-mapped and discard-only IPv6. Private and
/// documentation ranges are left out: behind a load balancer or in a lab
/// they are real clients (add them in `detect.bogons` on an
/// internet-facing host).
pub const DEFAULT_BOGONS: &[&str] = &[
    "0.0.0.0/8",
    "127.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "100::/64",
    "ff00::/8",
];

/// The `[detect]` section, checked.
pub(super) fn detect(c: &Checker, d: &DetectFile) -> Result<DetectConfig, ConfigError> {
    let bogons = bogons(c, d.bogons.as_deref())?;
    let ban_ttls = ban_ttls(c, d.ban_ttls.as_ref())?;
    let day = (Duration::from_secs(1), Duration::from_secs(86_400));
    let syn_limit_ttl = c.duration(
        d.syn_limit_ttl.as_ref(),
        "detect.syn_limit_ttl",
        day,
        "between 1s and 1d",
        Duration::from_secs(60),
    )?;
    let storm_ttl = c.duration(
        d.storm_ttl.as_ref(),
        "detect.storm_ttl",
        day,
        "between 1s and 1d",
        Duration::from_secs(30),
    )?;
    Ok(DetectConfig {
        mode: d.mode.unwrap_or(Mode::Enforce),
        thresholds: thresholds(c, d)?,
        bogons,
        ban_ttls,
        max_bans: d.max_bans.unwrap_or(10_000),
        modes: d.modes,
        syn_limit_ttl,
        storm_ttl,
    })
}

/// `detect.bogons`, or `DEFAULT_BOGONS` when absent (an empty list turns
/// the bogon sign off).
fn bogons(c: &Checker, list: Option<&[Spanned<String>]>) -> Result<Vec<IpNet>, ConfigError> {
    match list {
        Some(list) => {
            let nets = list
                .iter()
                .enumerate()
                .map(|(i, b)| c.cidr(b, &format!("detect.bogons[{}]", i + 1)))
                .collect::<Result<Vec<IpNet>, _>>()?;
            // Each family's trie holds MAX_BOGONS ranges: more would pass
            // this check and fail at start or reload.
            let max = monitor_common::maps::MAX_BOGONS as usize;
            for (family, v4) in [("IPv4", true), ("IPv6", false)] {
                let over = nets
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| matches!(n, IpNet::V4(_)) == v4)
                    .nth(max);
                if let Some((i, _)) = over {
                    return Err(c.err(
                        list[i].span(),
                        format!("detect.bogons[{}]", i + 1),
                        format!("more than {max} {family} ranges; the kernel holds at most {max} per family: merge neighbouring ranges"),
                    ));
                }
            }
            Ok(nets)
        }
        None => Ok(DEFAULT_BOGONS
            .iter()
            .map(|b| b.parse::<IpNet>().expect("valid default"))
            .collect()),
    }
}

/// `detect.ban_ttls`: one length per offence, each by `policy::ban_ttl`.
fn ban_ttls(
    c: &Checker,
    list: Option<&Spanned<Vec<Spanned<String>>>>,
) -> Result<Vec<Duration>, ConfigError> {
    let Some(list) = list else {
        return Ok([60, 600, 3600].map(Duration::from_secs).to_vec());
    };
    if list.get_ref().is_empty() {
        return Err(c.err(
            list.span(),
            "detect.ban_ttls",
            "needs at least one duration, e.g. [\"1m\", \"10m\", \"1h\"]",
        ));
    }
    list.get_ref()
        .iter()
        .enumerate()
        .map(|(i, t)| c.ban_ttl(t, &format!("detect.ban_ttls[{}]", i + 1)))
        .collect()
}

/// The detectors' thresholds: each written one a positive number.
fn thresholds(c: &Checker, d: &DetectFile) -> Result<Thresholds, ConfigError> {
    let defaults = Thresholds::default();
    let positive = |v: &Option<Spanned<f64>>, key: &str, default: f64| {
        c.number(v, &format!("detect.{key}"), default, |x| {
            if x > 0.0 && x.is_finite() {
                Ok(())
            } else {
                Err(format!("{x} must be a positive number"))
            }
        })
    };
    Ok(Thresholds {
        flood_pps: positive(&d.flood_pps, "flood_pps", defaults.flood_pps)?,
        flood_bps: positive(&d.flood_bps, "flood_bps", defaults.flood_bps)?,
        syn_pps: positive(&d.syn_pps, "syn_pps", defaults.syn_pps)?,
        syn_ratio: positive(&d.syn_ratio, "syn_ratio", defaults.syn_ratio)?,
        global_syn_pps: positive(&d.global_syn_pps, "global_syn_pps", defaults.global_syn_pps)?,
        // A scan touches at least two ports; fewer would call every
        // connection a scan.
        scan_ports: d.scan_ports.unwrap_or(defaults.scan_ports).max(2),
        new_sources_per_sec: positive(
            &d.new_sources_per_second,
            "new_sources_per_second",
            defaults.new_sources_per_sec,
        )?,
        spike_sigma: positive(&d.spike_sigma, "spike_sigma", defaults.spike_sigma)?,
        spike_floor_pps: positive(
            &d.spike_floor_pps,
            "spike_floor_pps",
            defaults.spike_floor_pps,
        )?,
    })
}
