//! The config file as written: one serde struct per table, nothing
//! checked yet. Every value a check may refuse is kept `Spanned`, so the
//! error can name its line; serde's `flatten` would lose those spans,
//! which is why `[[rule]]` repeats the limit fields instead of embedding
//! `LimitFile`. A new key goes here first, then into the section that
//! checks it (`limits`, `settings` or `detect`).

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Deserializer, de};
use toml::Spanned;

use super::{LogFormat, Mode, Redact, detect::DetectModesFile};
use crate::policy::LimitField;

/// A number or a string with a unit, as TOML gives it: `2000` and
/// `"2k"` both reach the shared parser as text, so an integer goes
/// through the same unit rules (`bytes_per_second = 80` is refused like
/// `"80"`).
#[derive(Debug, Clone)]
pub(super) struct Quantity(pub(super) String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, or a string with a unit such as \"10k\" or \"5MB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                if v < 0 {
                    return Err(E::custom(format!("{v} is negative")));
                }
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum RuleAction {
    Allow,
    Deny,
    Limit,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum MalformedVerdict {
    Drop,
    Pass,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum XdpMode {
    Native,
    Generic,
}

/// Limit fields shared by `[default_limit]` and `limit` rules.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitFile {
    pub(super) packets_per_second: Option<Spanned<Quantity>>,
    pub(super) burst_packets: Option<Spanned<Quantity>>,
    pub(super) bytes_per_second: Option<Spanned<Quantity>>,
    pub(super) burst_bytes: Option<Spanned<Quantity>>,
    pub(super) mode: Option<Mode>,
}

impl LimitFile {
    /// The field the shared limit parser calls `f`.
    pub(super) fn get(&self, f: LimitField) -> Option<&Spanned<Quantity>> {
        match f {
            LimitField::PacketsPerSecond => self.packets_per_second.as_ref(),
            LimitField::BurstPackets => self.burst_packets.as_ref(),
            LimitField::BytesPerSecond => self.bytes_per_second.as_ref(),
            LimitField::BurstBytes => self.burst_bytes.as_ref(),
        }
    }

    /// Whether no number is written (a `mode` alone is not a limit).
    pub(super) fn is_empty(&self) -> bool {
        LimitField::ALL.iter().all(|f| self.get(*f).is_none())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub(super) cidr: Spanned<String>,
    pub(super) action: RuleAction,
    pub(super) comment: Option<String>,
    // The limit fields, as in `LimitFile` (see the module doc).
    packets_per_second: Option<Spanned<Quantity>>,
    burst_packets: Option<Spanned<Quantity>>,
    bytes_per_second: Option<Spanned<Quantity>>,
    burst_bytes: Option<Spanned<Quantity>>,
    pub(super) mode: Option<Mode>,
}

impl RuleFile {
    pub(super) fn limit(&self) -> LimitFile {
        LimitFile {
            packets_per_second: self.packets_per_second.clone(),
            burst_packets: self.burst_packets.clone(),
            bytes_per_second: self.bytes_per_second.clone(),
            burst_bytes: self.burst_bytes.clone(),
            mode: self.mode,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SourcesFile {
    pub(super) ipv4_prefix: Option<Spanned<u8>>,
    pub(super) ipv6_prefix: Option<Spanned<u8>>,
    pub(super) max_tracked: Option<Spanned<u32>>,
    pub(super) scan_interval: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ManagementFile {
    #[serde(default)]
    pub(super) cidrs: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsFile {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) top_talkers: Option<Spanned<usize>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ControlFile {
    pub(super) socket: Option<PathBuf>,
    pub(super) group: Option<Spanned<String>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
    pub(super) max_clients: Option<Spanned<usize>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LogFile {
    pub(super) format: Option<LogFormat>,
    pub(super) redact: Option<Spanned<Redact>>,
    pub(super) ipv4_prefix: Option<Spanned<u8>>,
    pub(super) ipv6_prefix: Option<Spanned<u8>>,
    pub(super) hash_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct DetectFile {
    pub(super) mode: Option<Mode>,
    pub(super) bogons: Option<Vec<Spanned<String>>>,
    pub(super) flood_pps: Option<Spanned<f64>>,
    pub(super) flood_bps: Option<Spanned<f64>>,
    pub(super) syn_pps: Option<Spanned<f64>>,
    pub(super) syn_ratio: Option<Spanned<f64>>,
    pub(super) global_syn_pps: Option<Spanned<f64>>,
    pub(super) scan_ports: Option<u32>,
    pub(super) new_sources_per_second: Option<Spanned<f64>>,
    pub(super) spike_sigma: Option<Spanned<f64>>,
    pub(super) spike_floor_pps: Option<Spanned<f64>>,
    pub(super) ban_ttls: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) max_bans: Option<usize>,
    pub(super) syn_limit_ttl: Option<Spanned<String>>,
    pub(super) storm_ttl: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) modes: DetectModesFile,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct StateFile {
    pub(super) file: Option<PathBuf>,
    pub(super) pin_dir: Option<PathBuf>,
    pub(super) on_exit: Option<crate::pins::OnExit>,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) interfaces: Spanned<Vec<String>>,
    pub(super) attach_mode: Option<XdpMode>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) malformed: Option<MalformedVerdict>,
    #[serde(default)]
    pub(super) sources: SourcesFile,
    #[serde(default)]
    pub(super) default_limit: LimitFile,
    #[serde(default, rename = "rule")]
    pub(super) rules: Vec<RuleFile>,
    #[serde(default)]
    pub(super) management: ManagementFile,
    #[serde(default)]
    pub(super) metrics: MetricsFile,
    #[serde(default)]
    pub(super) control: ControlFile,
    #[serde(default)]
    pub(super) log: LogFile,
    #[serde(default)]
    pub(super) state: StateFile,
    #[serde(default)]
    pub(super) detect: DetectFile,
    pub(super) syn_cookies: Option<Spanned<super::cookies::SynCookiesFile>>,
    pub(super) prefix_limit: Option<super::prefixes::PrefixLimitFile>,
    pub(super) crowdsec: Option<Spanned<super::crowdsec::CrowdSecFile>>,
}
