//! The command line: every subcommand and flag of `tollgate` (clap).

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use monitor_common::{maps::DEFAULT_MAX_SOURCES, reason::Verdict};

use crate::{
    loader::AttachMode,
    policy::{Action, Limit, Policy, Rate, Rule},
};

#[derive(Parser, Debug)]
#[command(
    name = "tollgate",
    version,
    about = "XDP per-source rate limiter and traffic monitor for API hosts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (`--config`, the default) or, with `--iface`, attach
    /// to one interface with a policy from flags and print counters.
    Run(RunArgs),
    /// Run the real XDP program over a capture and show what it would do.
    Replay(ReplayArgs),
    /// Check a config file without touching the kernel.
    CheckConfig {
        /// The config file, e.g. /etc/tollgate/tollgate.toml.
        file: PathBuf,
        /// Do not check that the interfaces and the control group exist
        /// here (checking a file for another host).
        #[arg(long)]
        no_interfaces: bool,
    },
    /// The running daemon: interfaces, counters, sources, bans.
    Status(ClientArgs),
    /// The top sources: their totals, current rates and drops by reason.
    Top {
        /// How many sources to show.
        #[arg(short = 'n', default_value_t = 10)]
        n: usize,
        /// What to rank the sources by.
        #[arg(long, value_enum, default_value_t = TopBy::Packets)]
        by: TopBy,
        /// A live view redrawn in place: rates by reason, top talkers,
        /// bans and events (keys: s sort, p pause, q quit); plain text
        /// repeated when stdout is not a terminal.
        #[arg(long)]
        watch: bool,
        /// With --watch: how often to refresh, e.g. `1s`, `500ms`.
        #[arg(long, default_value = "1s", value_parser = parse_every, requires = "watch")]
        every: Duration,
        /// With --watch: end after this many refreshes.
        #[arg(long, requires = "watch")]
        count: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// CIDR rules: list, add, remove.
    Rules {
        #[command(subcommand)]
        op: RulesOp,
    },
    /// The default limit and per-rule limits.
    Limit {
        #[command(subcommand)]
        op: LimitOp,
    },
    /// Bans with a time to live.
    Ban {
        #[command(subcommand)]
        op: BanOp,
    },
    /// Re-read the daemon's config file (a broken file changes nothing).
    Reload(ClientArgs),
    /// The detectors: show their modes, thresholds, what they learned and
    /// last read; change a threshold at run time, or reset it.
    Detect {
        #[command(subcommand)]
        op: DetectOp,
    },
    /// Why an address gets what it gets: its rule, ban, limit and bucket
    /// levels, counters, SYN-cookie state, recent events, and what its next
    /// packet would get.
    Explain {
        /// One address, e.g. 192.0.2.7 or 2001:db8::7.
        addr: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a shell completion script, e.g. `tollgate completions bash >
    /// /usr/share/bash-completion/completions/tollgate` (the package
    /// installs them).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `tollgate man | man -l -`.
    Man {
        /// Write tollgate.8 and one page per subcommand here instead (as
        /// the package installs them).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Detections, bans, unbans and expiries, oldest first.
    Events {
        /// Keep printing new events as they happen (until interrupted or
        /// the daemon stops).
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TopBy {
    /// Packets seen.
    Packets,
    /// Bytes seen.
    Bytes,
    /// Packets dropped.
    Drops,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RuleActionArg {
    /// Never limit or ban the CIDR.
    Allow,
    /// Drop everything from the CIDR.
    Deny,
    /// Hold the CIDR's sources to the limit given with the rate flags.
    Limit,
}

/// Where the running daemon's control socket is, and how to print its
/// answer.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// The daemon's control socket [default: $TOLLGATE_SOCKET, else the
    /// `control.socket` of --config, else /run/tollgate/control.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Find the control socket in this config file (its
    /// `control.socket`).
    #[arg(long, value_name = "FILE", conflicts_with = "socket")]
    pub config: Option<PathBuf>,
    /// Print the daemon's JSON answer (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// Rates as in the config file: `10k`, `5MB`, `100Mbit`.
#[derive(Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// Sustained packets per second per source, e.g. `1k`.
    #[arg(long, value_name = "RATE")]
    pub packets_per_second: Option<String>,
    /// Packets a source may send at once above the sustained rate.
    #[arg(long, value_name = "COUNT")]
    pub burst_packets: Option<String>,
    /// Sustained bytes per second per source, e.g. `5MB` or `40Mbit`.
    #[arg(long, value_name = "RATE")]
    pub bytes_per_second: Option<String>,
    /// Bytes a source may send at once above the sustained rate.
    #[arg(long, value_name = "SIZE")]
    pub burst_bytes: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum RulesOp {
    /// The rules in force, from the config file and from the CLI.
    List(ClientArgs),
    /// Add a rule at runtime (kept across restarts in the state file).
    Add {
        /// An address or prefix, e.g. 203.0.113.0/24 or 2001:db8:1::/48.
        cidr: String,
        /// What the rule does to the CIDR's sources.
        #[arg(long, value_enum)]
        action: RuleActionArg,
        #[command(flatten)]
        limit: LimitArgs,
        /// Count what the rule would drop, and pass it.
        #[arg(long)]
        monitor: bool,
        /// A note shown in `rules list` and the events.
        #[arg(long)]
        comment: Option<String>,
        /// Add a catch-all rule (`0.0.0.0/0`, `::/0`) that denies.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a rule added at runtime.
    Remove {
        /// The rule's CIDR, as `rules list` shows it.
        cidr: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum LimitOp {
    /// The default limit and the limit rules in force.
    Show(ClientArgs),
    /// Change the numbers (or the mode) of the default limit or of a limit
    /// rule; the numbers not given stay as they are.
    Set {
        /// The limit rule to change; without it, the default limit.
        #[arg(long)]
        cidr: Option<String>,
        #[command(flatten)]
        limit: LimitArgs,
        /// `true`: count what would be dropped and pass it; `false`: enforce.
        #[arg(long)]
        monitor: Option<bool>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Drop the runtime change of the default limit (or of the configured
    /// rule on `--cidr`): the config file's numbers apply again.
    Reset {
        /// The configured rule to restore; without it, the default limit.
        #[arg(long)]
        cidr: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum DetectOp {
    /// Each detector's mode and thresholds (config or runtime), the learned
    /// baselines, and the last interval's readings.
    Show(ClientArgs),
    /// Change a threshold at run time (kept across restarts in the state
    /// file, over the config file's value).
    Set {
        /// A `[detect]` key, e.g. flood_pps, syn_ratio, scan_ports
        /// (`detect show` lists them).
        key: String,
        /// The new value, a plain number.
        value: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Go back to the config file's value of a threshold (of every one
    /// without a key).
    Reset {
        /// The `[detect]` key; without it, every threshold.
        key: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum BanOp {
    /// Ban an address or prefix for a while (dropped in XDP until then,
    /// across daemon restarts).
    Add {
        /// An address or prefix, e.g. 198.51.100.7 or 2001:db8:1::/64.
        cidr: String,
        /// How long: `30s`, `10m`, `1h` (at most `30d`).
        #[arg(long)]
        ttl: String,
        /// Why, shown in `ban list` and the events.
        #[arg(long)]
        reason: Option<String>,
        /// Ban a catch-all prefix (`0.0.0.0/0`, `::/0`): everything.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The bans in force, with their time left and origin.
    List(ClientArgs),
    /// Lift a ban now.
    Remove {
        /// The ban's CIDR, as `ban list` shows it.
        cidr: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The config file (daemon mode).
    #[arg(long, conflicts_with = "iface")]
    pub config: Option<PathBuf>,
    /// Log format in daemon mode (overrides the config's `log.format`).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Attach to this interface with the policy from flags (no config).
    #[arg(long)]
    pub iface: Option<String>,
    /// Native runs in the driver, before an skb exists; generic is the
    /// fallback for drivers without XDP support.
    #[arg(long, value_enum, default_value_t = AttachMode::Native)]
    pub xdp_mode: AttachMode,
    /// Capacity of the per-source table (when full, a new source takes the
    /// slot of one not seen since the clock hand last passed).
    #[arg(long, default_value_t = DEFAULT_MAX_SOURCES)]
    pub max_sources: u32,
    /// Print counters and top talkers every this many seconds (0: only at
    /// exit).
    #[arg(long, default_value_t = 0)]
    pub stats_interval: u64,
    /// Top talkers to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormatArg {
    /// One readable line per event.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A pcap or pcapng capture with Ethernet frames.
    #[arg(long)]
    pub pcap: PathBuf,
    /// Judge by this config file's policy instead of the flags.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// One JSON object per line per packet, then one with the totals.
    #[arg(long)]
    pub json: bool,
    /// Capacity of the per-source table used for the replay.
    #[arg(long, default_value_t = 65_536)]
    pub max_sources: u32,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MalformedArg {
    /// Drop them (counted under the header that could not be read).
    Drop,
    /// Pass them to the stack (still counted).
    Pass,
}

/// The policy, from flags (`run --iface` and `replay` without `--config`).
#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// Default limit: packets per second per source.
    #[arg(long, default_value_t = Limit::DEFAULT.packets.map_or(0, |r| r.per_sec))]
    pub limit_pps: u64,
    /// Default limit: packet burst per source.
    #[arg(long, default_value_t = Limit::DEFAULT.packets.map_or(0, |r| r.burst))]
    pub burst_packets: u64,
    /// Default limit: bytes per second per source (0: no byte limit).
    #[arg(long, default_value_t = Limit::DEFAULT.bytes.map_or(0, |r| r.per_sec))]
    pub limit_bytes: u64,
    /// Default limit: byte burst per source.
    #[arg(long, default_value_t = Limit::DEFAULT.bytes.map_or(0, |r| r.burst))]
    pub burst_bytes: u64,
    /// Never limit or ban this CIDR (repeatable).
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<IpNet>,
    /// Drop everything from this CIDR (repeatable).
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<IpNet>,
    /// Group IPv4 sources by this prefix length.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u8).range(0..=32))]
    pub v4_prefix: u8,
    /// Group IPv6 sources by this prefix length (a client owns a /64).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(0..=128))]
    pub v6_prefix: u8,
    /// What to do with packets whose headers cannot be read.
    #[arg(long, value_enum, default_value_t = MalformedArg::Drop)]
    pub malformed: MalformedArg,
}

impl PolicyArgs {
    pub fn policy(&self) -> Policy {
        let rate = |per_sec, burst| (per_sec != 0).then_some(Rate { per_sec, burst });
        let mut rules: Vec<Rule> = Vec::new();
        rules.extend(self.allow.iter().map(|n| Rule {
            net: *n,
            action: Action::Allow,
            monitor: false,
        }));
        rules.extend(self.deny.iter().map(|n| Rule {
            net: *n,
            action: Action::Deny,
            monitor: false,
        }));
        Policy {
            default: Limit {
                packets: rate(self.limit_pps, self.burst_packets),
                bytes: rate(self.limit_bytes, self.burst_bytes),
            },
            rules,
            v4_prefix: self.v4_prefix,
            v6_prefix: self.v6_prefix,
            malformed: match self.malformed {
                MalformedArg::Drop => Verdict::Drop,
                MalformedArg::Pass => Verdict::Pass,
            },
            default_monitor: false,
            prefix: None,
        }
    }
}

fn parse_every(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s}: {e}; e.g. 1s or 500ms"))
}

impl From<TopBy> for crate::cli::watch::Sort {
    fn from(b: TopBy) -> Self {
        match b {
            TopBy::Packets => Self::Packets,
            TopBy::Bytes => Self::Bytes,
            TopBy::Drops => Self::Drops,
        }
    }
}

/// The variable naming the control socket when `--socket` does not.
pub const SOCKET_ENV: &str = "TOLLGATE_SOCKET";

impl ClientArgs {
    /// The control socket to use, and where that choice came from:
    /// `--socket`, then `$TOLLGATE_SOCKET`, then `--config`'s
    /// `control.socket`, then the packaged default.
    pub fn socket(&self) -> anyhow::Result<(PathBuf, String)> {
        if let Some(s) = &self.socket {
            return Ok((s.clone(), "--socket".into()));
        }
        if let Some(s) = std::env::var_os(SOCKET_ENV).filter(|s| !s.is_empty()) {
            return Ok((s.into(), format!("${SOCKET_ENV}")));
        }
        if let Some(file) = &self.config {
            let c =
                crate::config::load(file, false).map_err(|e| anyhow::anyhow!("--config: {e}"))?;
            return Ok((c.socket, format!("control.socket in {}", file.display())));
        }
        Ok((DEFAULT_SOCKET.into(), "the default".into()))
    }
}

/// Where the packaged config puts the control socket.
pub const DEFAULT_SOCKET: &str = "/run/tollgate/control.sock";

impl LimitArgs {
    pub fn spec(&self) -> crate::policy::LimitSpec {
        crate::policy::LimitSpec {
            packets_per_second: self.packets_per_second.clone(),
            burst_packets: self.burst_packets.clone(),
            bytes_per_second: self.bytes_per_second.clone(),
            burst_bytes: self.burst_bytes.clone(),
        }
    }
}

impl RunArgs {
    pub fn stats_interval(&self) -> Option<Duration> {
        (self.stats_interval > 0).then(|| Duration::from_secs(self.stats_interval))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// Every subcommand, argument and possible value explains itself in
    /// `--help` and the man pages.
    #[test]
    fn every_subcommand_argument_and_value_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() {
                missing.push(format!("{path}: no description"));
            }
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none() {
                    missing.push(format!("{path} {id}: no help"));
                }
                // Our own value enums; `true`/`false` and shell names
                // (clap_complete's) speak for themselves.
                let values = a.get_possible_values();
                let own = a.get_action().takes_values() && id != "shell";
                for v in values.iter().filter(|_| own) {
                    if v.get_help().is_none() && !matches!(v.get_name(), "true" | "false") {
                        missing.push(format!("{path} {id}={}: no help", v.get_name()));
                    }
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "tollgate", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }

    /// A subcommand taking only the client options has its own
    /// description, not the options' ("How to reach the daemon...").
    #[test]
    fn subcommand_descriptions_are_their_own() {
        let cmd = Cli::command();
        let mut seen = std::collections::BTreeMap::new();
        fn walk(
            cmd: &clap::Command,
            path: String,
            seen: &mut std::collections::BTreeMap<String, String>,
        ) {
            if let Some(about) = cmd.get_about() {
                seen.insert(path.clone(), about.to_string());
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, format!("{path} {}", sub.get_name()), seen);
            }
        }
        walk(&cmd, "tollgate".into(), &mut seen);
        let mut by_text: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (path, about) in &seen {
            by_text.entry(about).or_default().push(path);
        }
        let shared: Vec<_> = by_text.into_iter().filter(|(_, p)| p.len() > 1).collect();
        assert!(shared.is_empty(), "descriptions shared: {shared:#?}");
    }

    #[test]
    fn the_socket_comes_from_the_flag_the_environment_or_the_config() {
        let flag = ClientArgs {
            socket: Some("/tmp/a.sock".into()),
            ..ClientArgs::default()
        };
        assert_eq!(flag.socket().unwrap().1, "--socket");
        let dir = std::env::temp_dir().join(format!("tg-cli-socket-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.toml");
        std::fs::write(
            &file,
            "interfaces = [\"lo\"]\n[control]\nsocket = \"/tmp/from-config.sock\"\n",
        )
        .unwrap();
        let from_config = ClientArgs {
            config: Some(file.clone()),
            ..ClientArgs::default()
        };
        // The environment is not set in the test runner unless a test
        // sets it; none does.
        assert!(std::env::var_os(SOCKET_ENV).is_none());
        let (path, from) = from_config.socket().unwrap();
        assert_eq!(path, PathBuf::from("/tmp/from-config.sock"));
        assert!(from.contains("control.socket in"), "{from}");
        let (path, from) = ClientArgs::default().socket().unwrap();
        assert_eq!(
            (path.to_str().unwrap(), from.as_str()),
            (DEFAULT_SOCKET, "the default")
        );
        let bad = ClientArgs {
            config: Some(dir.join("missing.toml")),
            ..ClientArgs::default()
        };
        assert!(
            bad.socket()
                .unwrap_err()
                .to_string()
                .starts_with("--config: ")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
