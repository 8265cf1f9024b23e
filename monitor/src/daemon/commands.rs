//! The control socket's requests, one function each, answering with the
//! typed replies of `control::replies`. Rule changes go through
//! `change_rules` (mutate, apply, roll back, save); bans through the ban
//! book.

use std::{borrow::Cow, collections::BTreeMap};

use monitor_common::{
    maps::source_event,
    reason::{Reason, Verdict},
    syncookie::cookie_event,
};
use serde::Serialize;

use super::{Daemon, bans::BanBy};
use crate::{
    clock::coarse_ns,
    config::RuleEntry,
    control::{
        Request, Response,
        replies::{
            BanLine, Banned, Bans, ByVerdict, CookieStatus, CrowdSecStatus, DefaultLimit, Events,
            RuleChanged, RuleCounts, RuleLine, Rules, SourceCounts, Status, Top, Unbanned,
        },
    },
    events::event,
    policy::{
        Action, LimitSpec, Origin, Rule, ban_ttl, guard_ban, guard_catch_all, guard_rule,
        parse_cidr, parse_rule,
    },
    snapshot::{CookieStats, Snapshot, TOP_MAX},
};

/// The cookie part of `status`, when configured.
fn cookie_status(c: &CookieStats) -> Option<CookieStatus> {
    let configured = c.configured?.name();
    let n = |e: u32| c.events[e as usize];
    Some(CookieStatus {
        mode: super::cookies::mode_name(c.mode).to_owned(),
        configured: configured.to_owned(),
        ports: c.ports.clone(),
        sent: n(cookie_event::SENT),
        acks_valid: n(cookie_event::ACK_VALID),
        acks_invalid: n(cookie_event::ACK_INVALID),
        verified_syns: n(cookie_event::VERIFIED_SYN),
        failures: n(cookie_event::FAILED),
        verified_sources: c.verified,
        mode_changes: c.mode_changes,
    })
}

fn reply<T: Serialize>(r: Result<T, String>) -> Response {
    match r.and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string())) {
        Ok(v) => Response::ok(v),
        Err(e) => Response::error(e),
    }
}

impl Daemon {
    /// Handles one control request from `actor` (who the events of its
    /// changes name); `latest` is the stats loop's last snapshot (none yet
    /// right after the start: one is read).
    pub fn handle(&mut self, req: Request, latest: Option<&Snapshot>, actor: &str) -> Response {
        match req {
            Request::Status => reply(self.status(latest)),
            Request::Top { n, by } => reply(self.top(latest, n, &by)),
            Request::RulesList => reply(Ok::<_, String>(self.rules_list(|_| true))),
            Request::RulesAdd {
                cidr,
                action,
                limit,
                monitor,
                comment,
                force,
            } => {
                let r = self.rules_add(&cidr, &action, &limit, (monitor, force), comment);
                reply(self.record(r, actor, Self::rule_changed))
            }
            Request::RulesRemove { cidr } => {
                let r = self.rules_remove(&cidr);
                reply(self.record(r, actor, Self::rule_changed))
            }
            Request::LimitShow => reply(Ok::<_, String>(
                self.rules_list(|r| matches!(r.action, Action::Limit(_))),
            )),
            Request::LimitSet {
                cidr,
                limit,
                monitor,
            } => {
                let r = self.limit_set(cidr.as_deref(), &limit, monitor);
                reply(self.record(r, actor, |d, c, a| d.limit_changed("limit_set", c, a)))
            }
            Request::LimitReset { cidr } => {
                let r = self.limit_reset(cidr.as_deref());
                reply(self.record(r, actor, |d, c, a| d.limit_changed("limit_reset", c, a)))
            }
            Request::BanAdd {
                cidr,
                ttl,
                reason,
                force,
            } => reply(self.ban_add(&cidr, &ttl, reason, force, actor)),
            Request::BanList => reply(Ok::<_, String>(self.ban_list())),
            Request::BanRemove { cidr } => reply(self.ban_remove(&cidr, actor)),
            Request::Reload => reply(self.reload(actor)),
            Request::Explain { addr } => reply(self.explain(&addr)),
            Request::DetectShow => reply(Ok::<_, String>(self.detect_show())),
            Request::DetectSet { key, value } => reply(self.detect_set(&key, &value, actor)),
            Request::DetectReset { key } => reply(self.detect_reset(key.as_deref(), actor)),
            Request::Events { since } => reply(Ok::<_, String>(Events {
                events: self.events.since(since),
            })),
        }
    }

    /// The stats loop's last snapshot, or one read now if there is none
    /// yet (right after the start); borrowed, not copied, when there is.
    fn latest<'a>(&self, latest: Option<&'a Snapshot>) -> Result<Cow<'a, Snapshot>, String> {
        match latest {
            Some(s) => Ok(Cow::Borrowed(s)),
            None => self
                .snapshot(true, None)
                .map(Cow::Owned)
                .map_err(|e| format!("{e:#}")),
        }
    }

    fn status(&self, latest: Option<&Snapshot>) -> Result<Status, String> {
        let snap = self.latest(latest)?;
        let total = |v| snap.counters.total(v);
        let verdicts = |f: fn(monitor_common::types::Counter) -> u64| ByVerdict {
            pass: f(total(Verdict::Pass)),
            drop: f(total(Verdict::Drop)),
            monitor: f(total(Verdict::Monitor)),
            tx: f(total(Verdict::Tx)),
        };
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").into(),
            interfaces: self.config.interfaces.clone(),
            attach_mode: self.config.attach_mode.to_string(),
            uptime_seconds: self.started.elapsed().as_secs(),
            policy_generation: snap.generation,
            rules: RuleCounts {
                config: self.config.rules.len(),
                runtime: self.rules.runtime.len(),
                management: self.config.management.len(),
            },
            bans_active: snap.bans_active,
            sources: SourceCounts {
                tracked: snap.tracked,
                capacity: snap.capacity,
                evicted: snap.counters.source_events[source_event::EVICTED as usize],
            },
            packets: verdicts(|c| c.packets),
            bytes: verdicts(|c| c.bytes),
            by_reason: Reason::ALL
                .iter()
                .map(|r| (r.name().to_owned(), snap.counters.packets(*r)))
                .collect::<BTreeMap<_, _>>(),
            dropped_by_reason: Reason::ALL
                .iter()
                .map(|r| {
                    (
                        r.name().to_owned(),
                        snap.counters.get(*r, Verdict::Drop).packets,
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect::<BTreeMap<_, _>>(),
            last_read_ms: snap.read_duration.as_secs_f64() * 1e3,
            syn_cookies: cookie_status(&snap.cookies),
            crowdsec: self.crowdsec.running.as_ref().map(|c| {
                let h = &snap.crowdsec.health;
                CrowdSecStatus {
                    url: c.url.clone(),
                    up: h.up,
                    last_success_unix: h.last_success_unix,
                    whole_lists: h.whole_lists,
                    usage: h.usage.to_owned(),
                    reporting: c.machine.is_some(),
                    decisions: snap.crowdsec.decisions.clone(),
                }
            }),
        })
    }

    fn top(&self, latest: Option<&Snapshot>, n: usize, by: &str) -> Result<Top, String> {
        let snap = self.latest(latest)?;
        if n == 0 || n > TOP_MAX {
            return Err(format!("-n {n}: ask for 1 to {TOP_MAX} sources"));
        }
        let list = match by {
            "packets" => &snap.top_by_packets,
            "bytes" => &snap.top_by_bytes,
            "drops" => &snap.top_by_drops,
            other => return Err(format!("--by {other}: one of packets, bytes, drops")),
        };
        Ok(Top {
            by: by.to_owned(),
            sources: list.iter().take(n).cloned().collect(),
        })
    }

    /// The default limit and the rules in force that `keep` selects.
    fn rules_list(&self, keep: impl Fn(&Rule) -> bool) -> Rules {
        let p = self.policy();
        Rules {
            default: DefaultLimit {
                limit: (&p.default).into(),
                monitor: p.default_monitor,
                origin: if self.rules.default_override.is_some() {
                    Origin::Runtime
                } else {
                    Origin::Config
                },
            },
            rules: self
                .rules
                .all(&self.config)
                .into_iter()
                .filter(|(e, _)| keep(&e.rule))
                .map(|(e, origin)| RuleLine::new(&e.rule, e.comment, origin))
                .collect(),
        }
    }

    fn rules_add(
        &mut self,
        cidr: &str,
        action: &str,
        limit: &LimitSpec,
        (monitor, force): (bool, bool),
        comment: Option<String>,
    ) -> Result<RuleChanged, String> {
        let net = parse_cidr(cidr)?;
        if let Some((_, origin)) = self.rules.find(&self.config, net) {
            return Err(match origin {
                Origin::Runtime => format!(
                    "{net} already has a rule; `tollgate rules remove {net}` first, or `tollgate limit set --cidr {net}` to change a limit's numbers"
                ),
                _ => format!(
                    "{net} already has a rule in {}; change it there and run `tollgate reload`, or `tollgate limit set --cidr {net}` to change a limit's numbers at runtime",
                    self.config.path.display()
                ),
            });
        }
        let rule = parse_rule(&net.to_string(), action, limit, monitor)?;
        if matches!(rule.action, Action::Deny) {
            guard_catch_all(&net, "a deny rule", force)?;
        }
        guard_rule(&self.config.management, &rule)?;
        self.change_rules(|book| {
            book.runtime.push(RuleEntry {
                rule,
                comment,
                origin: Origin::Runtime,
            });
            Ok(())
        })?;
        Ok(RuleChanged {
            added: Some(net.to_string()),
            removed: None,
        })
    }

    fn rules_remove(&mut self, cidr: &str) -> Result<RuleChanged, String> {
        let net = parse_cidr(cidr)?;
        let Some(i) = self.rules.runtime.iter().position(|e| e.rule.net == net) else {
            if self.config.rules.iter().any(|e| e.rule.net == net)
                || self.config.management.contains(&net)
            {
                return Err(format!(
                    "the rule for {net} comes from {}; remove it there and run `tollgate reload`",
                    self.config.path.display()
                ));
            }
            return Err(format!(
                "no rule for {net}; `tollgate rules list` shows them"
            ));
        };
        self.change_rules(|book| {
            book.runtime.remove(i);
            Ok(())
        })?;
        Ok(RuleChanged {
            added: None,
            removed: Some(net.to_string()),
        })
    }

    fn ban_add(
        &mut self,
        cidr: &str,
        ttl: &str,
        reason: Option<String>,
        force: bool,
        actor: &str,
    ) -> Result<Banned, String> {
        let net = parse_cidr(cidr)?;
        let ttl = ban_ttl(ttl).map_err(|e| format!("--ttl {e}"))?;
        guard_catch_all(&net, "a ban", force)?;
        guard_ban(&self.config.management, &net)?;
        self.bans
            .place(
                &mut self.tg.maps,
                net,
                ttl,
                reason.clone(),
                BanBy {
                    origin: "cli",
                    count_as: "manual",
                    scenario: None,
                },
            )
            .map_err(|e| e.to_string())?;
        self.save()?;
        let e = event(
            "ban_added",
            Some(self.redact.net(net)),
            "banned",
            format!(
                "banned for {}s by an operator: {}",
                ttl.as_secs(),
                reason.as_deref().unwrap_or("no reason given")
            ),
        )
        .by(actor)
        .value("ttl_seconds", ttl.as_secs() as f64);
        self.events.push(e);
        Ok(Banned {
            banned: net.to_string(),
            ttl_seconds: ttl.as_secs(),
        })
    }

    fn ban_list(&self) -> Bans {
        let now = coarse_ns();
        Bans {
            bans: self
                .bans
                .in_force(now)
                .map(|(n, b)| BanLine {
                    cidr: n.to_string(),
                    remaining_seconds: (b.until_mono_ns - now) / 1_000_000_000,
                    reason: b.reason.clone(),
                    origin: b.origin.clone(),
                    scenario: b.scenario.clone(),
                })
                .collect(),
        }
    }

    fn ban_remove(&mut self, cidr: &str, actor: &str) -> Result<Unbanned, String> {
        let net = parse_cidr(cidr)?;
        if !self
            .bans
            .lift(&mut self.tg.maps, net)
            .map_err(|e| e.to_string())?
        {
            return Err(format!("no ban on {net}; `tollgate ban list` shows them"));
        }
        self.save()?;
        let source = self.redact.net(net);
        self.events.push(
            event(
                "ban_removed",
                Some(source),
                "unbanned",
                "ban lifted by an operator".into(),
            )
            .by(actor),
        );
        Ok(Unbanned {
            unbanned: net.to_string(),
        })
    }
}
