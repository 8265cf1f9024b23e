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
        file: PathBuf,
        /// Do not check that the interfaces and the control group exist
        /// here (checking a file for another host).
        #[arg(long)]
        no_interfaces: bool,
    },
    /// The running daemon: interfaces, counters, sources, bans.
    Status(ClientArgs),
    /// The top sources.
    Top {
        #[arg(short = 'n', default_value_t = 10)]
        n: usize,
        #[arg(long, value_enum, default_value_t = TopBy::Packets)]
        by: TopBy,
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
    /// Re-read the config file (a broken file changes nothing).
    Reload(ClientArgs),
    /// Detections, bans, unbans and expiries, oldest first.
    Events {
        /// Keep printing new events as they happen (until interrupted).
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TopBy {
    Packets,
    Bytes,
    Drops,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RuleActionArg {
    Allow,
    Deny,
    Limit,
}

/// How to reach the daemon, and how to print.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The daemon's control socket.
    #[arg(long, default_value = "/run/tollgate/control.sock")]
    pub socket: PathBuf,
    /// Print the daemon's JSON answer (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// Rates as in the config file: `10k`, `5MB`, `100Mbit`.
#[derive(Args, Debug, Clone, Default)]
pub struct LimitArgs {
    #[arg(long)]
    pub packets_per_second: Option<String>,
    #[arg(long)]
    pub burst_packets: Option<String>,
    #[arg(long)]
    pub bytes_per_second: Option<String>,
    #[arg(long)]
    pub burst_bytes: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum RulesOp {
    List(ClientArgs),
    Add {
        cidr: String,
        #[arg(long, value_enum)]
        action: RuleActionArg,
        #[command(flatten)]
        limit: LimitArgs,
        /// Count what the rule would drop, and pass it.
        #[arg(long)]
        monitor: bool,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    Remove {
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
pub enum BanOp {
    Add {
        /// An address or prefix, e.g. 198.51.100.7 or 2001:db8:1::/64.
        cidr: String,
        /// How long: `30s`, `10m`, `1h` (at most `30d`).
        #[arg(long)]
        ttl: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    List(ClientArgs),
    Remove {
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
    Text,
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
    Drop,
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
