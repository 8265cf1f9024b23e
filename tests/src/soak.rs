//! The soak: hours (or, in the suite, two minutes) of mixed legitimate
//! and attack traffic while the daemon is reloaded, its rules and bans
//! change every few hundred milliseconds, and it is killed with SIGKILL
//! and restarted. At the end every packet sent is accounted for, per
//! source and by reason, no ban or rule the operator set is lost, and the
//! daemon's memory has not grown. `cargo xtask soak --minutes N` and
//! `tests/soak.rs` run it; `Report` holds the reconciliation.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;
use tollgate::control::{Client, Request};

use crate::daemon::{Daemon, eventually};

/// Who sends what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Under the limit: nothing dropped.
    Client,
    /// Over the limit: what passes stays within the bucket's bound.
    Flood,
    /// Denied by the config's rule: everything dropped.
    Denied,
    /// Banned by the operator before it sends: everything dropped.
    Banned,
}

/// Source, as `top` shows it, role and packets per second.
const SOURCES: [(&str, &str, Role, u64); 6] = [
    ("192.0.2.21", "192.0.2.21", Role::Client, 300),
    ("2001:db8::21", "2001:db8::/64", Role::Client, 300),
    ("192.0.2.66", "192.0.2.66", Role::Flood, 3_000),
    ("2001:db8:66::1", "2001:db8:66::/64", Role::Flood, 3_000),
    ("192.0.2.40", "192.0.2.40", Role::Denied, 200),
    ("192.0.2.77", "192.0.2.77", Role::Banned, 200),
];
/// The default limit: packets per second and burst.
const RATE: u64 = 1_000;
const BURST: u64 = 1_000;
/// What the operator sets before the soak and must find after it.
const KEPT_RULE: &str = "203.0.113.0/24";
const KEPT_BAN: &str = "192.0.2.77/32";
/// What the churn adds and removes, over and over.
const CHURN_RULE: &str = "198.51.100.0/24";
const CHURN_BAN: &str = "203.0.113.9/32";

/// One source's reconciliation.
#[derive(Debug)]
pub struct Tally {
    pub source: &'static str,
    pub role: Role,
    pub sent: u64,
    /// The kernel's record: packets seen and dropped.
    pub counted: u64,
    pub dropped: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub elapsed: Duration,
    pub sources: Vec<Tally>,
    /// The daemon's counters by reason (all interfaces, all verdicts).
    pub by_reason: BTreeMap<String, u64>,
    pub dropped_total: u64,
    pub packets_total: u64,
    pub rules_before: Vec<String>,
    pub rules_after: Vec<String>,
    pub bans_before: Vec<String>,
    pub bans_after: Vec<String>,
    /// Resident memory (KiB) of the last daemon, after its first round and
    /// at the end; and of the first, after its first round.
    pub rss_first_kib: u64,
    pub rss_last_start_kib: u64,
    pub rss_end_kib: u64,
    pub restarts: u64,
    pub reloads: u64,
    pub rule_changes: u64,
    pub ban_changes: u64,
    /// Churn calls refused or unanswered (during a restart, expected).
    pub churn_failures: u64,
}

/// The length of a round of traffic, and how many rounds pass between
/// restarts.
const ROUND: Duration = Duration::from_secs(10);
const RESTART_EVERY: u64 = 4;

/// Runs the soak for `duration` (whole rounds of `ROUND`, at least two).
pub fn run(duration: Duration) -> anyhow::Result<Report> {
    let addrs: Vec<&str> = SOURCES.iter().map(|s| s.0).collect();
    let mut d = Daemon::new(
        "soak",
        &addrs,
        &format!("[default_limit]\npackets_per_second = {RATE}\nburst_packets = {BURST}\n"),
    );
    d.json(&[
        "rules",
        "add",
        KEPT_RULE,
        "--action",
        "deny",
        "--comment",
        "kept by the soak",
    ]);
    d.json(&["ban", "add", KEPT_BAN, "--ttl", "1h"]);
    let mut report = Report {
        rules_before: cidrs(&d.json(&["rules", "list"]), "rules"),
        bans_before: cidrs(&d.json(&["ban", "list"]), "bans"),
        ..Report::default()
    };
    let rounds = (duration.as_secs() / ROUND.as_secs()).max(2);
    let mut sent = [0u64; SOURCES.len()];
    let mut restarted_before = false;
    let began = Instant::now();
    let churning = AtomicBool::new(true);
    let counts = Churn::default();
    let socket = d.socket();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let churn = s.spawn(|| churn(&socket, &churning, &counts));
        for round in 0..rounds {
            let restart = round % RESTART_EVERY == RESTART_EVERY - 1 && round + 1 < rounds;
            let pid = d.pid();
            let d_ref = &d;
            let this: Vec<u64> = std::thread::scope(|r| {
                let senders: Vec<_> = SOURCES
                    .iter()
                    .map(|(src, _, _, pps)| {
                        r.spawn(move || d_ref.send(src, pps * ROUND.as_secs(), *pps))
                    })
                    .collect();
                if restart {
                    // SIGKILL mid-round: the kernel keeps counting and
                    // enforcing while no daemon runs.
                    std::thread::sleep(ROUND / 2);
                    // SAFETY: signalling our own child.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
                senders.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (total, n) in sent.iter_mut().zip(this) {
                *total += n;
            }
            if restart {
                if let Some(mut c) = d.child.take() {
                    c.wait()?;
                }
                d.start();
                report.restarts += 1;
            }
            // Each daemon's memory after its first whole round: the first
            // daemon's after round 0, a restarted one's after the round
            // following its start.
            let rss = rss_kib(d.pid())?;
            if round == 0 {
                report.rss_first_kib = rss;
            }
            if round == 0 || restarted_before {
                report.rss_last_start_kib = rss;
            }
            restarted_before = restart;
        }
        churning.store(false, Ordering::Relaxed);
        churn.join().unwrap();
        Ok(())
    })?;
    report.elapsed = began.elapsed();
    report.rss_end_kib = rss_kib(d.pid())?;
    report.reloads = counts.reloads.load(Ordering::Relaxed);
    report.rule_changes = counts.rules.load(Ordering::Relaxed);
    report.ban_changes = counts.bans.load(Ordering::Relaxed);
    report.churn_failures = counts.failures.load(Ordering::Relaxed);
    read_back(&d, &sent, &mut report);
    report.rules_after = cidrs(&d.json(&["rules", "list"]), "rules");
    report.bans_after = cidrs(&d.json(&["ban", "list"]), "bans");
    Ok(report)
}

/// What the daemon and the kernel counted, once they have every packet
/// sent.
fn read_back(d: &Daemon, sent: &[u64; SOURCES.len()], report: &mut Report) {
    // The churn's last change may have been an add: undo it, so the lists
    // compared are the operator's alone.
    let _ = d.cli(&["rules", "remove", CHURN_RULE]);
    let _ = d.cli(&["ban", "remove", CHURN_BAN]);
    for ((src, shown, role, _), &n) in SOURCES.iter().zip(sent) {
        let (counted, dropped) = d.source(shown, n);
        report.sources.push(Tally {
            source: src,
            role: *role,
            sent: n,
            counted,
            dropped,
        });
    }
    // The counters of the daemon's snapshot are read before its sweep of
    // the sources, so a snapshot can show a source's last drops before
    // its counters do; and the host's own packets (neighbour discovery)
    // make the total reach what was sent early. Caught up means both.
    let want: u64 = sent.iter().sum();
    let dropped: u64 = report.sources.iter().map(|t| t.dropped).sum();
    let status = eventually("the counters to catch up", Duration::from_secs(10), || {
        let v = d.json(&["status"]);
        let drop = v["packets"]["drop"].as_u64()?;
        let total = v["packets"]["pass"].as_u64()? + drop;
        (total >= want && drop >= dropped).then_some(v)
    });
    report.packets_total = status["packets"]["pass"].as_u64().unwrap_or(0)
        + status["packets"]["drop"].as_u64().unwrap_or(0);
    report.dropped_total = status["packets"]["drop"].as_u64().unwrap_or(0);
    if let Some(m) = status["by_reason"].as_object() {
        report.by_reason = m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
    }
}

#[derive(Default)]
struct Churn {
    reloads: AtomicU64,
    rules: AtomicU64,
    bans: AtomicU64,
    failures: AtomicU64,
}

/// Every 50 ms a rule change, every 500 ms a ban change, every 5 s a
/// reload, until `churning` is cleared; through restarts (a call that
/// finds no daemon counts as a failure and the next one reconnects).
fn churn(socket: &Path, churning: &AtomicBool, counts: &Churn) {
    let socket: PathBuf = socket.to_owned();
    let mut client: Option<Client> = None;
    let mut tick = 0u64;
    while churning.load(Ordering::Relaxed) {
        let (request, counter) = if tick % 100 == 99 {
            (Request::Reload, &counts.reloads)
        } else if tick % 10 == 9 {
            let request = if (tick / 10).is_multiple_of(2) {
                Request::BanAdd {
                    cidr: CHURN_BAN.into(),
                    ttl: "10m".into(),
                    reason: Some("soak churn".into()),
                    force: false,
                }
            } else {
                Request::BanRemove {
                    cidr: CHURN_BAN.into(),
                }
            };
            (request, &counts.bans)
        } else if tick.is_multiple_of(2) {
            let add = Request::RulesAdd {
                cidr: CHURN_RULE.into(),
                action: "deny".into(),
                limit: Default::default(),
                monitor: false,
                comment: None,
                force: false,
            };
            (add, &counts.rules)
        } else {
            let remove = Request::RulesRemove {
                cidr: CHURN_RULE.into(),
            };
            (remove, &counts.rules)
        };
        tick += 1;
        let c = match client.as_mut() {
            Some(c) => c,
            None => match Client::connect(&socket) {
                Ok(c) => client.insert(c),
                Err(_) => {
                    counts.failures.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        match c.call::<Value>(request) {
            Ok(_) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                counts.failures.fetch_add(1, Ordering::Relaxed);
                client = None;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The CIDRs of a `rules list` or `ban list` answer, sorted.
fn cidrs(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["cidr"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))
}

impl Report {
    /// What does not reconcile, one line each; empty when all does.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let secs = self.elapsed.as_secs_f64() + 1.0;
        for t in &self.sources {
            let passed = t.counted.saturating_sub(t.dropped);
            if t.counted != t.sent {
                out.push(format!(
                    "{}: sent {}, counted {}",
                    t.source, t.sent, t.counted
                ));
            }
            match t.role {
                Role::Client if t.dropped != 0 => {
                    out.push(format!("{}: under its limit, yet {} dropped", t.source, t.dropped))
                }
                Role::Denied | Role::Banned if t.dropped != t.sent => out.push(format!(
                    "{}: {:?}, yet {} of {} passed",
                    t.source,
                    t.role,
                    t.sent - t.dropped.min(t.sent),
                    t.sent
                )),
                Role::Flood if passed as f64 > RATE as f64 * secs + BURST as f64 => out.push(format!(
                    "{}: {passed} passed in {secs:.0} s, over the bucket's {RATE}/s and burst {BURST}",
                    t.source
                )),
                Role::Flood if t.dropped == 0 => {
                    out.push(format!("{}: flooding, yet nothing dropped", t.source))
                }
                _ => {}
            }
        }
        let reason = |r: &str| self.by_reason.get(r).copied().unwrap_or(0);
        let of = |role: Role| -> u64 {
            self.sources
                .iter()
                .filter(|t| t.role == role)
                .map(|t| t.dropped)
                .sum()
        };
        if reason("deny") != of(Role::Denied) {
            out.push(format!(
                "counted under deny: {}, dropped from the denied source: {}",
                reason("deny"),
                of(Role::Denied)
            ));
        }
        // A detector may ban a flooder: its drops are then `banned` too.
        let limited = reason("rate_limited_packets") + reason("rate_limited_bytes");
        if limited + reason("banned") != of(Role::Flood) + of(Role::Banned)
            || reason("banned") < of(Role::Banned)
        {
            out.push(format!(
                "counted under banned {} and rate_limited {limited}; dropped from the banned source {}, from the flooders {}",
                reason("banned"),
                of(Role::Banned),
                of(Role::Flood)
            ));
        }
        let dropped: u64 = self.sources.iter().map(|t| t.dropped).sum();
        if self.dropped_total != dropped {
            out.push(format!(
                "the daemon counts {} drops, the sources {dropped}",
                self.dropped_total
            ));
        }
        for (what, before, after) in [
            ("rules", &self.rules_before, &self.rules_after),
            ("bans", &self.bans_before, &self.bans_after),
        ] {
            if before != after {
                out.push(format!("{what} before {before:?}, after {after:?}"));
            }
        }
        if !self.rules_after.iter().any(|r| r == KEPT_RULE)
            || !self.bans_after.iter().any(|b| b == KEPT_BAN)
        {
            out.push("the operator's rule or ban is gone".into());
        }
        // Memory: the last daemon, warmed up, against itself at the end.
        let grown = self.rss_end_kib.saturating_sub(self.rss_last_start_kib);
        if grown > self.rss_last_start_kib / 4 + 2_048 {
            out.push(format!(
                "resident memory grew from {} KiB to {} KiB",
                self.rss_last_start_kib, self.rss_end_kib
            ));
        }
        out
    }

    /// The reconciliation, for the note and the terminal.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "soak: {:.0} s, {} kill -9 restarts, {} reloads, {} rule changes, {} ban changes ({} churn calls unanswered during restarts)\n",
            self.elapsed.as_secs_f64(),
            self.restarts,
            self.reloads,
            self.rule_changes,
            self.ban_changes,
            self.churn_failures
        );
        for t in &self.sources {
            s += &format!(
                "  {:<16} {:<7} sent {:>8}  counted {:>8}  passed {:>8}  dropped {:>8}\n",
                t.source,
                format!("{:?}", t.role).to_lowercase(),
                t.sent,
                t.counted,
                t.counted.saturating_sub(t.dropped),
                t.dropped
            );
        }
        let drops: Vec<String> = self
            .by_reason
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        s += &format!(
            "  daemon counters: {} packets, {} dropped; by reason: {}\n",
            self.packets_total,
            self.dropped_total,
            drops.join(", ")
        );
        s += &format!(
            "  rules before {:?} after {:?}; bans before {:?} after {:?}\n",
            self.rules_before, self.rules_after, self.bans_before, self.bans_after
        );
        s += &format!(
            "  resident memory: first daemon {} KiB; last daemon {} KiB after its first round, {} KiB at the end",
            self.rss_first_kib, self.rss_last_start_kib, self.rss_end_kib
        );
        s
    }
}
