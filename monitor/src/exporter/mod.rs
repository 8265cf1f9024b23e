//! Prometheus metrics: the daemon's latest snapshot rendered by the
//! `prometheus` crate, served over HTTP by an axum `Router` (tests call the
//! router without a port).

mod crowdsec;

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use monitor_common::{
    maps::source_event,
    reason::{Malformed, Reason, Verdict},
    syncookie::cookie_event,
};
use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::snapshot::{CookieStats, Snapshot};

/// Every metric the daemon exports, registered once.
pub struct Metrics {
    registry: Registry,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    malformed: IntCounterVec,
    tracked: IntGauge,
    capacity: IntGauge,
    evictions: IntCounter,
    insert_failures: IntCounter,
    probation: IntCounter,
    refused_new: IntCounter,
    bans_active: IntGauge,
    rules: IntGauge,
    top_packets: IntGaugeVec,
    top_dropped: IntGaugeVec,
    map_read: Gauge,
    response: ResponseMetrics,
    scrape: Gauge,
    cookies: CookieMetrics,
    crowdsec: crowdsec::CrowdSecMetrics,
    top_n: usize,
    /// Serializes updates and scrapes so a scrape sees one snapshot.
    lock: Mutex<()>,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn int_counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric definition");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn float_gauge(r: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).expect("valid metric definition");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

impl Metrics {
    pub fn new(top_n: usize) -> Arc<Self> {
        let r = Registry::new();
        let m = Self {
            packets: counter_vec(
                &r,
                "tollgate_packets_total",
                "Packets seen by the XDP program, by interface, verdict (pass, drop, monitor: would have been dropped, passed because its rule is in monitor mode; tx: answered from XDP with a SYN cookie's SYN-ACK) and reason.",
                &["iface", "verdict", "reason"],
            ),
            bytes: counter_vec(
                &r,
                "tollgate_bytes_total",
                "Bytes seen by the XDP program (frame length from the Ethernet header), by interface, verdict and reason.",
                &["iface", "verdict", "reason"],
            ),
            malformed: counter_vec(
                &r,
                "tollgate_malformed_packets_total",
                "Packets whose headers could not be read, by the header that failed.",
                &["header"],
            ),
            tracked: gauge(
                &r,
                "tollgate_sources_tracked",
                "Sources in the kernel's per-source table.",
            ),
            capacity: gauge(
                &r,
                "tollgate_sources_capacity",
                "Capacity of the per-source table (slots).",
            ),
            evictions: int_counter(
                &r,
                "tollgate_source_evictions_total",
                "Sources evicted from the full per-source table to make room for new ones.",
            ),
            insert_failures: int_counter(
                &r,
                "tollgate_source_insert_failures_total",
                "Packets passed untracked because the per-source table refused an insert.",
            ),
            probation: int_counter(
                &r,
                "tollgate_source_probation_total",
                "First packets of never-seen sources judged without a slot during a spoofed-source storm (they claim one with their second).",
            ),
            refused_new: int_counter(
                &r,
                "tollgate_source_refused_new_total",
                "Packets of never-seen sources that their prefixes' budgets refused before they claimed a slot (a storm over a spent prefix claims none).",
            ),
            bans_active: gauge(&r, "tollgate_bans_active", "Bans in force in the kernel."),
            rules: gauge(
                &r,
                "tollgate_policy_rules",
                "CIDR rules in the kernel policy, management networks included.",
            ),
            top_packets: gauge_vec(
                &r,
                "tollgate_top_talker_packets",
                "Packets seen from each of the top talkers (top N by packets; addresses redacted as the logs are).",
                &["rank", "source"],
            ),
            top_dropped: gauge_vec(
                &r,
                "tollgate_top_talker_dropped_packets",
                "Packets dropped from each of the top talkers.",
                &["rank", "source"],
            ),
            map_read: float_gauge(
                &r,
                "tollgate_map_read_duration_seconds",
                "Time the last full read of the kernel maps (counters and the whole source table) took.",
            ),
            scrape: float_gauge(
                &r,
                "tollgate_scrape_duration_seconds",
                "Time rendering the previous scrape took.",
            ),
            response: ResponseMetrics::new(&r),
            cookies: CookieMetrics::new(&r),
            crowdsec: crowdsec::CrowdSecMetrics::new(&r),
            top_n,
            lock: Mutex::new(()),
            registry: r,
        };
        m.label_from_the_start();
        Arc::new(m)
    }

    /// Every detector and ban reason, and the build, exported from the
    /// start (at 0) so rate() and alerts work before the first event.
    fn label_from_the_start(&self) {
        self.response.label_from_the_start();
        for result in ["valid", "invalid"] {
            self.cookies.acks.with_label_values(&[result]);
        }
        gauge_vec(
            &self.registry,
            "tollgate_build_info",
            "Build information; always 1.",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    }

    /// Brings every metric to the snapshot's values. Kernel counters are
    /// absolute (and survive daemon restarts), so the exported counters are
    /// moved up to them.
    pub fn update(&self, s: &Snapshot) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let raise = |c: &IntCounter, v: u64| {
            let cur = c.get();
            if v > cur {
                c.inc_by(v - cur);
            }
        };
        for (slot, name) in s.ifaces.iter().enumerate() {
            let per = &s.counters.by_iface[slot];
            // Slot 0 is traffic on no attached interface (test runs): shown
            // only if there is some.
            if slot == 0 && per.iter().flatten().all(|c| c.packets == 0) {
                continue;
            }
            for r in Reason::ALL {
                for v in Verdict::ALL {
                    // Every combination is exported, zeros included: a
                    // bounded Reason::COUNT x Verdict::COUNT series per
                    // interface that rate() can use from the first scrape.
                    let c = per[r as usize][v as usize];
                    raise(
                        &self.packets.with_label_values(&[name, v.name(), r.name()]),
                        c.packets,
                    );
                    raise(
                        &self.bytes.with_label_values(&[name, v.name(), r.name()]),
                        c.bytes,
                    );
                }
            }
        }
        // Every header, zeros included (11 series): the alert on malformed
        // packets sees a 0 from the first scrape.
        for m in Malformed::ALL.iter().skip(1) {
            let c = s.counters.malformed[*m as usize];
            raise(&self.malformed.with_label_values(&[m.name()]), c.packets);
        }
        self.tracked.set(s.tracked as i64);
        self.capacity.set(s.capacity as i64);
        raise(
            &self.evictions,
            s.counters.source_events[source_event::EVICTED as usize],
        );
        raise(
            &self.insert_failures,
            s.counters.source_events[source_event::INSERT_FAILED as usize],
        );
        raise(
            &self.probation,
            s.counters.source_events[source_event::PROBATION as usize],
        );
        raise(
            &self.refused_new,
            s.counters.source_events[source_event::REFUSED as usize],
        );
        self.bans_active.set(s.bans_active as i64);
        self.rules.set(s.rules as i64);
        self.top_packets.reset();
        self.top_dropped.reset();
        for (i, t) in s.top_by_packets.iter().take(self.top_n).enumerate() {
            let rank = (i + 1).to_string();
            self.top_packets
                .with_label_values(&[&rank, &t.source])
                .set(t.packets as i64);
            self.top_dropped
                .with_label_values(&[&rank, &t.source])
                .set(t.dropped as i64);
        }
        self.map_read.set(s.read_duration.as_secs_f64());
        self.response.update(s, raise);
        self.cookies.update(&s.cookies, raise);
        self.crowdsec.update(&s.crowdsec, raise);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let start = Instant::now();
        let text = {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut buf = Vec::new();
            let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
            String::from_utf8(buf).unwrap_or_default()
        };
        self.scrape.set(start.elapsed().as_secs_f64());
        text
    }
}

/// The SYN-cookie series.
/// What the detectors found and did: findings, bans, bans refused, and
/// the over-limit sources the full hot list could not take.
struct ResponseMetrics {
    detections: IntCounterVec,
    bans_refused: IntCounterVec,
    bans: IntCounterVec,
    hot_reports_lost: IntCounter,
    storm_demoted: IntCounter,
}

impl ResponseMetrics {
    fn new(r: &Registry) -> Self {
        Self {
            detections: counter_vec(
                r,
                "tollgate_detections_total",
                "Anomalies detected, by detector (flood, syn_flood, global_syn_flood, port_scan, spoofed_storm, spike, prefix_storm).",
                &["detector"],
            ),
            bans_refused: counter_vec(
                r,
                "tollgate_bans_refused_total",
                "Automatic bans not placed for want of room, by why (max_bans: detect.max_bans in force; map_full: the kernel's ban map; failed: another map error). The findings are still logged.",
                &["why"],
            ),
            bans: counter_vec(
                r,
                "tollgate_bans_total",
                "Bans placed, by reason (the detector that asked for it, or manual).",
                &["reason"],
            ),
            hot_reports_lost: int_counter(
                r,
                "tollgate_hot_reports_lost_total",
                "Over-limit sources the kernel could not put on the full hot list (8,192 per interval): judged only at the table walk, among its top talkers, and in aggregate by the storm detectors.",
            ),
            storm_demoted: int_counter(
                r,
                "tollgate_storm_sources_demoted_total",
                "Sources first seen since a storm began, tracked and showing nothing of being real, that gave their slots back when it was found: judged since as never-seen sources, on their prefix's unproven budget.",
            ),
        }
    }

    fn label_from_the_start(&self) {
        for d in monitor_common::detect::Detector::ALL {
            self.detections.with_label_values(&[d.name()]);
            self.bans.with_label_values(&[d.name()]);
        }
        self.bans.with_label_values(&["manual"]);
        for why in crate::snapshot::BANS_REFUSED {
            self.bans_refused.with_label_values(&[why]);
        }
    }

    fn update(&self, s: &Snapshot, raise: impl Fn(&IntCounter, u64)) {
        for (d, n) in &s.detections {
            raise(&self.detections.with_label_values(&[d]), *n);
        }
        for (r, n) in &s.bans_by_reason {
            raise(&self.bans.with_label_values(&[r]), *n);
        }
        for (why, n) in &s.bans_refused {
            raise(&self.bans_refused.with_label_values(&[why]), *n);
        }
        raise(&self.hot_reports_lost, s.hot_reports_lost);
        raise(&self.storm_demoted, s.storm_demoted);
    }
}

struct CookieMetrics {
    sent: IntCounter,
    acks: IntCounterVec,
    verified_syns: IntCounter,
    failures: IntCounter,
    verified: IntGauge,
    /// Labelled with the configured mode, so an alert can tell a host
    /// that always answers from one under attack.
    mode: IntGaugeVec,
    mode_changes: IntCounter,
}

impl CookieMetrics {
    fn new(r: &Registry) -> Self {
        let verified_capacity = gauge(
            r,
            "tollgate_syn_cookies_verified_capacity",
            "Verified sources the kernel remembers; past it the least recently verified is forgotten and proves itself with a fresh cookie on its next SYN.",
        );
        // A constant: set once, held by the registry.
        verified_capacity.set(monitor_common::syncookie::MAX_VERIFIED as i64);
        Self {
            sent: int_counter(
                r,
                "tollgate_syn_cookies_sent_total",
                "SYN-ACKs carrying a SYN cookie sent from XDP (XDP_TX) to unverified sources.",
            ),
            acks: counter_vec(
                r,
                "tollgate_syn_cookie_acks_total",
                "ACKs from unverified sources to protected ports, by whether the kernel accepted their cookie (valid: the source is now verified; invalid: dropped while cookies are on).",
                &["result"],
            ),
            verified_syns: int_counter(
                r,
                "tollgate_syn_cookie_verified_syns_total",
                "SYNs to protected ports passed to the stack because their source is verified.",
            ),
            failures: int_counter(
                r,
                "tollgate_syn_cookie_failures_total",
                "SYNs the XDP program meant to answer but could not (dropped; the client sends again).",
            ),
            verified: gauge(
                r,
                "tollgate_syn_cookies_verified_sources",
                "Sources that returned a valid SYN cookie and are still verified.",
            ),
            mode: gauge_vec(
                r,
                "tollgate_syn_cookies_mode",
                "SYN-cookie mode: 0 off (not configured), 1 watch (SYNs go to the socket), 2 on (answered from XDP); configured: always, under_attack or none.",
                &["configured"],
            ),
            mode_changes: int_counter(
                r,
                "tollgate_syn_cookie_mode_changes_total",
                "SYN-cookie mode changes since the daemon started.",
            ),
        }
    }

    fn update(&self, c: &CookieStats, raise: impl Fn(&IntCounter, u64)) {
        let n = |e: u32| c.events[e as usize];
        raise(&self.sent, n(cookie_event::SENT));
        raise(
            &self.acks.with_label_values(&["valid"]),
            n(cookie_event::ACK_VALID),
        );
        raise(
            &self.acks.with_label_values(&["invalid"]),
            n(cookie_event::ACK_INVALID),
        );
        raise(&self.verified_syns, n(cookie_event::VERIFIED_SYN));
        raise(&self.failures, n(cookie_event::FAILED));
        self.verified.set(c.verified as i64);
        let configured = c.configured.map_or("none", |m| m.name());
        self.mode.reset();
        self.mode
            .with_label_values(&[configured])
            .set(c.mode as i64);
        raise(&self.mode_changes, c.mode_changes);
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
}

/// `GET /metrics`.
pub fn router(m: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(m)
}

#[cfg(test)]
mod tests {
    use monitor_common::syncookie::cookie_mode;

    use super::*;

    #[test]
    fn cookie_series_follow_the_snapshot() {
        let m = Metrics::new(5);
        let text = m.render();
        assert!(text.contains("tollgate_syn_cookie_acks_total{result=\"invalid\"} 0"));
        assert!(!text.contains("tollgate_syn_cookies_mode{"));
        m.update(&Snapshot::default());
        let text = m.render();
        assert!(text.contains("tollgate_syn_cookies_mode{configured=\"none\"} 0"));
        let mut s = Snapshot::default();
        s.cookies.mode = cookie_mode::ON;
        s.cookies.configured = Some(crate::config::CookieMode::UnderAttack);
        s.cookies.events = [10, 4, 3, 2, 1];
        s.cookies.verified = 7;
        s.cookies.mode_changes = 2;
        m.update(&s);
        let text = m.render();
        for line in [
            "tollgate_syn_cookies_sent_total 10",
            "tollgate_syn_cookie_acks_total{result=\"valid\"} 4",
            "tollgate_syn_cookie_acks_total{result=\"invalid\"} 3",
            "tollgate_syn_cookie_verified_syns_total 2",
            "tollgate_syn_cookie_failures_total 1",
            "tollgate_syn_cookies_verified_sources 7",
            "tollgate_syn_cookies_verified_capacity 262144",
            "tollgate_syn_cookies_mode{configured=\"under_attack\"} 2",
            "tollgate_syn_cookie_mode_changes_total 2",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}

#[cfg(test)]
mod every_series {
    use super::*;

    /// Every family has a sample before anything happened, so alerts
    /// and `rate()` see a 0 rather than no data.
    /// Every family has a sample from the first snapshot on (the daemon
    /// exports one before it serves), so alerts and `rate()` see a 0
    /// rather than no data. Top talkers alone wait for a talker.
    #[test]
    fn every_series_exists_at_zero_from_the_start() {
        let m = Metrics::new(5);
        m.update(&Snapshot {
            ifaces: vec![String::new(), "eth0".into()],
            ..Snapshot::default()
        });
        let text = m.render();
        // Every name this file registers (the registry leaves a family
        // without samples out of its output altogether).
        let source = [include_str!("mod.rs"), include_str!("crowdsec.rs")].concat();
        let mut names: Vec<&str> = source
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| {
                s.starts_with("tollgate_")
                    && !s.starts_with("tollgate_top_talker_")
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() > 20, "{names:?}");
        let missing: Vec<&str> = names
            .into_iter()
            .filter(|name| {
                !text.lines().any(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                })
            })
            .collect();
        assert!(missing.is_empty(), "no sample at start: {missing:?}");
        assert!(text.contains("tollgate_malformed_packets_total{header=\"tcp\"} 0"));
        assert!(text.contains(
            "tollgate_packets_total{iface=\"eth0\",reason=\"banned\",verdict=\"drop\"} 0"
        ));
    }
}
