//! The config file (`/etc/tollgate/tollgate.toml`): what it gives the
//! daemon (`Config`), and `load`/`parse`, the one path that checks it for
//! `run`, `reload` and `check-config` alike. Every error names the file,
//! the line, the key and what is expected; nothing is applied until the
//! whole file checks out.
//!
//! Where things are:
//! - `schema`: the file as written (serde structs, with spans);
//! - `located`: `ConfigError`, lines and keys, and the wrappers that run
//!   the shared parsers of `policy` (CIDRs, limits, ban lengths) on
//!   spanned values;
//! - `limits`: `[default_limit]`, `[[rule]]`, `[management]`;
//! - `settings`: interfaces, timing, `[sources]`, `[metrics]`,
//!   `[control]`, `[log]`, `[state]`;
//! - `detect`: `[detect]`;
//! - `cookies`: `[syn_cookies]`.

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use monitor_common::reason::Verdict;
use serde::Deserialize;

use crate::{
    loader::AttachMode,
    policy::{Action, Limit, Policy, Rule},
};

mod cookies;
mod crowdsec;
mod detect;
mod limits;
mod located;
mod prefixes;
mod schema;
mod settings;

pub use cookies::{CookieMode, SynCookies};
pub use crowdsec::CrowdSec;
pub use detect::{DEFAULT_BOGONS, DetectConfig, DetectModesFile};
use located::Checker;
pub use located::ConfigError;
use schema::{File, MalformedVerdict, XdpMode};
pub use settings::ClientLimits;

pub const DEFAULT_PATH: &str = "/etc/tollgate/tollgate.toml";

/// Default `state.pin_dir`.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/tollgate";

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Monitor,
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

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    pub redact: Redact,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub hash_key_file: Option<PathBuf>,
}

pub use crate::policy::Origin;

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
    /// `[prefix_limit]`; None: the budgets follow the default limit.
    pub prefix_limit: Option<crate::policy::PrefixLimit>,
    pub rules: Vec<RuleEntry>,
    /// The operator's own access: always allowed, never limited or banned.
    pub management: Vec<IpNet>,
    pub metrics_listen: SocketAddr,
    pub top_talkers: usize,
    pub socket: PathBuf,
    pub socket_group: Option<String>,
    /// `control.idle_timeout`, `control.max_clients`.
    pub control_limits: ClientLimits,
    pub log: LogConfig,
    pub state_file: PathBuf,
    /// Where the maps and links are pinned in bpffs (a versioned directory
    /// under it).
    pub pin_dir: PathBuf,
    pub on_exit: crate::pins::OnExit,
    pub detect: DetectConfig,
    /// `[syn_cookies]`; `None`: off.
    pub syn_cookies: Option<SynCookies>,
    /// `[crowdsec]`; `None`: no Local API.
    pub crowdsec: Option<CrowdSec>,
}

/// Reads and checks `path` (see `parse`).
pub fn load(path: &Path, check_host: bool) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        key: String::new(),
        message: format!("cannot read the config: {e}; the default location is {DEFAULT_PATH}, or pass --config FILE"),
    })?;
    parse(path, &text, check_host)
}

/// Checks config `text` read from `path`: everything `run` and `reload`
/// would refuse is refused here, with its line, so `check-config` passing
/// means the daemon takes the file. `check_host` also checks what must
/// exist on this host: every interface, and the control socket's group
/// (off when validating a file for another host). Bursts are always
/// checked against this host's kernel clock tick.
pub fn parse(path: &Path, text: &str, check_host: bool) -> Result<Config, ConfigError> {
    let c = Checker::new(path, text, crate::clock::coarse_tick_ns());
    let f: File = toml::from_str(text).map_err(|e| c.toml(&e))?;
    let interfaces = settings::interfaces(&c, &f.interfaces, check_host)?;
    let interval = settings::interval(&c, f.interval.as_ref())?;
    let sources = settings::sources(&c, &f.sources, interval)?;
    let (default_limit, default_monitor) = limits::default_limit(&c, &f.default_limit)?;
    let prefix_limit = prefixes::prefix_limit(
        &c,
        f.prefix_limit.as_ref(),
        &sources,
        (&default_limit, default_monitor),
    )?;
    let rules = limits::rules(&c, &f.rules)?;
    let management = limits::management(&c, &f.management, &f.rules, &rules)?;
    let (metrics_listen, top_talkers) = settings::metrics(&c, &f.metrics)?;
    let control = settings::control(&c, &f.control, check_host)?;
    let log = settings::log(&c, &f.log)?;
    let detect = detect::detect(&c, &f.detect)?;
    let syn_cookies = cookies::syn_cookies(&c, f.syn_cookies.as_ref())?;
    let crowdsec = crowdsec::crowdsec(&c, f.crowdsec.as_ref())?;
    let (state_file, pin_dir, on_exit) = settings::state(&f.state);
    let config = Config {
        path: path.to_owned(),
        interfaces,
        attach_mode: match f.attach_mode {
            Some(XdpMode::Generic) => AttachMode::Generic,
            _ => AttachMode::Native,
        },
        interval,
        malformed: match f.malformed {
            Some(MalformedVerdict::Pass) => Verdict::Pass,
            _ => Verdict::Drop,
        },
        v4_prefix: sources.v4_prefix,
        v6_prefix: sources.v6_prefix,
        max_sources: sources.max_sources,
        scan_interval: sources.scan_interval,
        default_limit,
        default_monitor,
        prefix_limit,
        rules,
        management,
        metrics_listen,
        top_talkers,
        socket: control.socket,
        socket_group: control.group,
        control_limits: control.limits,
        log,
        state_file,
        pin_dir,
        on_exit,
        detect,
        syn_cookies,
        crowdsec,
    };
    limits::fits_the_kernel(&c, &config, &f.management, &f.rules)?;
    Ok(config)
}

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
        let listed: HashSet<IpNet> = rules.iter().map(|r| r.net).collect();
        let shadowed: HashSet<IpNet> = runtime.iter().map(|e| e.rule.net).collect();
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
            prefix: self.prefix_limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Rate, guard_ban};

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
    fn a_crowdsec_section_is_read_with_its_defaults() {
        let c = check(
            "interfaces = [\"lo\"]\n[crowdsec]\nurl = \"http://203.0.113.1:8080/\"\nbouncer_key_file = \"/etc/k\"\nmachine_id = \"api-1\"\nmachine_password_file = \"/etc/pw\"\n",
        )
        .unwrap();
        let cs = c.crowdsec.unwrap();
        assert_eq!(cs.url, "http://203.0.113.1:8080", "no trailing slash");
        assert_eq!(cs.poll_interval, Duration::from_secs(2));
        assert_eq!(cs.resync_interval, Duration::from_secs(60));
        assert_eq!(cs.machine, Some(("api-1".into(), "/etc/pw".into())));
        assert!(check("interfaces = [\"lo\"]\n").unwrap().crowdsec.is_none());
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
    const BROKEN_FILES: &[(&str, &str)] = &[
        (
            "interfaces = [\"lo\"]\n[crowdsec]\nurl = \"127.0.0.1:8080\"\nbouncer_key_file = \"/k\"\n",
            "t.toml:3: crowdsec.url: \"127.0.0.1:8080\" is not a Local API URL; write e.g. \"http://127.0.0.1:8080\"",
        ),
        (
            "interfaces = [\"lo\"]\n[crowdsec]\nurl = \"http://127.0.0.1:8080\"\nbouncer_key_file = \"/k\"\npoll_interval = \"50ms\"\n",
            "t.toml:5: crowdsec.poll_interval: between 200ms and 10m",
        ),
        (
            "interfaces = [\"lo\"]\n[crowdsec]\nurl = \"http://127.0.0.1:8080\"\nbouncer_key_file = \"/k\"\npoll_interval = \"5s\"\nresync_interval = \"1s\"\n",
            "t.toml:6: crowdsec.resync_interval: between poll_interval (5s) and 1h: the whole list comes instead of a poll",
        ),
        (
            "interfaces = [\"lo\"]\n[crowdsec]\nurl = \"http://127.0.0.1:8080\"\nbouncer_key_file = \"/k\"\nmachine_id = \"a\"\n",
            "t.toml:5: crowdsec.machine_id: reporting alerts needs machine_password_file too (the password `cscli machines add` set)",
        ),
        (
            "interfaces = [\"lo\"]\n[crowdsec]\nurl = \"http://127.0.0.1:8080\"\n",
            "t.toml:2: crowdsec: missing field `bouncer_key_file`",
        ),
        (
            "interfaces = \"eth0\"\n",
            "t.toml:1: interfaces: invalid type: string \"eth0\", expected a sequence",
        ),
        (
            "interfaces = [\"lo\"]\nintervall = \"1s\"\n",
            "t.toml:2: intervall: unknown field `intervall`, expected one of `interfaces`, `attach_mode`, `interval`, `malformed`, `sources`, `default_limit`, `rule`, `management`, `metrics`, `control`, `log`, `state`, `detect`, `syn_cookies`, `prefix_limit`, `crowdsec`",
        ),
        (
            "interfaces = [\"lo\"]\n[sources]\nipv4_prefix = \"wide\"\n",
            "t.toml:3: sources.ipv4_prefix: invalid type: string \"wide\", expected u8",
        ),
        (
            "interfaces = [\"lo\"]\n[[rule]]\ncidr = \"192.0.2.300/24\"\naction = \"deny\"\n",
            "t.toml:3: rule[1].cidr: `192.0.2.300/24` is not an address or CIDR; write an address, or a network with its prefix length, e.g. 192.0.2.7, 192.0.2.0/24 or 2001:db8::/48",
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
            "t.toml:3: default_limit.packets_per_second: must be greater than zero; to drop everything from a CIDR, use a deny rule",
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
            "t.toml:3: detect.modes.flod: unknown field `flod`, expected one of `flood`, `syn_flood`, `global_syn_flood`, `port_scan`, `spoofed_storm`, `spike`, `prefix_storm`",
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
            "t.toml:5: rule[1].cidr: 203.0.113.128/25 is inside the management network 203.0.113.0/24 (the operator's own access), which is always allowed, so a rule cannot deny it; to deny 203.0.113.128/25, take it out of [management] in the config first",
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
        (
            "interfaces = [\"lo\"]\n[sources]\nipv4_prefix = 33\n",
            "t.toml:3: sources.ipv4_prefix: 33 is longer than an IPv4 address; at most 32",
        ),
        (
            "interfaces = [\"lo\"]\n[sources]\nipv4_prefix = 24\nipv6_prefix = 129\n",
            "t.toml:4: sources.ipv6_prefix: 129 is longer than an IPv6 address; at most 128",
        ),
        (
            "interfaces = [\"lo\"]\n[sources]\n\nmax_tracked = 10\n",
            "t.toml:4: sources.max_tracked: 10 is out of range; between 1024 and 67108864",
        ),
        (
            "interfaces = [\"lo\"]\n[metrics]\ntop_talkers = 500\n",
            "t.toml:3: metrics.top_talkers: 500 would make too many series; at most 100",
        ),
        (
            "interfaces = [\"lo\"]\n[log]\nredact = \"prefix\"\nipv4_prefix = 40\n",
            "t.toml:4: log.ipv4_prefix: 40 is longer than an IPv4 address; at most 32",
        ),
        (
            "interfaces = [\"lo\"]\n[log]\nformat = \"json\"\nredact = \"hash\"\n",
            "t.toml:4: log.hash_key_file: redact = \"hash\" needs a key file (32 random bytes, e.g. `head -c32 /dev/urandom`) so hashes cannot be reversed by guessing",
        ),
        (
            "interfaces = [\"lo\"]\n[detect]\nmode = \"monitor\"\nsyn_ratio = -0.5\n",
            "t.toml:4: detect.syn_ratio: -0.5 must be a positive number",
        ),
        (
            "interfaces = [\"lo\"]\n[default_limit]\nbytes_per_second = \"80\"\nburst_bytes = \"2MB\"\n",
            "t.toml:3: default_limit.bytes_per_second: `80` has no unit; a byte rate needs one: bytes with B, KB, MB, GB (or KiB, MiB, GiB), or bits with bit, kbit, Mbit, Gbit (e.g. `80B` or `80Mbit`)",
        ),
        (
            "interfaces = [\"lo\"]\n[[rule]]\ncidr = \"192.0.2.0/24\"\naction = \"limit\"\nbytes_per_second = 80\nburst_bytes = 2000000\n",
            "t.toml:5: rule[1].bytes_per_second: `80` has no unit; a byte rate needs one: bytes with B, KB, MB, GB (or KiB, MiB, GiB), or bits with bit, kbit, Mbit, Gbit (e.g. `80B` or `80Mbit`)",
        ),
        (
            "interfaces = [\"lo\"]\n[[rule]]\ncidr = \"192.0.2.0/24\"\naction = \"limit\"\nmode = \"monitor\"\n",
            "t.toml:3: rule[1]: a limit needs packets_per_second and burst_packets, or bytes_per_second and burst_bytes",
        ),
        (
            "interfaces = [\"lo\"]\n[detect]\nban_ttls = [\"1m\", \"31d\"]\n",
            "t.toml:3: detect.ban_ttls[2]: `31d`: a ban lasts between 1s and 30d; for a permanent block add a deny rule",
        ),
        (
            "interfaces = [\"lo\"]\n[detect]\n\nban_ttls = []\n",
            "t.toml:4: detect.ban_ttls: needs at least one duration, e.g. [\"1m\", \"10m\", \"1h\"]",
        ),
        (
            "interfaces = [\"lo\"]\n[management]\ncidrs = [\"203.0.113.0/24\", \"2001:db8::1/64\"]\n",
            "t.toml:3: management.cidrs[2]: `2001:db8::1/64` has host bits set; write the network address, 2001:db8::/64",
        ),
    ];

    #[test]
    fn broken_files_are_refused_with_the_place_and_the_fix() {
        for (text, want) in BROKEN_FILES {
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

    /// A burst the kernel's clock tick would eat is refused by the file
    /// check itself, at the burst's line and key, as `run` would refuse it.
    /// The tick is the host's, so only the wording around it is fixed.
    #[test]
    fn a_burst_under_a_clock_tick_is_refused_at_its_line() {
        let text = "interfaces = [\"lo\"]\n[default_limit]\npackets_per_second = \"1M\"\nburst_packets = \"2\"\n";
        let e = check(text).unwrap_err();
        assert!(
            e.starts_with("t.toml:4: default_limit.burst_packets: the packet burst 2 is smaller than one kernel clock tick of its rate (1000000/s over "),
            "{e}"
        );
        assert!(
            e.ends_with("or a source under its rate could be dropped"),
            "{e}"
        );
        let text = "interfaces = [\"lo\"]\n[[rule]]\ncidr = \"192.0.2.0/24\"\naction = \"deny\"\n[[rule]]\ncidr = \"198.51.100.0/24\"\naction = \"limit\"\nbytes_per_second = \"1Gbit\"\nburst_bytes = 1514\n";
        let e = check(text).unwrap_err();
        assert!(
            e.starts_with("t.toml:9: rule[2].burst_bytes: the byte burst 1514 is smaller than one kernel clock tick"),
            "{e}"
        );
        // What the file check passes, the daemon's own check passes.
        let c = check(GOOD).unwrap();
        assert_eq!(
            c.policy(&[]).check_bursts(crate::clock::coarse_tick_ns()),
            Ok(())
        );
    }

    #[test]
    fn a_missing_control_group_is_refused_when_host_checks_are_on() {
        let text = "interfaces = [\"lo\"]\n\n[control]\nsocket = \"/run/tg-test.sock\"\ngroup = \"nosuchgroup\"\n";
        assert_eq!(
            parse(Path::new("t.toml"), text, true)
                .unwrap_err()
                .to_string(),
            "t.toml:5: control.group: no group `nosuchgroup` on this host; create it (groupadd) or remove the key"
        );
        let c = parse(Path::new("t.toml"), text, false).expect("not checked for another host");
        assert_eq!(c.socket_group.as_deref(), Some("nosuchgroup"));
        let root = text.replace("nosuchgroup", "root");
        assert!(parse(Path::new("t.toml"), &root, true).is_ok());
    }

    /// More rules than the kernel's policy map holds are refused by the
    /// file check, at the first rule that does not fit.
    #[test]
    fn too_many_rules_are_refused_at_the_first_that_does_not_fit() {
        let max = monitor_common::maps::MAX_RULES_PER_FAMILY;
        let mut text = String::from(
            "interfaces = [\"lo\"]\n[[rule]]\ncidr = \"2001:db8::/32\"\naction = \"deny\"\n",
        );
        for i in 0..=max {
            let [_, a, b, d] = (0x0a00_0000 | i).to_be_bytes();
            text.push_str(&format!(
                "[[rule]]\ncidr = \"10.{a}.{b}.{d}\"\naction = \"deny\"\n"
            ));
        }
        // Three lines a rule after the first line: the last IPv4 rule
        // (the first that does not fit) has its cidr on this line.
        let line = 2 + 3 * (max as usize + 1) + 1;
        assert_eq!(
            check(&text).unwrap_err(),
            format!(
                "t.toml:{line}: rule[{}].cidr: too many IPv4 rules: {}, at most {max} fit the kernel's policy map; merge neighbouring rules into wider prefixes or remove some (`tollgate rules list`)",
                max + 2,
                max + 1
            )
        );
    }

    /// More bogon ranges than the kernel's trie holds are refused at the
    /// first that does not fit, not at start.
    #[test]
    fn too_many_bogons_are_refused_at_the_first_that_does_not_fit() {
        let max = monitor_common::maps::MAX_BOGONS;
        let ranges: Vec<String> = (0..=max)
            .map(|i| format!("\"198.51.{}.{}/32\"", i / 256, i % 256))
            .collect();
        let text = format!(
            "interfaces = [\"lo\"]\n[detect]\nbogons = [\"2001:db8::/32\",\n{}]\n",
            ranges.join(",\n")
        );
        // The first line of ranges is line 4; the IPv4 range that does
        // not fit is the 257th.
        assert_eq!(
            check(&text).unwrap_err(),
            format!(
                "t.toml:{}: detect.bogons[{}]: more than {max} IPv4 ranges; the kernel holds at most {max} per family: merge neighbouring ranges",
                4 + max,
                max + 2
            )
        );
    }
}
