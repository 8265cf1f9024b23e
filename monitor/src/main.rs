use std::{
    io::{IsTerminal as _, Write as _},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Parser as _;
use tollgate::{
    capture,
    cli::{Cli, Command, ReplayArgs},
    loader::{LoadOptions, Tollgate},
    replay::{self, ReplayTotals},
    run::{RunOptions, run},
};

/// Exit status for a policy or argument the user must fix (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => {
            let policy = args.policy.policy();
            let checked = policy
                .compile()
                .and_then(|_| policy.check_bursts(tollgate::clock::coarse_tick_ns()));
            if let Err(e) = checked {
                eprintln!("error: {e}");
                return ExitCode::from(EX_USAGE);
            }
            let opts = RunOptions {
                iface: args.iface.clone(),
                mode: args.xdp_mode,
                load: LoadOptions {
                    max_sources: args.max_sources,
                },
                stats_interval: args.stats_interval(),
                top: args.top,
                policy,
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")
                .and_then(|rt| rt.block_on(run(opts)))
        }
        Command::Replay(args) => replay_cmd(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn replay_cmd(args: &ReplayArgs) -> anyhow::Result<()> {
    let policy = args.policy.policy();
    policy.compile()?;
    let mut tg = Tollgate::load(&LoadOptions {
        max_sources: args.max_sources,
    })?;
    // The replay clock starts at 1 s; base 0 keeps the bucket clock equal
    // to it.
    tg.maps.apply_policy(&policy, Some(0))?;
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
    })?;
    if args.json {
        serde_json::to_writer(&mut out, &serde_json::json!({ "totals": totals }))?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "totals: {} packets, {} passed, {} dropped, {} not run; by reason: {}",
            totals.packets,
            totals.pass,
            totals.drop,
            totals.skipped,
            totals
                .by_reason
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        )?;
    }
    out.flush()?;
    Ok(())
}
