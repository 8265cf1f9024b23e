//! `tollgate run --iface`: the flags-only runner for a quick try on one
//! interface: load, fill the policy from flags, attach, print counters and
//! top talkers, detach on a signal. The daemon (`tollgate run --config`,
//! `daemon/`) is what production runs.

use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    clock::monotonic_ns,
    loader::{AttachMode, LoadOptions, Tollgate},
    policy::Policy,
    view,
};

pub struct RunOptions {
    pub iface: String,
    pub mode: AttachMode,
    pub load: LoadOptions,
    pub policy: Policy,
    /// Print counters and top talkers this often (None: only at exit).
    pub stats_interval: Option<Duration>,
    pub top: usize,
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let mut tg = Tollgate::load(&opts.load).context("loading Tollgate's XDP programs")?;
    tg.maps
        .apply_policy(&opts.policy, Some(monotonic_ns()))
        .context("writing the policy into the kernel maps")?;
    let program = tg.attach(&opts.iface, opts.mode)?;
    tracing::info!(iface = %opts.iface, mode = %opts.mode, program, "attached");
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let period = opts.stats_interval.unwrap_or(Duration::from_secs(3600));
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => {
                if opts.stats_interval.is_some() {
                    print!("{}", report(&tg, &opts)?);
                }
            }
        }
    }
    print!("{}", report(&tg, &opts)?);
    tg.detach_all()?;
    tracing::info!(iface = %opts.iface, "detached");
    Ok(())
}

fn report(tg: &Tollgate, opts: &RunOptions) -> anyhow::Result<String> {
    let counters = tg.maps.counters()?;
    let mut flows = Vec::new();
    tg.maps.for_each_source(|f| flows.push(*f))?;
    let cfg = tg.maps.runtime_config()?;
    let talkers = view::top_talkers(&flows, &cfg, opts.top, |k| {
        tg.maps.source(k).ok().flatten().map_or(0, |s| s.acks)
    });
    Ok(view::render(
        &opts.iface,
        &counters,
        flows.len(),
        tg.maps.max_sources(),
        &talkers,
    ))
}
