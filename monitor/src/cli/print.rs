//! The text the CLI prints for each typed reply (`--json` prints the reply
//! itself).

use crate::{
    control::replies::{
        Banned, Bans, CookieStatus, DetectState, Explanation, LimitChanged, LimitNumbers, Reloaded,
        RuleChanged, RuleLine, Rules, Status, ThresholdChanged, Top, Unbanned,
    },
    events::Event,
};

/// How a reply reads as text.
pub trait Text {
    fn text(&self) -> String;
}

impl Text for Status {
    fn text(&self) -> String {
        let by_reason: Vec<String> = self
            .by_reason
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let mut cookies = match &self.syn_cookies {
            Some(c) => format!("\n{}", cookie_text(c)),
            None => String::new(),
        };
        if let Some(c) = &self.crowdsec {
            let decisions: Vec<String> = c
                .decisions
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            cookies.push_str(&format!(
                "\ncrowdsec: {} {}, last pull {}, alerts {}, usage metrics {}; decisions: {}",
                c.url,
                if c.up { "up" } else { "DOWN" },
                if c.last_success_unix > 0.0 {
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH
                            + std::time::Duration::from_secs_f64(c.last_success_unix),
                    )
                    .to_string()
                } else {
                    "never".into()
                },
                if c.reporting {
                    "reported"
                } else {
                    "not reported (no machine)"
                },
                c.usage,
                if decisions.is_empty() {
                    "none yet".into()
                } else {
                    decisions.join(" ")
                }
            ));
        }
        format!(
            "tollgate {} on {} ({}), up {}s\npackets: {} passed, {} dropped, {} monitored, {} answered with a SYN cookie\nsources: {} tracked of {}, {} evicted; bans active: {}\nrules: {} from config, {} runtime, {} management\nby reason: {}{cookies}",
            self.version,
            self.interfaces.join(", "),
            self.attach_mode,
            self.uptime_seconds,
            self.packets.pass,
            self.packets.drop,
            self.packets.monitor,
            self.packets.tx,
            self.sources.tracked,
            self.sources.capacity,
            self.sources.evicted,
            self.bans_active,
            self.rules.config,
            self.rules.runtime,
            self.rules.management,
            by_reason.join(" ")
        )
    }
}

/// The `syn cookies:` lines of `status`.
fn cookie_text(c: &CookieStatus) -> String {
    let ports: Vec<String> = c.ports.iter().map(u16::to_string).collect();
    format!(
        "syn cookies: {} ({}) on ports {}; {} sources verified, {} mode changes\n  {} SYN-ACKs sent, cookie ACKs {} valid / {} invalid, {} SYNs from verified sources passed, {} could not be answered (dropped)",
        c.mode,
        c.configured,
        ports.join(", "),
        c.verified_sources,
        c.mode_changes,
        c.sent,
        c.acks_valid,
        c.acks_invalid,
        c.verified_syns,
        c.failures
    )
}

impl Text for Top {
    fn text(&self) -> String {
        let mut out = format!(
            "{:<28} {:>10} {:>10} {:>13} {:>14} {:>12}  {}",
            "source", "packets/s", "drops/s", "packets", "bytes", "dropped", "dropped for"
        );
        for s in &self.sources {
            out.push_str(&format!(
                "\n{:<28} {:>10} {:>10} {:>13} {:>14} {:>12}  {}",
                s.source,
                rate(s.pps),
                rate(s.drop_pps),
                number(s.packets as f64),
                number(s.bytes as f64),
                number(s.dropped as f64),
                s.drop_reason.as_deref().unwrap_or("-")
            ));
        }
        out
    }
}

fn limit_text(l: &LimitNumbers) -> String {
    let mut parts = Vec::new();
    if let (Some(r), Some(b)) = (l.packets_per_second, l.burst_packets) {
        parts.push(format!("{r} pps burst {b}"));
    }
    if let (Some(r), Some(b)) = (l.bytes_per_second, l.burst_bytes) {
        parts.push(format!("{r} B/s burst {b} B"));
    }
    parts.join(", ")
}

fn monitor_text(on: bool) -> &'static str {
    if on { " [monitor]" } else { "" }
}

fn rule_text(r: &RuleLine) -> String {
    format!(
        "{:<24} {:<6} {}{} ({}){}",
        r.cidr,
        r.action,
        r.limit.as_ref().map(limit_text).unwrap_or_default(),
        monitor_text(r.monitor),
        r.origin.name(),
        r.comment
            .as_deref()
            .map(|c| format!(" # {c}"))
            .unwrap_or_default()
    )
}

impl Text for Rules {
    fn text(&self) -> String {
        let d = &self.default;
        let mut out = format!(
            "default: {}{} ({})",
            limit_text(&d.limit),
            monitor_text(d.monitor),
            d.origin.name()
        );
        for r in &self.rules {
            out.push('\n');
            out.push_str(&rule_text(r));
        }
        out
    }
}

impl Text for LimitChanged {
    fn text(&self) -> String {
        format!(
            "ok: {} now {}{} ({})",
            self.cidr.as_deref().unwrap_or("default limit"),
            limit_text(&self.limit),
            monitor_text(self.monitor),
            self.origin.name()
        )
    }
}

impl Text for RuleChanged {
    fn text(&self) -> String {
        match (&self.added, &self.removed) {
            (Some(a), _) => format!("ok: added {a}"),
            (_, Some(r)) => format!("ok: removed {r}"),
            _ => "ok".into(),
        }
    }
}

impl Text for Banned {
    fn text(&self) -> String {
        format!("ok: banned {} for {}s", self.banned, self.ttl_seconds)
    }
}

impl Text for Unbanned {
    fn text(&self) -> String {
        format!("ok: unbanned {}", self.unbanned)
    }
}

impl Text for Bans {
    fn text(&self) -> String {
        if self.bans.is_empty() {
            return "no bans in force".into();
        }
        self.bans
            .iter()
            .map(|b| {
                format!(
                    "{:<28} {:>8}s left  {:<9} {}{}",
                    b.cidr,
                    b.remaining_seconds,
                    b.origin,
                    b.reason.as_deref().unwrap_or(""),
                    match &b.scenario {
                        Some(s) if b.reason.as_deref().is_none_or(|r| !r.contains(s.as_str())) => {
                            format!(" [{s}]")
                        }
                        _ => String::new(),
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Text for Reloaded {
    fn text(&self) -> String {
        let mut out = format!("ok: reloaded {} ({} rules)", self.reloaded, self.rules);
        for n in &self.notes {
            out.push_str(&format!("\nnote: {n}"));
        }
        out
    }
}

impl Text for Event {
    fn text(&self) -> String {
        let evidence: Vec<String> = self
            .evidence
            .iter()
            .map(|(k, r)| match r.limit {
                Some(l) => format!("{k}={} (line {})", number(r.observed), number(l)),
                None => format!("{k}={}", number(r.observed)),
            })
            .collect();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.unix_ms);
        format!(
            "#{} {} {}{} {} by {}: {}: {}{}",
            self.seq,
            humantime::format_rfc3339_seconds(at),
            self.kind,
            self.detector
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default(),
            self.source.as_deref().unwrap_or("-"),
            self.actor,
            self.action,
            self.message,
            if evidence.is_empty() {
                String::new()
            } else {
                format!(" [{}]", evidence.join(", "))
            }
        )
    }
}

/// A rate as `number` writes it, or `-` when it cannot be said.
pub fn rate(r: Option<f64>) -> String {
    r.map_or("-".into(), number)
}

/// A number as an operator reads it: whole numbers with thousands
/// separators, fractions to three significant digits at most.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x.fract() == 0.0 || x.abs() >= 100.0 {
        let n = x.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        return if n < 0 { format!("-{out}") } else { out };
    }
    let places = if x.abs() >= 10.0 { 1 } else { 2 };
    let s = format!("{x:.places$}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Text for Explanation {
    fn text(&self) -> String {
        let n = &self.next_packet;
        let mut out = vec![
            format!("{} (source {})", self.address, self.source),
            format!("next packet: {} ({}): {}", n.verdict, n.reason, n.why),
            match &self.rule {
                Some(r) => format!("rule: {}", rule_text(r)),
                None => "rule: none; the default limit applies".into(),
            },
        ];
        if let Some(l) = &self.limit {
            out.push(format!(
                "limit: {}{}",
                limit_text(l),
                monitor_text(self.monitor)
            ));
        }
        out.push(match &self.ban {
            Some(b) => format!(
                "ban: {} for {}s more ({})",
                b.cidr,
                b.remaining_seconds,
                b.reason.as_deref().unwrap_or("no reason given")
            ),
            None => "ban: none".into(),
        });
        out.push(match &self.tracked {
            Some(t) => {
                let level = |tokens: Option<u64>, burst: Option<u64>, unit: &str| match (tokens, burst) {
                    (Some(t), Some(b)) => format!("{t} of {b} {unit}s"),
                    _ => format!("no {unit} limit"),
                };
                format!(
                    "tracked: {} packets, {} bytes, {} dropped, {} SYNs; first seen {}s ago, last {}s ago
buckets: {}; {}",
                    t.packets,
                    t.bytes,
                    t.dropped,
                    t.syns,
                    t.first_seen_seconds_ago,
                    t.last_seen_seconds_ago,
                    level(t.packet_tokens, t.burst_packets, "packet"),
                    level(t.byte_tokens, t.burst_bytes, "byte"),
                )
            }
            None => "tracked: no (nothing seen from its source since the table last made room)".into(),
        });
        if let Some(v) = self.cookie_verified {
            out.push(format!(
                "syn cookies: {}",
                if v {
                    "verified"
                } else {
                    "not verified: its next SYN gets a cookie"
                }
            ));
        }
        if !self.events.is_empty() {
            out.push("events:".into());
            out.extend(self.events.iter().map(|e| format!("  {}", e.text())));
        }
        out.join("\n")
    }
}

impl Text for DetectState {
    fn text(&self) -> String {
        let mut out = Vec::new();
        for d in &self.detectors {
            let t: Vec<String> = d
                .thresholds
                .iter()
                .map(|t| format!("{}={} ({})", t.key, number(t.value), t.origin.name()))
                .collect();
            out.push(format!(
                "{:<17} {:<8} {:>6} found  {}",
                d.name,
                d.mode,
                d.detections,
                if t.is_empty() {
                    "(the prefix budgets of [prefix_limit])".into()
                } else {
                    t.join(", ")
                }
            ));
        }
        let l = &self.learned;
        out.push(format!(
            "learned: {} ± {} packets/s, {} ± {} new sources/s, {} SYNs/s outside floods, a typical source {} packets/s{}",
            number(l.packets_per_second_mean),
            number(l.packets_per_second_stddev),
            number(l.new_sources_per_second_mean),
            number(l.new_sources_per_second_stddev),
            number(l.syn_per_second_mean),
            number(l.typical_source_pps),
            if l.warmup_intervals_left > 0 {
                format!(" (warming up: {} intervals before the baselines count)", l.warmup_intervals_left)
            } else {
                String::new()
            }
        ));
        out.push(match &self.readings {
            Some(r) => format!(
                "now: {} packets/s, {} SYNs/s, {} new sources/s ({} bogon), {} prefix refusals/s",
                number(r.packets_per_second),
                number(r.syn_per_second),
                number(r.new_sources_per_second),
                number(r.bogon_sources_per_second),
                number(r.prefix_refusals_per_second)
            ),
            None => "now: no reading yet (the first interval)".into(),
        });
        out.push(format!(
            "bans: {} of at most {}; host-wide SYN limit: {}; storm answer: {}",
            self.bans_active,
            number(self.max_bans as f64),
            if self.syn_limit_active { "on" } else { "off" },
            if self.storm_answer_active {
                "on"
            } else {
                "off"
            },
        ));
        out.join("\n")
    }
}

impl Text for ThresholdChanged {
    fn text(&self) -> String {
        format!(
            "ok: {} now {} ({})",
            self.key,
            number(self.value),
            self.origin.name()
        )
    }
}

impl Text for Vec<ThresholdChanged> {
    fn text(&self) -> String {
        if self.is_empty() {
            return "ok: no threshold was changed at run time".into();
        }
        self.iter().map(Text::text).collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_an_operator_writes_them() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(600.0), "600");
        assert_eq!(number(12345.678), "12,346");
        assert_eq!(number(-1234567.0), "-1,234,567");
        assert_eq!(number(42.25), "42.2");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1.0 / 3.0), "0.33");
    }

    #[test]
    fn an_event_says_when_who_and_its_numbers_without_raw_floats() {
        let e = crate::events::event(
            "detection",
            Some("192.0.2.7".into()),
            "banned for 60s",
            "over the line".into(),
        )
        .by("detector flood")
        .reading("packets_per_second", 12345.678, 1000.0);
        let mut e = Event {
            unix_ms: 1_796_000_000_000,
            seq: 3,
            ..e
        };
        e.detector = Some("flood".into());
        let t = e.text();
        assert_eq!(
            t,
            "#3 2026-11-30T00:53:20Z detection flood 192.0.2.7 by detector flood: banned for 60s: over the line [packets_per_second=12,346 (line 1,000)]"
        );
        let ban = crate::events::event(
            "ban_added",
            Some("192.0.2.8".into()),
            "banned",
            "by hand".into(),
        )
        .by("cli uid 0")
        .value("ttl_seconds", 600.0);
        let t = ban.text();
        assert!(
            t.ends_with("by cli uid 0: banned: by hand [ttl_seconds=600]"),
            "{t}"
        );
        assert!(!t.contains("line 0"), "{t}");
    }
}
