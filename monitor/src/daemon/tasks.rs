//! The daemon's tasks and signals: the stats loop (read, detect,
//! respond, export), the exporter, the control server, the watchdog, and
//! SIGHUP (reload), SIGTERM and SIGINT (stop). They share the `Daemon`
//! through one mutex, taken on blocking threads only.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinHandle,
};

use super::Daemon;
use crate::{
    config::Config,
    control,
    events::cli_actor,
    exporter::{self, Metrics},
    notify::{notify, watchdog_interval},
    redact::Redactor,
    snapshot::Snapshot,
};

pub(super) type Shared = Arc<Mutex<Daemon>>;
type Latest = Arc<Mutex<Option<Arc<Snapshot>>>>;

/// The lock, also after a panic elsewhere (the state stays usable: every
/// change is applied whole or not at all).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pets the systemd watchdog only while the map owner answers: a wedged
/// daemon is restarted (the kernel keeps enforcing meanwhile).
fn spawn_watchdog(daemon: &Shared) -> Option<JoinHandle<()>> {
    let every = watchdog_interval()?;
    let daemon = daemon.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let d = daemon.clone();
            if tokio::task::spawn_blocking(move || lock(&d).tg.maps.runtime_config().is_ok())
                .await
                .unwrap_or(false)
            {
                notify("WATCHDOG=1");
            }
        }
    }))
}

/// Every `interval`: expired bans swept, the kernel's filters kept, the
/// maps read (the source table every `scan_every` intervals), the
/// detectors run, the metrics updated.
fn spawn_stats(
    daemon: &Shared,
    latest: &Latest,
    metrics: Arc<Metrics>,
    interval: Duration,
    scan_every: u64,
) -> JoinHandle<()> {
    let (daemon, latest) = (daemon.clone(), latest.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            let d = daemon.clone();
            let prev = lock(&latest).clone();
            let walk = n.is_multiple_of(scan_every);
            n += 1;
            let res = tokio::task::spawn_blocking(move || {
                let mut daemon = lock(&d);
                daemon.sweep_bans();
                daemon.refit_programs();
                daemon.refresh_verified_filter();
                daemon.keep_source_filter();
                let snap = daemon.snapshot(walk, prev.as_deref())?;
                daemon.detect(&snap);
                Ok::<_, anyhow::Error>(snap)
            })
            .await;
            match res {
                Ok(Ok(s)) => {
                    metrics.update(&s);
                    *lock(&latest) = Some(Arc::new(s));
                }
                Ok(Err(e)) => tracing::warn!(event = "read_failed", "reading the maps: {e:#}"),
                Err(e) => tracing::warn!(event = "read_failed", "reading the maps: {e}"),
            }
        }
    })
}

/// The control server's handler: each request against the daemon, with
/// the latest snapshot for the read-only ones.
fn handler(daemon: &Shared, latest: &Latest) -> control::Handler {
    let (daemon, latest) = (daemon.clone(), latest.clone());
    Arc::new(move |req, peer| {
        let snap = lock(&latest).clone();
        lock(&daemon).handle(req, snap.as_deref(), &cli_actor(peer.uid))
    })
}

/// Waits for SIGTERM or SIGINT, reloading on SIGHUP meanwhile.
async fn until_stopped(daemon: &Shared) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                notify("RELOADING=1");
                let d = daemon.clone();
                match tokio::task::spawn_blocking(move || lock(&d).reload("config (SIGHUP)")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(event = "reload_failed", "{e}"),
                    Err(e) => tracing::error!(event = "reload_failed", "{e}"),
                }
                notify("READY=1");
            }
        }
    }
}

/// The CrowdSec loop, with `[crowdsec]`, on `lapi` (made before the
/// daemon attached): its thread ends when the daemon's sending side of
/// the alert queue is dropped at stop; `stopped` keeps a pull in flight
/// from changing anything after the final save.
fn start_crowdsec(
    config: &Config,
    lapi: Option<crate::crowdsec::Lapi>,
    daemon: &Shared,
    stopped: &Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let (Some(c), Some(lapi)) = (&config.crowdsec, lapi) else {
        return Ok(());
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let health = {
        let mut d = lock(daemon);
        d.crowdsec.reports = Some(tx);
        // Alerts only with a machine to post them as.
        d.crowdsec.report_alerts = c.machine.is_some();
        d.crowdsec.running = Some(c.clone());
        d.crowdsec.health.clone()
    };
    let host = super::crowdsec::DaemonHost(daemon.clone(), stopped.clone());
    let pace = crate::crowdsec::Pace {
        poll: c.poll_interval,
        resync: c.resync_interval,
    };
    crate::crowdsec::spawn(lapi, pace, host, rx, health).context("[crowdsec]")?;
    tracing::info!(event = "crowdsec_started", url = %c.url, poll_ms = c.poll_interval.as_millis() as u64, resync_ms = c.resync_interval.as_millis() as u64, alerts = c.machine.is_some(), "pulling decisions from the CrowdSec Local API");
    Ok(())
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let redact = Redactor::new(&config.log)?;
    let interval = config.interval;
    let scan_every = (config.scan_interval.as_millis() / interval.as_millis().max(1)).max(1) as u64;
    let metrics_addr = config.metrics_listen;
    let socket_path: PathBuf = config.socket.clone();
    let mut daemon = Daemon::new(config.clone(), redact)?;
    // The Local API's secrets are read before attaching: a key file
    // missing stops the start with nothing attached.
    let lapi = config
        .crowdsec
        .as_ref()
        .map(crate::crowdsec::Lapi::new)
        .transpose()
        .context("[crowdsec]")?;
    daemon.attach_all()?;
    let daemon: Shared = Arc::new(Mutex::new(daemon));
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    start_crowdsec(&config, lapi, &daemon, &stopped)?;
    let latest: Latest = Arc::new(Mutex::new(None));
    let metrics = Metrics::new(config.top_talkers);
    // Every series at its value (0 on a fresh start) before the first
    // scrape can come.
    let first = lock(&daemon)
        .snapshot(false, None)
        .context("reading the maps for the first time")?;
    metrics.update(&first);

    let (listener, allowed_gid) = control::bind(&socket_path, config.socket_group.as_deref())?;
    let http = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("binding the metrics address {metrics_addr} (metrics.listen)"))?;
    tracing::info!(event = "ready", metrics = %metrics_addr, socket = %socket_path.display(), "serving");
    notify(&format!(
        "READY=1\nSTATUS=enforcing on {}; metrics on {metrics_addr}",
        config.interfaces.join(", ")
    ));
    let tasks = [
        spawn_watchdog(&daemon),
        Some(spawn_stats(
            &daemon,
            &latest,
            metrics.clone(),
            interval,
            scan_every,
        )),
        Some(tokio::spawn(async move {
            if let Err(e) = axum::serve(http, exporter::router(metrics)).await {
                tracing::error!(event = "exporter_failed", "metrics server: {e}");
            }
        })),
        Some(tokio::spawn(control::serve(
            listener,
            allowed_gid,
            handler(&daemon, &latest),
            config.control_limits,
        ))),
    ];
    until_stopped(&daemon).await?;
    tracing::info!(event = "stopping", "stopping");
    notify("STOPPING=1");
    for t in tasks.into_iter().flatten() {
        t.abort();
    }
    let _ = std::fs::remove_file(&socket_path);
    let mut daemon = lock(&daemon);
    // Ends the CrowdSec thread at its next wait; a pull it has in flight
    // changes nothing now.
    stopped.store(true, std::sync::atomic::Ordering::Relaxed);
    daemon.crowdsec.reports = None;
    daemon.save_or_warn();
    daemon.exit()
}
