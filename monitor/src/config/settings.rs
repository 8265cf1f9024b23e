//! The daemon's own settings, section by section: `interfaces` and the
//! timing at the top of the file, `[sources]`, `[metrics]`, `[control]`,
//! `[log]` and `[state]`. With host checks on (`run`, `reload`,
//! `check-config` without `--no-interfaces`), what must exist on this
//! host is checked too: the interfaces and the control socket's group.

use std::{collections::HashSet, net::SocketAddr, path::PathBuf, time::Duration};

use monitor_common::maps::DEFAULT_MAX_SOURCES;
use toml::Spanned;

use super::{
    DEFAULT_PIN_DIR, LogConfig, Redact,
    located::{Checker, ConfigError},
    schema::{ControlFile, LogFile, MetricsFile, SourcesFile, StateFile},
};

/// `interfaces`: at least one, none twice, and (with `check_host`) each
/// one present on this host.
pub(super) fn interfaces(
    c: &Checker,
    list: &Spanned<Vec<String>>,
    check_host: bool,
) -> Result<Vec<String>, ConfigError> {
    let err = |m: String| c.err(list.span(), "interfaces", m);
    if list.get_ref().is_empty() {
        return Err(err(
            "lists no interface; name at least one, e.g. interfaces = [\"eth0\"]".into(),
        ));
    }
    let mut seen = HashSet::new();
    for name in list.get_ref() {
        if !seen.insert(name) {
            return Err(err(format!("`{name}` is listed twice")));
        }
        if check_host && crate::loader::ifindex(name) == 0 {
            return Err(err(format!(
                "no interface `{name}` on this host; `ip link` lists the ones there are"
            )));
        }
    }
    Ok(list.get_ref().clone())
}

/// `interval`: how often the counters are read.
pub(super) fn interval(c: &Checker, s: Option<&Spanned<String>>) -> Result<Duration, ConfigError> {
    c.duration(
        s,
        "interval",
        (Duration::from_millis(100), Duration::from_secs(60)),
        "must be between 100ms and 60s",
        // Half a second: a flood is judged (and banned) within one interval
        // of its first packet, so within a second; reading the counters
        // twice a second costs well under 1% of a core.
        Duration::from_millis(500),
    )
}

/// `[sources]`, checked.
pub(super) struct Sources {
    pub(super) v4_prefix: u8,
    pub(super) v6_prefix: u8,
    pub(super) max_sources: u32,
    pub(super) scan_interval: Duration,
}

/// `[sources]`; the table walk cannot be more frequent than `interval`.
pub(super) fn sources(
    c: &Checker,
    s: &SourcesFile,
    interval: Duration,
) -> Result<Sources, ConfigError> {
    let v4_prefix = prefix(c, &s.ipv4_prefix, "sources.ipv4_prefix", 32, 32)?;
    let v6_prefix = prefix(c, &s.ipv6_prefix, "sources.ipv6_prefix", 64, 128)?;
    let max_sources = c.number(
        &s.max_tracked,
        "sources.max_tracked",
        DEFAULT_MAX_SOURCES,
        |n| match n {
            1024..=0x400_0000 => Ok(()),
            _ => Err(format!("{n} is out of range; between 1024 and 67108864")),
        },
    )?;
    let scan_interval = c.duration(
        s.scan_interval.as_ref(),
        "sources.scan_interval",
        (interval, Duration::from_secs(3600)),
        "must be between `interval` and 1h",
        Duration::from_secs(1).max(interval),
    )?;
    Ok(Sources {
        v4_prefix,
        v6_prefix,
        max_sources,
        scan_interval,
    })
}

/// A prefix length, at most `max`: the length of the address (32 for
/// IPv4, 128 for IPv6).
fn prefix(
    c: &Checker,
    v: &Option<Spanned<u8>>,
    key: &str,
    default: u8,
    max: u8,
) -> Result<u8, ConfigError> {
    let family = if max == 32 { "IPv4" } else { "IPv6" };
    c.number(v, key, default, |n| {
        if n > max {
            Err(format!(
                "{n} is longer than an {family} address; at most {max}"
            ))
        } else {
            Ok(())
        }
    })
}

/// `[metrics]`: the listen address and the number of top talkers.
pub(super) fn metrics(c: &Checker, m: &MetricsFile) -> Result<(SocketAddr, usize), ConfigError> {
    let listen = match &m.listen {
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
    let top = c.number(&m.top_talkers, "metrics.top_talkers", 10, |n| {
        if n > 100 {
            Err(format!("{n} would make too many series; at most 100"))
        } else {
            Ok(())
        }
    })?;
    Ok((listen, top))
}

/// `[control]`: the socket's path and group. The daemon gives the socket
/// to the group when it starts, so a group missing on this host is refused
/// here (with `check_host`) rather than there, without a line.
pub(super) fn control(
    c: &Checker,
    ctl: &ControlFile,
    check_host: bool,
) -> Result<Control, ConfigError> {
    if let Some(g) = &ctl.group
        && check_host
        && crate::groups::group_id(g.get_ref()).is_none()
    {
        return Err(c.err(
            g.span(),
            "control.group",
            format!(
                "no group `{}` on this host; create it (groupadd) or remove the key",
                g.get_ref()
            ),
        ));
    }
    let socket = ctl
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from("/run/tollgate/control.sock"));
    let defaults = ClientLimits::default();
    let idle = c.duration(
        ctl.idle_timeout.as_ref(),
        "control.idle_timeout",
        (Duration::from_secs(1), Duration::from_secs(3600)),
        "between 1s and 1h",
        defaults.idle,
    )?;
    let max = c.number(&ctl.max_clients, "control.max_clients", defaults.max, |n| {
        if (1..=65_536).contains(&n) {
            Ok(())
        } else {
            Err(format!("{n} is out of range; between 1 and 65536"))
        }
    })?;
    Ok(Control {
        socket,
        group: ctl.group.as_ref().map(|g| g.get_ref().clone()),
        limits: ClientLimits {
            idle,
            max,
            ..defaults
        },
    })
}

/// How the control socket treats its clients (`[control]`), so that idle, stuck or too many
/// clients never keep a permitted one from being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// A connection that sends no whole request for this long is closed
    /// (`events --follow` asks every 500 ms; a request cut off mid-line
    /// is as idle as none).
    pub idle: Duration,
    /// Most connections at once: a new one past it closes the connection
    /// that has been idle longest.
    pub max: usize,
    /// A response the client does not take within this is abandoned, with
    /// its connection.
    pub send: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(60),
            max: 1024,
            send: Duration::from_secs(5),
        }
    }
}

/// `[control]`, checked.
pub(super) struct Control {
    pub(super) socket: PathBuf,
    pub(super) group: Option<String>,
    pub(super) limits: ClientLimits,
}

/// `[log]`.
pub(super) fn log(c: &Checker, l: &LogFile) -> Result<LogConfig, ConfigError> {
    let redact = l.redact.as_ref().map(|r| *r.get_ref()).unwrap_or_default();
    if let Some(r) = &l.redact
        && redact == Redact::Hash
        && l.hash_key_file.is_none()
    {
        return Err(c.err(
            r.span(),
            "log.hash_key_file",
            "redact = \"hash\" needs a key file (32 random bytes, e.g. `head -c32 /dev/urandom`) so hashes cannot be reversed by guessing",
        ));
    }
    Ok(LogConfig {
        format: l.format.unwrap_or_default(),
        redact,
        ipv4_prefix: prefix(c, &l.ipv4_prefix, "log.ipv4_prefix", 24, 32)?,
        ipv6_prefix: prefix(c, &l.ipv6_prefix, "log.ipv6_prefix", 48, 128)?,
        hash_key_file: l.hash_key_file.clone(),
    })
}

/// `[state]`: where the runtime state is saved, where the maps are
/// pinned, and what happens to them when the daemon exits.
pub(super) fn state(s: &StateFile) -> (PathBuf, PathBuf, crate::pins::OnExit) {
    (
        s.file
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/tollgate/state.json")),
        s.pin_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR)),
        s.on_exit.unwrap_or(crate::pins::OnExit::Keep),
    )
}
