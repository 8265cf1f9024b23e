//! One typed reply per control request, serialized by the daemon and
//! read back by the CLI: a field renamed on one side fails to compile
//! instead of printing `null`. The JSON of each is what `--json` prints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    events::Event,
    policy::{Action, Limit, Origin, action_name},
    snapshot::Talker,
};

/// `status`: what the daemon runs and what it has seen.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub interfaces: Vec<String>,
    pub attach_mode: String,
    pub uptime_seconds: u64,
    pub policy_generation: u32,
    pub rules: RuleCounts,
    pub bans_active: usize,
    pub sources: SourceCounts,
    pub packets: ByVerdict,
    pub bytes: ByVerdict,
    /// Packets by reason, every reason listed.
    pub by_reason: BTreeMap<String, u64>,
    /// Packets dropped, by reason (reasons with drops only).
    #[serde(default)]
    pub dropped_by_reason: BTreeMap<String, u64>,
    pub last_read_ms: f64,
    /// SYN cookies; absent when `[syn_cookies]` is not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_cookies: Option<CookieStatus>,
    /// The CrowdSec Local API link, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<CrowdSecStatus>,
}

/// `status`: SYN cookies answered from XDP.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CookieStatus {
    /// In force now: `off`, `watch` (SYNs go to the socket as usual) or
    /// `on` (answered from XDP).
    pub mode: String,
    /// As configured: `always` or `under_attack`.
    pub configured: String,
    pub ports: Vec<u16>,
    /// SYN-ACKs sent from XDP.
    pub sent: u64,
    /// Cookie ACKs from unverified sources, valid and invalid.
    pub acks_valid: u64,
    pub acks_invalid: u64,
    /// SYNs passed to the stack because their source is verified.
    pub verified_syns: u64,
    /// SYNs the program could not answer (dropped; the client sends again).
    pub failures: u64,
    /// Sources verified now.
    pub verified_sources: usize,
    /// Mode changes since the daemon started.
    pub mode_changes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleCounts {
    pub config: usize,
    pub runtime: usize,
    pub management: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceCounts {
    pub tracked: usize,
    pub capacity: u32,
    pub evicted: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ByVerdict {
    pub pass: u64,
    pub drop: u64,
    pub monitor: u64,
    /// Answered from XDP (a SYN cookie's SYN-ACK sent back, `Verdict::Tx`).
    #[serde(default)]
    pub tx: u64,
}

/// `top`: the sources with the most packets, bytes or drops.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Top {
    pub by: String,
    pub sources: Vec<Talker>,
}

/// A limit's numbers (`None`: that unit is not limited).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LimitNumbers {
    pub packets_per_second: Option<u64>,
    pub burst_packets: Option<u64>,
    pub bytes_per_second: Option<u64>,
    pub burst_bytes: Option<u64>,
}

impl From<&Limit> for LimitNumbers {
    fn from(l: &Limit) -> Self {
        Self {
            packets_per_second: l.packets.map(|r| r.per_sec),
            burst_packets: l.packets.map(|r| r.burst),
            bytes_per_second: l.bytes.map(|r| r.per_sec),
            burst_bytes: l.bytes.map(|r| r.burst),
        }
    }
}

/// The default limit in force.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DefaultLimit {
    pub limit: LimitNumbers,
    pub monitor: bool,
    pub origin: Origin,
}

/// One rule in force.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleLine {
    pub cidr: String,
    pub action: String,
    /// The limit of a `limit` rule.
    pub limit: Option<LimitNumbers>,
    pub monitor: bool,
    pub comment: Option<String>,
    pub origin: Origin,
}

impl RuleLine {
    pub fn new(rule: &crate::policy::Rule, comment: Option<String>, origin: Origin) -> Self {
        Self {
            cidr: rule.net.to_string(),
            action: action_name(&rule.action).into(),
            limit: match &rule.action {
                Action::Limit(l) => Some(l.into()),
                _ => None,
            },
            monitor: rule.monitor,
            comment,
            origin,
        }
    }
}

/// `rules list` (every rule) and `limit show` (the limit rules).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rules {
    pub default: DefaultLimit,
    pub rules: Vec<RuleLine>,
}

/// `limit set` and `limit reset`: the limit now in force (`cidr` `None`:
/// the default limit).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LimitChanged {
    pub cidr: Option<String>,
    pub limit: LimitNumbers,
    pub monitor: bool,
    pub origin: Origin,
}

/// `rules add` and `rules remove`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleChanged {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
}

/// `ban add`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Banned {
    pub banned: String,
    pub ttl_seconds: u64,
}

/// `ban remove`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unbanned {
    pub unbanned: String,
}

/// One ban in force.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BanLine {
    pub cidr: String,
    pub remaining_seconds: u64,
    pub reason: Option<String>,
    /// Who placed it: `cli`, `detector`, `crowdsec`, `kernel`.
    #[serde(default)]
    pub origin: String,
    /// The scenario behind it (a detector's `tollgate/<name>`, CrowdSec's).
    #[serde(default)]
    pub scenario: Option<String>,
}

/// `ban list`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bans {
    pub bans: Vec<BanLine>,
}

/// `reload`: what was read, and what the reload did not change.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reloaded {
    pub reloaded: String,
    pub rules: usize,
    /// Runtime changes that still override the file (say so, and how to
    /// drop them), and settings that change only on restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// `events`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Events {
    pub events: Vec<Event>,
}

/// `explain`: what applies to one address now, and what its next packet
/// would get.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Explanation {
    pub address: String,
    /// The source it is counted under (`sources.ipv4_prefix`,
    /// `ipv6_prefix`).
    pub source: String,
    /// The rule in force on it (the longest prefix holding it); none: the
    /// default limit.
    pub rule: Option<RuleLine>,
    /// The limit its buckets follow (none under an allow or deny rule).
    pub limit: Option<LimitNumbers>,
    /// Its rule (or the default limit) only counts what it would drop.
    pub monitor: bool,
    /// The ban covering it (the longest prefix), if any.
    pub ban: Option<BanLine>,
    /// Its counters and bucket levels, if the kernel tracks its source.
    pub tracked: Option<TrackedSource>,
    /// With SYN cookies configured: whether it has returned a valid cookie
    /// and is still verified.
    pub cookie_verified: Option<bool>,
    /// The latest events about its source or ban still in the history
    /// (at most `EXPLAIN_EVENTS`, oldest first).
    pub events: Vec<Event>,
    pub next_packet: NextPacket,
}

/// Events `explain` shows.
pub const EXPLAIN_EVENTS: usize = 5;

/// A tracked source's counters and bucket levels.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrackedSource {
    pub packets: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub syns: u64,
    pub first_seen_seconds_ago: u64,
    pub last_seen_seconds_ago: u64,
    /// Packets its bucket holds now, of `burst_packets` (none: no packet
    /// limit).
    pub packet_tokens: Option<u64>,
    pub burst_packets: Option<u64>,
    /// Bytes its bucket holds now, of `burst_bytes` (none: no byte limit).
    pub byte_tokens: Option<u64>,
    pub burst_bytes: Option<u64>,
}

/// What the address's next packet would get, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NextPacket {
    pub verdict: String,
    pub reason: String,
    pub why: String,
}

/// The CrowdSec part of `status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CrowdSecStatus {
    pub url: String,
    /// The last pull succeeded.
    pub up: bool,
    /// Unix seconds of the last successful pull (0: none yet).
    pub last_success_unix: f64,
    /// Whole lists pulled (the first, after outages, each resync).
    #[serde(default)]
    pub whole_lists: u64,
    /// Usage metrics: `unknown` (not tried yet), `sent`, `unsupported`
    /// (the LAPI has no such endpoint).
    pub usage: String,
    /// Whether detector bans are reported as alerts.
    pub reporting: bool,
    /// What became of the decisions pulled, by action.
    pub decisions: BTreeMap<String, u64>,
}

/// `detect show`: each detector's mode and thresholds, what the detectors
/// learned, and what they last read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DetectState {
    pub detectors: Vec<DetectorLine>,
    pub learned: LearnedLine,
    /// The last interval's host-wide rates (none before the second
    /// interval).
    pub readings: Option<Readings>,
    /// Automatic bans in force, and the cap (`detect.max_bans`).
    pub bans_active: usize,
    pub max_bans: usize,
    /// The answers in force: the host-wide SYN limit, a storm's probation.
    pub syn_limit_active: bool,
    pub storm_answer_active: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DetectorLine {
    pub name: String,
    /// `enforce` (bans and limits) or `monitor` (logs only).
    pub mode: String,
    pub thresholds: Vec<ThresholdLine>,
    /// Findings since the state file began.
    pub detections: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThresholdLine {
    /// The `[detect]` key, as `detect set` takes it.
    pub key: String,
    pub value: f64,
    /// `config` (the file or the default) or `runtime` (`detect set`).
    pub origin: Origin,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LearnedLine {
    pub packets_per_second_mean: f64,
    pub packets_per_second_stddev: f64,
    pub new_sources_per_second_mean: f64,
    pub new_sources_per_second_stddev: f64,
    pub syn_per_second_mean: f64,
    pub typical_source_pps: f64,
    /// Intervals left before the baselines are trusted (0: trusted).
    pub warmup_intervals_left: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Readings {
    pub packets_per_second: f64,
    pub syn_per_second: f64,
    pub new_sources_per_second: f64,
    pub bogon_sources_per_second: f64,
    pub prefix_refusals_per_second: f64,
}

/// `detect set` and `detect reset`: the threshold now in force.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThresholdChanged {
    pub key: String,
    pub value: f64,
    pub origin: Origin,
}
