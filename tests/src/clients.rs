//! Legitimate clients under load: a pool of source addresses in one
//! namespace opening new TCP connections at a fixed total rate, round
//! robin over the addresses, each socket bound to its address, each
//! request a `GET /` with `Connection: close` that must complete within a
//! deadline. Addresses come in two classes: **existing** ones have made
//! requests before the attack (`Pool::warm_up`), **new** ones make their
//! first only during it, the clients a SYN-flood defence most easily
//! shuts out.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{NetNs, http::fetch};

/// Most concurrent requests (threads) a run may need: rate × deadline.
const MAX_WORKERS: u64 = 2_000;
/// A worker's stack: it only holds one request's buffers.
const WORKER_STACK: usize = 256 * 1024;
/// Most bytes a response may have (the pool asks for `/`, a small page).
const MAX_RESPONSE: u64 = 64 * 1024;

/// Which class a source address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Made requests before the attack started.
    Existing,
    /// Makes its first requests during the attack.
    New,
}

/// The load: how many connections per second in all, for how long, each
/// allowed `deadline` (connect, request and response); on CPU `cpu` if
/// given.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub rate: u64,
    pub duration: Duration,
    pub deadline: Duration,
    pub cpu: Option<usize>,
}

impl Load {
    /// 300 new connections/s with a 1 s deadline, an API client's
    /// patience: one lost SYN (retransmitted after 1 s) already fails.
    pub fn api(duration: Duration) -> Self {
        Self {
            rate: 300,
            duration,
            deadline: Duration::from_secs(1),
            cpu: None,
        }
    }
}

/// What one class saw.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub total: u64,
    /// Latencies of the successful requests, sorted.
    latencies: Vec<Duration>,
}

impl Tally {
    pub fn success(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.ok as f64 / self.total as f64
        }
    }

    /// The `q` quantile (0..=1) of the successful requests' latency.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        let n = self.latencies.len();
        (n > 0).then(|| self.latencies[((n - 1) as f64 * q).round() as usize])
    }

    pub fn p50(&self) -> Option<Duration> {
        self.latency(0.50)
    }

    pub fn p99(&self) -> Option<Duration> {
        self.latency(0.99)
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
        write!(
            f,
            "{}/{} ({:.2}%), p50 {} ms, p99 {} ms",
            self.ok,
            self.total,
            100.0 * self.success(),
            ms(self.p50()),
            ms(self.p99())
        )
    }
}

/// A run's results per class.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub existing: Tally,
    pub new: Tally,
}

impl Report {
    /// Both classes together.
    pub fn all(&self) -> Tally {
        let mut latencies: Vec<Duration> = self
            .existing
            .latencies
            .iter()
            .chain(&self.new.latencies)
            .copied()
            .collect();
        latencies.sort_unstable();
        Tally {
            ok: self.existing.ok + self.new.ok,
            total: self.existing.total + self.new.total,
            latencies,
        }
    }
}

/// Source addresses by class and the server's address per family.
pub struct Pool {
    /// Interleaved, so both classes are spread over the run evenly.
    sources: Vec<(Class, IpAddr)>,
    to_v4: Option<SocketAddr>,
    to_v6: Option<SocketAddr>,
}

impl Pool {
    /// A pool of `existing` and `new` addresses (the lab must have them on
    /// the clients' interface) requesting `/` from `targets` (one per
    /// family in use).
    pub fn new(
        existing: &[IpAddr],
        new: &[IpAddr],
        targets: &[SocketAddr],
    ) -> anyhow::Result<Self> {
        let to_v4 = targets.iter().copied().find(SocketAddr::is_ipv4);
        let to_v6 = targets.iter().copied().find(SocketAddr::is_ipv6);
        let mut sources = Vec::new();
        for i in 0..existing.len().max(new.len()) {
            sources.extend(existing.get(i).map(|a| (Class::Existing, *a)));
            sources.extend(new.get(i).map(|a| (Class::New, *a)));
        }
        for (_, a) in &sources {
            let to = if a.is_ipv4() { to_v4 } else { to_v6 };
            anyhow::ensure!(to.is_some(), "no target of {a}'s family");
        }
        anyhow::ensure!(!sources.is_empty(), "a pool needs source addresses");
        Ok(Self {
            sources,
            to_v4,
            to_v6,
        })
    }

    /// Requests from the existing addresses only, before the attack (each
    /// address makes at least one).
    pub fn warm_up(&self, ns: &NetNs, load: &Load) -> anyhow::Result<Tally> {
        let existing: Vec<_> = self
            .sources
            .iter()
            .copied()
            .filter(|(c, _)| *c == Class::Existing)
            .collect();
        let report = self.run_over(ns, &existing, load)?;
        Ok(report.existing)
    }

    /// Requests from every address, round robin, at `load`.
    pub fn run(&self, ns: &NetNs, load: &Load) -> anyhow::Result<Report> {
        self.run_over(ns, &self.sources, load)
    }

    fn target(&self, from: IpAddr) -> SocketAddr {
        let to = if from.is_ipv4() {
            self.to_v4
        } else {
            self.to_v6
        };
        to.expect("checked in Pool::new")
    }

    /// Request `i` goes out at `i / rate` from `sources[i % len]`, on
    /// worker `i % workers`: with `rate × deadline` workers and a margin,
    /// a worker is free again before its next request is due, so slow
    /// requests never delay the schedule.
    fn run_over(
        &self,
        ns: &NetNs,
        sources: &[(Class, IpAddr)],
        load: &Load,
    ) -> anyhow::Result<Report> {
        anyhow::ensure!(!sources.is_empty(), "no source addresses for this run");
        let total = (load.rate as f64 * load.duration.as_secs_f64()) as u64;
        let interval = Duration::from_secs_f64(1.0 / load.rate.max(1) as f64);
        let workers =
            (load.rate as f64 * load.deadline.as_secs_f64()).ceil() as u64 + load.rate / 10 + 2;
        anyhow::ensure!(
            workers <= MAX_WORKERS,
            "{} connections/s with a {:?} deadline needs {workers} workers (at most {MAX_WORKERS})",
            load.rate,
            load.deadline
        );
        let report = Mutex::new(Report::default());
        let start = Instant::now();
        ns.enter(|| -> anyhow::Result<()> {
            std::thread::scope(|s| -> anyhow::Result<()> {
                for w in 0..workers.min(total) {
                    let report = &report;
                    std::thread::Builder::new()
                        .stack_size(WORKER_STACK)
                        .spawn_scoped(s, move || {
                            if let Some(c) = load.cpu {
                                crate::traffic::pin_thread(c).expect("pinning a client worker");
                            }
                            let mut i = w;
                            while i < total && !crate::traffic::stopped() {
                                let due = interval * i as u32;
                                if let Some(wait) = due.checked_sub(start.elapsed()) {
                                    std::thread::sleep(wait);
                                }
                                let (class, from) = sources[i as usize % sources.len()];
                                let t = Instant::now();
                                let ok = fetch(
                                    Some(from),
                                    self.target(from),
                                    "/",
                                    load.deadline,
                                    MAX_RESPONSE,
                                )
                                .is_some_and(|f| f.status == 200);
                                let took = t.elapsed();
                                let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                                let tally = match class {
                                    Class::Existing => &mut r.existing,
                                    Class::New => &mut r.new,
                                };
                                tally.total += 1;
                                if ok {
                                    tally.ok += 1;
                                    tally.latencies.push(took);
                                }
                                i += workers;
                            }
                        })
                        .context("starting a client worker")?;
                }
                Ok(())
            })
        })??;
        let mut report = report.into_inner().unwrap_or_else(|e| e.into_inner());
        report.existing.latencies.sort();
        report.new.latencies.sort();
        Ok(report)
    }
}
