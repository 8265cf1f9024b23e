//! The config file (`/etc/tollgate/tollgate.toml`): its schema, the units
//! it accepts, and the checks that turn it into a `Policy` and daemon
//! settings. Every error names the file, the line, the key and what is
//! expected; nothing is applied until the whole file checks out.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use monitor_common::{maps::DEFAULT_MAX_SOURCES, reason::Verdict};
use serde::{Deserialize, Deserializer, de};
use toml::Spanned;

use crate::{
    loader::AttachMode,
    policy::{Action, Limit, Policy, Rate, Rule},
    units,
};

pub const DEFAULT_PATH: &str = "/etc/tollgate/tollgate.toml";

/// Largest per-source rates accepted: far above what one source can send
/// through a 100G NIC, so anything larger is a typo.
const MAX_PPS: u64 = 1_000_000_000;
const MAX_BYTES_PER_SEC: u64 = 12_500_000_000;

/// A config error: where it is and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the whole file is at fault.
    pub line: usize,
    /// Dotted key path, e.g. `rule[2].cidr`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.is_empty()) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (l, true) => write!(f, "{}:{l}: {}", self.file, self.message),
            (l, false) => write!(f, "{}:{l}: {}: {}", self.file, self.key, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A number or a string with a unit, as TOML gives it.
#[derive(Debug, Clone)]
struct Quantity(String);

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
pub enum Mode {
    Enforce,
    Monitor,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RuleAction {
    Allow,
    Deny,
    Limit,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum MalformedVerdict {
    Drop,
    Pass,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum XdpMode {
    Native,
    Generic,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Redact {
    /// Addresses in logs as they are.
    #[default]
    None,
    /// Addresses cut to a prefix (`ipv4_prefix`, `ipv6_prefix`).
    Prefix,
    /// Addresses replaced by a keyed hash (`hash_key_file`).
    Hash,
}

/// Limit fields shared by `[default_limit]` and `limit` rules.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitFile {
    packets_per_second: Option<Spanned<Quantity>>,
    burst_packets: Option<Spanned<Quantity>>,
    bytes_per_second: Option<Spanned<Quantity>>,
    burst_bytes: Option<Spanned<Quantity>>,
    mode: Option<Mode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    cidr: Spanned<String>,
    action: RuleAction,
    comment: Option<String>,
    // The limit fields, as in `LimitFile` (serde's flatten would lose the
    // spans that error messages need).
    packets_per_second: Option<Spanned<Quantity>>,
    burst_packets: Option<Spanned<Quantity>>,
    bytes_per_second: Option<Spanned<Quantity>>,
    burst_bytes: Option<Spanned<Quantity>>,
    mode: Option<Mode>,
}

impl RuleFile {
    fn limit(&self) -> LimitFile {
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
struct SourcesFile {
    ipv4_prefix: Option<u8>,
    ipv6_prefix: Option<u8>,
    max_tracked: Option<u32>,
    scan_interval: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ManagementFile {
    #[serde(default)]
    cidrs: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    listen: Option<Spanned<String>>,
    top_talkers: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ControlFile {
    socket: Option<PathBuf>,
    group: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogFile {
    format: Option<LogFormat>,
    redact: Option<Redact>,
    ipv4_prefix: Option<u8>,
    ipv6_prefix: Option<u8>,
    hash_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DetectFile {
    mode: Option<Mode>,
    bogons: Option<Vec<Spanned<String>>>,
    flood_pps: Option<f64>,
    flood_bps: Option<f64>,
    syn_pps: Option<f64>,
    syn_ratio: Option<f64>,
    global_syn_pps: Option<f64>,
    scan_ports: Option<u32>,
    new_sources_per_second: Option<f64>,
    spike_sigma: Option<f64>,
    spike_floor_pps: Option<f64>,
    ban_ttls: Option<Vec<Spanned<String>>>,
    max_bans: Option<usize>,
    syn_limit_ttl: Option<Spanned<String>>,
    #[serde(default)]
    modes: DetectModesFile,
}

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
}

/// Anomaly detection and automatic response.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    /// `Monitor`: detect and log what would be done, change nothing.
    pub mode: Mode,
    pub thresholds: monitor_common::detect::Thresholds,
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
}

impl DetectConfig {
    /// The mode detector `d` runs in.
    pub fn mode_of(&self, d: monitor_common::detect::Detector) -> Mode {
        use monitor_common::detect::Detector as D;
        let m = &self.modes;
        match d {
            D::Flood => m.flood,
            D::SynFlood => m.syn_flood,
            D::GlobalSynFlood => m.global_syn_flood,
            D::PortScan => m.port_scan,
            D::SpoofedStorm => m.spoofed_storm,
            D::Spike => m.spike,
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

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StateFile {
    file: Option<PathBuf>,
    pin_dir: Option<PathBuf>,
    on_exit: Option<crate::pins::OnExit>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    interfaces: Spanned<Vec<String>>,
    attach_mode: Option<XdpMode>,
    interval: Option<Spanned<String>>,
    malformed: Option<MalformedVerdict>,
    #[serde(default)]
    sources: SourcesFile,
    #[serde(default)]
    default_limit: LimitFile,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleFile>,
    #[serde(default)]
    management: ManagementFile,
    #[serde(default)]
    metrics: MetricsFile,
    #[serde(default)]
    control: ControlFile,
    #[serde(default)]
    log: LogFile,
    #[serde(default)]
    state: StateFile,
    #[serde(default)]
    detect: DetectFile,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    pub redact: Redact,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub hash_key_file: Option<PathBuf>,
}

/// Where a rule came from, shown by `tollgate rules list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    Runtime,
}

/// A rule with its comment and origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleEntry {
    pub rule: Rule,
    pub comment: Option<String>,
    pub origin: Origin,
}

/// A checked config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    pub interfaces: Vec<String>,
    pub attach_mode: AttachMode,
    pub interval: Duration,
    pub malformed: Verdict,
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    pub max_sources: u32,
    /// How often the whole source table is walked (top talkers, tracked
    /// count); counters are read every `interval`.
    pub scan_interval: Duration,
    pub default_limit: Limit,
    pub default_monitor: bool,
    pub rules: Vec<RuleEntry>,
    /// The operator's own access: always allowed, never limited or banned.
    pub management: Vec<IpNet>,
    pub metrics_listen: SocketAddr,
    pub top_talkers: usize,
    pub socket: PathBuf,
    pub socket_group: Option<String>,
    pub log: LogConfig,
    pub state_file: PathBuf,
    /// Where the maps and links are pinned in bpffs (a versioned directory
    /// under it).
    pub pin_dir: PathBuf,
    pub on_exit: crate::pins::OnExit,
    pub detect: DetectConfig,
}

/// Offsets of line starts, to turn byte spans into line numbers.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|s| *s <= offset)
    }

    /// The key written on the line of `offset`, qualified by the table
    /// header above it (`sources.ipv4_prefix`).
    fn key_at(&self, offset: usize) -> String {
        let n = self.line(offset);
        let text = |i: usize| {
            let start = self.starts[i - 1];
            let end = self.starts.get(i).copied().unwrap_or(self.text.len());
            self.text[start..end].trim()
        };
        let here = text(n);
        let key = here.split('=').next().unwrap_or("").trim();
        let key = if here.contains('=') { key } else { "" };
        let table = (1..=n)
            .rev()
            .map(text)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
        match (table, key.is_empty()) {
            (Some(t), false) => format!("{t}.{key}"),
            (Some(t), true) => t,
            (None, _) => key.to_owned(),
        }
    }
}

struct Checker<'a> {
    file: String,
    lines: Lines<'a>,
}

impl Checker<'_> {
    fn err(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.lines.line(span.start),
            key: key.into(),
            message: message.into(),
        }
    }

    fn rate(
        &self,
        q: &Option<Spanned<Quantity>>,
        key: &str,
        parse: fn(&str) -> Result<u64, String>,
        max: Option<(u64, &str)>,
    ) -> Result<Option<(u64, Range<usize>)>, ConfigError> {
        let Some(q) = q else { return Ok(None) };
        let v = parse(&q.get_ref().0).map_err(|m| self.err(q.span(), key, m))?;
        if v == 0 {
            return Err(self.err(
                q.span(),
                key,
                "must be greater than zero; to drop everything from a CIDR, use a rule with action = \"deny\"",
            ));
        }
        if let Some((max, shown)) = max
            && v > max
        {
            return Err(self.err(
                q.span(),
                key,
                format!(
                    "`{}` is absurd for one source; at most {shown}",
                    q.get_ref().0
                ),
            ));
        }
        Ok(Some((v, q.span())))
    }

    fn limit(&self, l: &LimitFile, at: &str, span: Range<usize>) -> Result<Limit, ConfigError> {
        let key = |k: &str| {
            if at.is_empty() {
                k.to_owned()
            } else {
                format!("{at}.{k}")
            }
        };
        let pps = self.rate(
            &l.packets_per_second,
            &key("packets_per_second"),
            units::count,
            Some((MAX_PPS, "1G packets per second")),
        )?;
        let bpkt = self.rate(&l.burst_packets, &key("burst_packets"), units::count, None)?;
        let bps = self.rate(
            &l.bytes_per_second,
            &key("bytes_per_second"),
            units::bytes,
            Some((MAX_BYTES_PER_SEC, "100Gbit (12.5GB) per second")),
        )?;
        let bbytes = self.rate(&l.burst_bytes, &key("burst_bytes"), units::bytes, None)?;
        let pair = |rate: Option<(u64, Range<usize>)>,
                    burst: Option<(u64, Range<usize>)>,
                    rk: &str,
                    bk: &str|
         -> Result<Option<Rate>, ConfigError> {
            match (rate, burst) {
                (Some((per_sec, _)), Some((burst, _))) => Ok(Some(Rate { per_sec, burst })),
                (None, None) => Ok(None),
                (Some((_, s)), None) => Err(self.err(
                    s,
                    key(rk),
                    format!("needs `{bk}` too (the burst allowed above the rate)"),
                )),
                (None, Some((_, s))) => {
                    Err(self.err(s, key(bk), format!("needs `{rk}` too (the sustained rate)")))
                }
            }
        };
        let limit = Limit {
            packets: pair(pps, bpkt, "packets_per_second", "burst_packets")?,
            bytes: pair(bps, bbytes, "bytes_per_second", "burst_bytes")?,
        };
        if limit.packets.is_none() && limit.bytes.is_none() {
            return Err(self.err(
                span,
                at,
                "a limit needs packets_per_second and burst_packets, or bytes_per_second and burst_bytes",
            ));
        }
        Ok(limit)
    }

    fn cidr(&self, s: &Spanned<String>, key: &str) -> Result<IpNet, ConfigError> {
        let text = s.get_ref().trim();
        let net: IpNet = text
            .parse()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                self.err(
                    s.span(),
                    key,
                    format!("`{text}` is not a CIDR; write an address with a prefix length, e.g. 192.0.2.0/24 or 2001:db8::/48"),
                )
            })?;
        if net.trunc() != net {
            return Err(self.err(
                s.span(),
                key,
                format!(
                    "`{text}` has host bits set; write the network address, {}",
                    net.trunc()
                ),
            ));
        }
        Ok(net)
    }
}

/// Reads and checks `path`. `check_interfaces` also checks that every
/// interface exists on this host (not when validating a file for another
/// host).
pub fn load(path: &Path, check_interfaces: bool) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        key: String::new(),
        message: format!("cannot read the config: {e}; the default location is {DEFAULT_PATH}, or pass --config FILE"),
    })?;
    parse(path, &text, check_interfaces)
}

/// Checks config `text` read from `path`.
pub fn parse(path: &Path, text: &str, check_interfaces: bool) -> Result<Config, ConfigError> {
    let c = Checker {
        file: path.display().to_string(),
        lines: Lines::new(text),
    };
    let f: File = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_owned();
        let key = c.lines.key_at(span.start);
        ConfigError {
            file: c.file.clone(),
            line: if e.span().is_some() {
                c.lines.line(span.start)
            } else {
                0
            },
            key,
            message,
        }
    })?;

    if f.interfaces.get_ref().is_empty() {
        return Err(c.err(
            f.interfaces.span(),
            "interfaces",
            "lists no interface; name at least one, e.g. interfaces = [\"eth0\"]",
        ));
    }
    let mut seen_if = HashMap::new();
    for name in f.interfaces.get_ref() {
        if seen_if.insert(name.clone(), ()).is_some() {
            return Err(c.err(
                f.interfaces.span(),
                "interfaces",
                format!("`{name}` is listed twice"),
            ));
        }
        if check_interfaces && crate::loader::ifindex(name) == 0 {
            return Err(c.err(
                f.interfaces.span(),
                "interfaces",
                format!("no interface `{name}` on this host; `ip link` lists the ones there are"),
            ));
        }
    }
    let interval = match &f.interval {
        Some(s) => {
            let d = units::duration(s.get_ref()).map_err(|m| c.err(s.span(), "interval", m))?;
            if d < Duration::from_millis(100) || d > Duration::from_secs(60) {
                return Err(c.err(s.span(), "interval", "must be between 100ms and 60s"));
            }
            d
        }
        // Half a second: a flood is judged (and banned) within one interval
        // of its first packet, so within a second; reading the counters
        // twice a second costs well under 1% of a core.
        None => Duration::from_millis(500),
    };
    let v4_prefix = f.sources.ipv4_prefix.unwrap_or(32);
    let v6_prefix = f.sources.ipv6_prefix.unwrap_or(64);
    if v4_prefix > 32 {
        return Err(c.err(
            0..0,
            "sources.ipv4_prefix",
            format!("{v4_prefix} is longer than an IPv4 address; at most 32"),
        ));
    }
    if v6_prefix > 128 {
        return Err(c.err(
            0..0,
            "sources.ipv6_prefix",
            format!("{v6_prefix} is longer than an IPv6 address; at most 128"),
        ));
    }
    let max_sources = f.sources.max_tracked.unwrap_or(DEFAULT_MAX_SOURCES);
    if !(1024..=64 << 20).contains(&max_sources) {
        return Err(c.err(
            0..0,
            "sources.max_tracked",
            format!("{max_sources} is out of range; between 1024 and 67108864"),
        ));
    }

    let scan_interval = match &f.sources.scan_interval {
        Some(s) => {
            let d = units::duration(s.get_ref())
                .map_err(|m| c.err(s.span(), "sources.scan_interval", m))?;
            if d < interval || d > Duration::from_secs(3600) {
                return Err(c.err(
                    s.span(),
                    "sources.scan_interval",
                    "must be between `interval` and 1h",
                ));
            }
            d
        }
        None => Duration::from_secs(1).max(interval),
    };
    let default_given = f.default_limit.packets_per_second.is_some()
        || f.default_limit.bytes_per_second.is_some()
        || f.default_limit.burst_packets.is_some()
        || f.default_limit.burst_bytes.is_some();
    let default_limit = if default_given {
        c.limit(&f.default_limit, "default_limit", 0..0)?
    } else {
        Limit::DEFAULT
    };

    let mut rules = Vec::new();
    let mut first_at: HashMap<IpNet, usize> = HashMap::new();
    for (i, r) in f.rules.iter().enumerate() {
        let at = format!("rule[{}]", i + 1);
        let net = c.cidr(&r.cidr, &format!("{at}.cidr"))?;
        if let Some(line) = first_at.get(&net) {
            return Err(c.err(
                r.cidr.span(),
                format!("{at}.cidr"),
                format!("{net} already has a rule (line {line}); merge the two"),
            ));
        }
        first_at.insert(net, c.lines.line(r.cidr.span().start));
        let limit = r.limit();
        let has_limit = limit.packets_per_second.is_some()
            || limit.bytes_per_second.is_some()
            || limit.burst_packets.is_some()
            || limit.burst_bytes.is_some();
        let action = match r.action {
            RuleAction::Allow | RuleAction::Deny if has_limit => {
                return Err(c.err(
                    r.cidr.span(),
                    &at,
                    "only action = \"limit\" takes rates and bursts; remove them or change the action",
                ));
            }
            RuleAction::Allow => Action::Allow,
            RuleAction::Deny => Action::Deny,
            RuleAction::Limit => Action::Limit(c.limit(&limit, &at, r.cidr.span())?),
        };
        rules.push(RuleEntry {
            rule: Rule {
                net,
                action,
                monitor: r.mode == Some(Mode::Monitor),
            },
            comment: r.comment.clone(),
            origin: Origin::Config,
        });
    }

    let mut management = Vec::new();
    for (i, m) in f.management.cidrs.iter().enumerate() {
        management.push(c.cidr(m, &format!("management.cidrs[{}]", i + 1))?);
    }
    // The lockout guard applies to the config's own rules too.
    for (i, r) in f.rules.iter().enumerate() {
        let entry = &rules[i];
        if let Err(m) = guard_rule(&management, &entry.rule) {
            return Err(c.err(r.cidr.span(), format!("rule[{}].cidr", i + 1), m));
        }
    }

    let metrics_listen = match &f.metrics.listen {
        Some(s) => s.get_ref().parse().map_err(|_| {
            c.err(
                s.span(),
                "metrics.listen",
                format!(
                    "`{}` is not an address and port, e.g. 127.0.0.1:9640",
                    s.get_ref()
                ),
            )
        })?,
        None => SocketAddr::from(([127, 0, 0, 1], 9640)),
    };
    let top_talkers = f.metrics.top_talkers.unwrap_or(10);
    if top_talkers > 100 {
        return Err(c.err(
            0..0,
            "metrics.top_talkers",
            format!("{top_talkers} would make too many series; at most 100"),
        ));
    }
    let log = LogConfig {
        format: f.log.format.unwrap_or_default(),
        redact: f.log.redact.unwrap_or_default(),
        ipv4_prefix: f.log.ipv4_prefix.unwrap_or(24).min(32),
        ipv6_prefix: f.log.ipv6_prefix.unwrap_or(48).min(128),
        hash_key_file: f.log.hash_key_file.clone(),
    };
    if log.redact == Redact::Hash && log.hash_key_file.is_none() {
        return Err(c.err(0..0, "log.hash_key_file", "redact = \"hash\" needs a key file (32 random bytes, e.g. `head -c32 /dev/urandom`) so hashes cannot be reversed by guessing"));
    }
    let d = &f.detect;
    let defaults = monitor_common::detect::Thresholds::default();
    let mut bogons = Vec::new();
    match &d.bogons {
        Some(list) => {
            for (i, b) in list.iter().enumerate() {
                bogons.push(c.cidr(b, &format!("detect.bogons[{}]", i + 1))?);
            }
        }
        None => bogons.extend(
            DEFAULT_BOGONS
                .iter()
                .map(|b| b.parse::<IpNet>().expect("valid default")),
        ),
    }
    let mut ban_ttls = Vec::new();
    match &d.ban_ttls {
        Some(list) => {
            for (i, t) in list.iter().enumerate() {
                let key = format!("detect.ban_ttls[{}]", i + 1);
                let v = units::duration(t.get_ref()).map_err(|m| c.err(t.span(), &key, m))?;
                if v.is_zero() || v > Duration::from_secs(30 * 86_400) {
                    return Err(c.err(t.span(), key, "between 1s and 30d"));
                }
                ban_ttls.push(v);
            }
            if ban_ttls.is_empty() {
                return Err(c.err(
                    0..0,
                    "detect.ban_ttls",
                    "needs at least one duration, e.g. [\"1m\", \"10m\", \"1h\"]",
                ));
            }
        }
        None => ban_ttls.extend([60, 600, 3600].map(Duration::from_secs)),
    }
    let positive = |v: Option<f64>, key: &str, default: f64| -> Result<f64, ConfigError> {
        match v {
            Some(x) if x > 0.0 && x.is_finite() => Ok(x),
            Some(x) => Err(c.err(
                0..0,
                format!("detect.{key}"),
                format!("{x} must be a positive number"),
            )),
            None => Ok(default),
        }
    };
    let syn_limit_ttl = match &d.syn_limit_ttl {
        Some(t) => {
            let v = units::duration(t.get_ref())
                .map_err(|m| c.err(t.span(), "detect.syn_limit_ttl", m))?;
            if v.is_zero() || v > Duration::from_secs(86_400) {
                return Err(c.err(t.span(), "detect.syn_limit_ttl", "between 1s and 1d"));
            }
            v
        }
        None => Duration::from_secs(60),
    };
    let thresholds = monitor_common::detect::Thresholds {
        flood_pps: positive(d.flood_pps, "flood_pps", defaults.flood_pps)?,
        flood_bps: positive(d.flood_bps, "flood_bps", defaults.flood_bps)?,
        syn_pps: positive(d.syn_pps, "syn_pps", defaults.syn_pps)?,
        syn_ratio: positive(d.syn_ratio, "syn_ratio", defaults.syn_ratio)?,
        global_syn_pps: positive(d.global_syn_pps, "global_syn_pps", defaults.global_syn_pps)?,
        scan_ports: d.scan_ports.unwrap_or(defaults.scan_ports).max(2),
        new_sources_per_sec: positive(
            d.new_sources_per_second,
            "new_sources_per_second",
            defaults.new_sources_per_sec,
        )?,
        spike_sigma: positive(d.spike_sigma, "spike_sigma", defaults.spike_sigma)?,
        spike_floor_pps: positive(
            d.spike_floor_pps,
            "spike_floor_pps",
            defaults.spike_floor_pps,
        )?,
    };
    let detect = DetectConfig {
        mode: d.mode.unwrap_or(Mode::Enforce),
        thresholds,
        bogons,
        ban_ttls,
        max_bans: d.max_bans.unwrap_or(10_000),
        modes: d.modes,
        syn_limit_ttl,
    };
    Ok(Config {
        detect,
        path: path.to_owned(),
        interfaces: f.interfaces.into_inner(),
        attach_mode: match f.attach_mode {
            Some(XdpMode::Generic) => AttachMode::Generic,
            _ => AttachMode::Native,
        },
        interval,
        malformed: match f.malformed {
            Some(MalformedVerdict::Pass) => Verdict::Pass,
            _ => Verdict::Drop,
        },
        v4_prefix,
        v6_prefix,
        max_sources,
        scan_interval,
        default_limit,
        default_monitor: f.default_limit.mode == Some(Mode::Monitor),
        rules,
        management,
        metrics_listen,
        top_talkers,
        socket: f
            .control
            .socket
            .unwrap_or_else(|| PathBuf::from("/run/tollgate/control.sock")),
        socket_group: f.control.group,
        log,
        state_file: f
            .state
            .file
            .unwrap_or_else(|| PathBuf::from("/var/lib/tollgate/state.json")),
        pin_dir: f
            .state
            .pin_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR)),
        on_exit: f.state.on_exit.unwrap_or(crate::pins::OnExit::Keep),
    })
}

/// Default `state.pin_dir`.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/tollgate";

pub use crate::policy::{guard_ban, guard_rule};

impl Config {
    /// The kernel policy: management CIDRs first as allow rules (so the
    /// longest match can never turn them into a deny inside them: such
    /// rules are refused anyway), then the config's rules, then `runtime`
    /// rules, which shadow a config rule on the same CIDR (`tollgate limit
    /// set --cidr` on a configured rule).
    pub fn policy(&self, runtime: &[RuleEntry]) -> Policy {
        let mut rules: Vec<Rule> = self
            .management
            .iter()
            .map(|m| Rule::new(*m, Action::Allow))
            .collect();
        let listed: std::collections::HashSet<IpNet> = rules.iter().map(|r| r.net).collect();
        let shadowed: std::collections::HashSet<IpNet> =
            runtime.iter().map(|e| e.rule.net).collect();
        rules.extend(
            self.rules
                .iter()
                .filter(|e| !shadowed.contains(&e.rule.net))
                .chain(runtime)
                .filter(|e| !listed.contains(&e.rule.net))
                .map(|e| e.rule.clone()),
        );
        Policy {
            default: self.default_limit,
            rules,
            v4_prefix: self.v4_prefix,
            v6_prefix: self.v6_prefix,
            malformed: self.malformed,
            default_monitor: self.default_monitor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
interfaces = ["lo"]
[default_limit]
packets_per_second = "1k"
burst_packets = 2000
"#;

    fn check(text: &str) -> Result<Config, String> {
        parse(Path::new("t.toml"), text, false).map_err(|e| e.to_string())
    }

    #[test]
    fn the_example_config_checks_out() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/tollgate.toml");
        let c = load(&path, false).expect("etc/tollgate.toml");
        assert_eq!(c.rules.len(), 3);
        assert_eq!(
            c.management,
            vec!["203.0.113.0/28".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            c.default_limit.bytes,
            Some(Rate {
                per_sec: 10_000_000,
                burst: 2_000_000
            })
        );
        assert!(c.rules[2].rule.monitor);
        c.policy(&[]).compile().expect("compiles");
    }

    #[test]
    fn minimal_config_has_defaults() {
        let c = check(GOOD).unwrap();
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9640");
        assert_eq!(c.socket, PathBuf::from("/run/tollgate/control.sock"));
        assert_eq!(
            c.default_limit.packets,
            Some(Rate {
                per_sec: 1000,
                burst: 2000
            })
        );
    }

    /// Each broken file, with the exact error an operator sees.
    #[test]
    fn broken_files_are_refused_with_the_place_and_the_fix() {
        let cases: &[(&str, &str)] = &[
            (
                "interfaces = \"eth0\"\n",
                "t.toml:1: interfaces: invalid type: string \"eth0\", expected a sequence",
            ),
            (
                "interfaces = [\"lo\"]\nintervall = \"1s\"\n",
                "t.toml:2: intervall: unknown field `intervall`, expected one of `interfaces`, `attach_mode`, `interval`, `malformed`, `sources`, `default_limit`, `rule`, `management`, `metrics`, `control`, `log`, `state`, `detect`",
            ),
            (
                "interfaces = [\"lo\"]\n[sources]\nipv4_prefix = \"wide\"\n",
                "t.toml:3: sources.ipv4_prefix: invalid type: string \"wide\", expected u8",
            ),
            (
                "interfaces = [\"lo\"]\n[[rule]]\ncidr = \"192.0.2.300/24\"\naction = \"deny\"\n",
                "t.toml:3: rule[1].cidr: `192.0.2.300/24` is not a CIDR; write an address with a prefix length, e.g. 192.0.2.0/24 or 2001:db8::/48",
            ),
            (
                "interfaces = [\"lo\"]\n[[rule]]\ncidr = \"192.0.2.7/24\"\naction = \"deny\"\n",
                "t.toml:3: rule[1].cidr: `192.0.2.7/24` has host bits set; write the network address, 192.0.2.0/24",
            ),
            (
                "interfaces = [\"lo\"]\n[[rule]]\ncidr = \"192.0.2.0/24\"\naction = \"deny\"\n[[rule]]\ncidr = \"192.0.2.0/24\"\naction = \"allow\"\n",
                "t.toml:6: rule[2].cidr: 192.0.2.0/24 already has a rule (line 3); merge the two",
            ),
            (
                "interfaces = [\"lo\"]\n[default_limit]\npackets_per_second = 0\nburst_packets = 10\n",
                "t.toml:3: default_limit.packets_per_second: must be greater than zero; to drop everything from a CIDR, use a rule with action = \"deny\"",
            ),
            (
                "interfaces = [\"lo\"]\n[default_limit]\npackets_per_second = \"5G\"\nburst_packets = 10\n",
                "t.toml:3: default_limit.packets_per_second: `5G` is absurd for one source; at most 1G packets per second",
            ),
            (
                "interfaces = [\"lo\"]\n[default_limit]\nbytes_per_second = \"1Tbit\"\nburst_bytes = \"1MB\"\n",
                "t.toml:3: default_limit.bytes_per_second: `1Tbit` is not a size; write bytes with B, KB, MB, GB (or KiB, MiB, GiB), or bits with bit, kbit, Mbit, Gbit (e.g. `5MB`, `100Mbit`)",
            ),
            (
                "interfaces = [\"lo\"]\n[default_limit]\npackets_per_second = \"1k\"\n",
                "t.toml:3: default_limit.packets_per_second: needs `burst_packets` too (the burst allowed above the rate)",
            ),
            (
                "interfaces = [\"lo\"]\n[[rule]]\ncidr = \"192.0.2.0/24\"\naction = \"block\"\n",
                "t.toml:4: rule.action: unknown variant `block`, expected one of `allow`, `deny`, `limit`",
            ),
            (
                "interfaces = [\"lo\"]\n[[rule]]\ncidr = \"192.0.2.0/24\"\naction = \"deny\"\npackets_per_second = 5\nburst_packets = 5\n",
                "t.toml:3: rule[1]: only action = \"limit\" takes rates and bursts; remove them or change the action",
            ),
            (
                "interfaces = [\"lo\"]\n[detect.modes]\nflod = \"monitor\"\n",
                "t.toml:3: detect.modes.flod: unknown field `flod`, expected one of `flood`, `syn_flood`, `global_syn_flood`, `port_scan`, `spoofed_storm`, `spike`",
            ),
            (
                "interfaces = [\"lo\"]\n[state]\non_exit = \"stay\"\n",
                "t.toml:3: state.on_exit: unknown variant `stay`, expected `keep` or `detach`",
            ),
            (
                "interfaces = [\"lo\"]\ninterval = \"soon\"\n",
                "t.toml:2: interval: `soon` is not a duration; write a number with ms, s, m, h or d (e.g. `30s`, `10m`)",
            ),
            (
                "interfaces = [\"lo\"]\n[management]\ncidrs = [\"203.0.113.0/24\"]\n[[rule]]\ncidr = \"203.0.113.128/25\"\naction = \"deny\"\n",
                "t.toml:5: rule[1].cidr: 203.0.113.128/25 would deny the management network 203.0.113.0/24 (the operator's own access); management CIDRs are always allowed, so narrow the rule to leave 203.0.113.0/24 out",
            ),
            (
                "interfaces = []\n",
                "t.toml:1: interfaces: lists no interface; name at least one, e.g. interfaces = [\"eth0\"]",
            ),
            ("", "t.toml:1: missing field `interfaces`"),
            (
                "interfaces = [\"lo\"]\n[metrics]\nlisten = \"localhost\"\n",
                "t.toml:3: metrics.listen: `localhost` is not an address and port, e.g. 127.0.0.1:9640",
            ),
            (
                "interfaces = [\"lo\"\n",
                "t.toml:1: interfaces: unclosed array, expected `]`",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(check(text).unwrap_err(), *want, "for:\n{text}");
        }
    }

    #[test]
    fn unknown_interfaces_are_refused_when_asked() {
        let text = "interfaces = [\"lo\", \"tg-no-such0\"]\n";
        assert_eq!(
            parse(Path::new("t.toml"), text, true)
                .unwrap_err()
                .to_string(),
            "t.toml:1: interfaces: no interface `tg-no-such0` on this host; `ip link` lists the ones there are"
        );
        assert!(parse(Path::new("t.toml"), text, false).is_ok());
    }

    #[test]
    fn management_is_allowed_first_and_guards_bans() {
        let c =
            check("interfaces = [\"lo\"]\n[management]\ncidrs = [\"203.0.113.0/24\"]\n").unwrap();
        let p = c.policy(&[]);
        assert_eq!(
            p.rules[0],
            Rule::new("203.0.113.0/24".parse().unwrap(), Action::Allow)
        );
        assert!(guard_ban(&c.management, &"203.0.113.7/32".parse().unwrap()).is_err());
        assert!(guard_ban(&c.management, &"0.0.0.0/0".parse().unwrap()).is_err());
        assert!(guard_ban(&c.management, &"198.51.100.0/24".parse().unwrap()).is_ok());
    }
}
