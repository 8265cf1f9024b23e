//! The subcommands that work without the daemon: `run` (the daemon
//! itself, or the flags-only runner), `replay` and `check-config`.

use std::{
    io::{IsTerminal as _, Write as _},
    path::Path,
    process::ExitCode,
};

use anyhow::Context as _;
use monitor_common::syncookie::cookie_mode;

use super::args::{LogFormatArg, ReplayArgs, RunArgs};
use crate::{
    capture,
    config::{self, LogFormat},
    loader::{LoadOptions, Tollgate},
    replay::{self, ReplayTotals},
    run::{RunOptions, run},
};

/// Exit status for a config or argument the user must fix (sysexits
/// EX_USAGE).
pub const EX_USAGE: u8 = 64;

pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => b.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// `check-config`: the same checks `run` and `reload` make.
pub fn check_config(file: &Path, no_interfaces: bool) -> ExitCode {
    match config::load(file, !no_interfaces) {
        Ok(c) => {
            let _ = writeln!(
                std::io::stdout(),
                "{}: ok ({} interfaces, {} rules, {} management networks)",
                file.display(),
                c.interfaces.len(),
                c.rules.len(),
                c.management.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EX_USAGE)
        }
    }
}

/// `run`: the daemon with `--config` (the default), or with `--iface` the
/// flags-only runner.
pub fn run_cmd(args: RunArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if let Some(iface) = &args.iface {
        init_logs(LogFormat::Text);
        let policy = args.policy.policy();
        let checked = policy
            .compile()
            .and_then(|_| policy.check_bursts(crate::clock::coarse_tick_ns()));
        if let Err(e) = checked {
            eprintln!("error: {e}");
            return ExitCode::from(EX_USAGE);
        }
        rt.block_on(run(RunOptions {
            iface: iface.clone(),
            mode: args.xdp_mode,
            load: LoadOptions {
                max_sources: args.max_sources,
                multi_buffer: true,
                ..LoadOptions::default()
            },
            stats_interval: args.stats_interval(),
            top: args.top,
            policy,
        }))
    } else {
        let path = args
            .config
            .clone()
            .unwrap_or_else(|| config::DEFAULT_PATH.into());
        let mut cfg = match config::load(Path::new(&path), true) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EX_USAGE);
            }
        };
        // The flag wins over the file, for the event lines too.
        cfg.log.format = match args.log_format {
            Some(LogFormatArg::Json) => LogFormat::Json,
            Some(LogFormatArg::Text) => LogFormat::Text,
            None => cfg.log.format,
        };
        init_logs(cfg.log.format);
        rt.block_on(crate::daemon::run(cfg))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(event = "fatal", "{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `replay`: the real program over a capture, a line (or JSON object) per
/// packet and the totals.
pub fn replay_cmd(args: &ReplayArgs) -> anyhow::Result<()> {
    let (policy, cookies) = match &args.config {
        Some(path) => {
            let cfg = config::load(path, false).map_err(|e| anyhow::anyhow!("{e}"))?;
            (cfg.policy(&[]), cfg.syn_cookies)
        }
        None => (args.policy.policy(), None),
    };
    policy.compile()?;
    let mut tg = Tollgate::load(&LoadOptions {
        max_sources: args.max_sources,
        ..LoadOptions::default()
    })?;
    // The replay clock starts at 1 s; base 0 keeps the bucket clock equal
    // to it.
    tg.maps.apply_policy(&policy, Some(0))?;
    // With `[syn_cookies]`, packets to the protected ports are judged as
    // they would be while the cookies are on (under attack, for
    // `under_attack`): a SYN gets verdict `tx`, a cookie's SYN-ACK, which
    // replay never sends. No ACK in a capture can carry a cookie of this
    // boot's secret, so none verifies its source: an ACK from a source
    // with no allow rule is reported `cookie_invalid`.
    if let Some(c) = &cookies {
        tg.maps.set_cookie_ports(&c.ports)?;
        tg.maps.set_cookie_params(c.params(cookie_mode::ON, 0))?;
    }
    let mut totals = ReplayTotals::default();
    let mut first_ts = None;
    let mut index = 0;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    capture::read(&args.pcap, |frame| {
        index += 1;
        let first = *first_ts.get_or_insert(frame.ts_ns);
        let report = replay::replay(&mut tg, frame.ts_ns, first, index, &frame.data)?;
        totals.add(&report);
        if args.json {
            serde_json::to_writer(&mut out, &report)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", report.line())?;
        }
        Ok(())
    })
    .context("replaying the capture")?;
    if args.json {
        serde_json::to_writer(&mut out, &serde_json::json!({ "totals": totals }))?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", totals.line())?;
    }
    out.flush()?;
    Ok(())
}
