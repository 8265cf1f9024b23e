use std::{
    io::{IsTerminal as _, Write as _},
    path::Path,
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Parser as _;
use serde_json::Value;
use tollgate::{
    capture,
    cli::{
        BanOp, Cli, ClientArgs, Command, LimitOp, LogFormatArg, ReplayArgs, RuleActionArg, RulesOp,
        RunArgs, TopBy,
    },
    config::{self, LogFormat},
    control::{Client, Command as Req},
    loader::{LoadOptions, Tollgate},
    replay::{self, ReplayTotals},
    run::{RunOptions, run},
};

/// Exit status for a config or argument the user must fix (sysexits
/// EX_USAGE).
const EX_USAGE: u8 = 64;

fn init_logs(format: LogFormat) {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => return run_cmd(args),
        Command::Replay(args) => {
            init_logs(LogFormat::Text);
            replay_cmd(&args)
        }
        Command::CheckConfig {
            file,
            no_interfaces,
        } => {
            return match config::load(&file, !no_interfaces) {
                Ok(c) => {
                    println!(
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
            };
        }
        Command::Status(c) => client(&c, Req::Status, print_status),
        Command::Top { n, by, client: c } => {
            let by = match by {
                TopBy::Packets => "packets",
                TopBy::Bytes => "bytes",
                TopBy::Drops => "drops",
            };
            client(&c, Req::Top { n, by: by.into() }, print_top)
        }
        Command::Rules { op } => match op {
            RulesOp::List(c) => client(&c, Req::RulesList, print_rules),
            RulesOp::Add {
                cidr,
                action,
                limit,
                monitor,
                comment,
                client: c,
            } => {
                let action = match action {
                    RuleActionArg::Allow => "allow",
                    RuleActionArg::Deny => "deny",
                    RuleActionArg::Limit => "limit",
                };
                client(
                    &c,
                    Req::RulesAdd {
                        cidr,
                        action: action.into(),
                        limit: limit.spec(),
                        monitor,
                        comment,
                    },
                    print_done,
                )
            }
            RulesOp::Remove { cidr, client: c } => {
                client(&c, Req::RulesRemove { cidr }, print_done)
            }
        },
        Command::Limit { op } => match op {
            LimitOp::Show(c) => client(&c, Req::LimitShow, print_pretty),
            LimitOp::Set {
                cidr,
                limit,
                monitor,
                client: c,
            } => client(
                &c,
                Req::LimitSet {
                    cidr,
                    limit: limit.spec(),
                    monitor,
                },
                print_done,
            ),
        },
        Command::Ban { op } => match op {
            BanOp::Add {
                cidr,
                ttl,
                reason,
                client: c,
            } => client(&c, Req::BanAdd { cidr, ttl, reason }, print_done),
            BanOp::List(c) => client(&c, Req::BanList, print_bans),
            BanOp::Remove { cidr, client: c } => client(&c, Req::BanRemove { cidr }, print_done),
        },
        Command::Reload(c) => client(&c, Req::Reload, print_done),
        Command::Events { follow, client: c } => events_cmd(&c, follow),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_cmd(args: RunArgs) -> ExitCode {
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
            .and_then(|_| policy.check_bursts(tollgate::clock::coarse_tick_ns()));
        if let Err(e) = checked {
            eprintln!("error: {e}");
            return ExitCode::from(EX_USAGE);
        }
        rt.block_on(run(RunOptions {
            iface: iface.clone(),
            mode: args.xdp_mode,
            load: LoadOptions {
                max_sources: args.max_sources,
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
        let cfg = match config::load(Path::new(&path), true) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EX_USAGE);
            }
        };
        init_logs(match args.log_format {
            Some(LogFormatArg::Json) => LogFormat::Json,
            Some(LogFormatArg::Text) => LogFormat::Text,
            None => cfg.log.format,
        });
        rt.block_on(tollgate::daemon::run(cfg))
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

fn client(c: &ClientArgs, req: Req, human: fn(&Value)) -> anyhow::Result<()> {
    let mut conn = Client::connect(&c.socket)?;
    let v = conn.call(req)?;
    if c.json {
        println!("{v}");
    } else {
        human(&v);
    }
    Ok(())
}

fn events_cmd(c: &ClientArgs, follow: bool) -> anyhow::Result<()> {
    let mut conn = Client::connect(&c.socket)?;
    let mut since = 0;
    loop {
        let v = conn.call(Req::Events { since })?;
        for e in v["events"].as_array().into_iter().flatten() {
            since = since.max(e["seq"].as_u64().unwrap_or(0));
            if c.json {
                println!("{e}");
            } else {
                let evidence = e["evidence"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| format!("{k}={} (line {})", plain(&v[0]), plain(&v[1])))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                println!(
                    "#{} {} {} {} {}: {}{}",
                    plain(&e["seq"]),
                    plain(&e["kind"]),
                    e["detector"].as_str().unwrap_or("-"),
                    e["source"].as_str().unwrap_or("-"),
                    plain(&e["action"]),
                    plain(&e["message"]),
                    if evidence.is_empty() {
                        String::new()
                    } else {
                        format!(" [{evidence}]")
                    }
                );
            }
        }
        if !follow {
            return Ok(());
        }
        std::io::stdout().flush()?;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn print_pretty(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn print_done(v: &Value) {
    if let Some(o) = v.as_object() {
        let parts: Vec<String> = o.iter().map(|(k, v)| format!("{k} {}", plain(v))).collect();
        println!("ok: {}", parts.join(", "));
    } else {
        println!("ok");
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_status(v: &Value) {
    println!(
        "tollgate {} on {} ({}), up {}s",
        plain(&v["version"]),
        v["interfaces"]
            .as_array()
            .map(|a| a.iter().map(plain).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        plain(&v["attach_mode"]),
        plain(&v["uptime_seconds"])
    );
    println!(
        "packets: {} passed, {} dropped, {} monitored",
        plain(&v["packets"]["pass"]),
        plain(&v["packets"]["drop"]),
        plain(&v["packets"]["monitor"])
    );
    println!(
        "sources: {} tracked of {}, {} evicted; bans active: {}",
        plain(&v["sources"]["tracked"]),
        plain(&v["sources"]["capacity"]),
        plain(&v["sources"]["evicted"]),
        plain(&v["bans_active"])
    );
    println!(
        "rules: {} from config, {} runtime, {} management",
        plain(&v["rules"]["config"]),
        plain(&v["rules"]["runtime"]),
        plain(&v["rules"]["management"])
    );
    if let Some(r) = v["by_reason"].as_object() {
        let parts: Vec<String> = r
            .iter()
            .filter(|(_, n)| n.as_u64() != Some(0))
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        println!("by reason: {}", parts.join(" "));
    }
}

fn print_top(v: &Value) {
    println!(
        "{:<28} {:>12} {:>12} {:>12} {:>10}",
        "source", "packets", "bytes", "dropped", "syns"
    );
    for s in v["sources"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:>12} {:>12} {:>12} {:>10}",
            plain(&s["source"]),
            plain(&s["packets"]),
            plain(&s["bytes"]),
            plain(&s["dropped"]),
            plain(&s["syns"])
        );
    }
}

fn print_rules(v: &Value) {
    let d = &v["default"];
    println!(
        "default: {}{} ({})",
        limit_text(&d["limit"]),
        if d["monitor"] == true {
            " [monitor]"
        } else {
            ""
        },
        plain(&d["origin"])
    );
    for r in v["rules"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<6} {}{} ({}){}",
            plain(&r["cidr"]),
            plain(&r["action"]),
            limit_text(&r["limit"]),
            if r["monitor"] == true {
                " [monitor]"
            } else {
                ""
            },
            plain(&r["origin"]),
            r["comment"]
                .as_str()
                .map(|c| format!(" # {c}"))
                .unwrap_or_default()
        );
    }
}

fn limit_text(l: &Value) -> String {
    if l.is_null() {
        return String::new();
    }
    let mut parts = Vec::new();
    if !l["packets_per_second"].is_null() {
        parts.push(format!(
            "{} pps burst {}",
            plain(&l["packets_per_second"]),
            plain(&l["burst_packets"])
        ));
    }
    if !l["bytes_per_second"].is_null() {
        parts.push(format!(
            "{} B/s burst {} B",
            plain(&l["bytes_per_second"]),
            plain(&l["burst_bytes"])
        ));
    }
    parts.join(", ")
}

fn print_bans(v: &Value) {
    let bans = v["bans"].as_array().cloned().unwrap_or_default();
    if bans.is_empty() {
        println!("no bans in force");
    }
    for b in bans {
        println!(
            "{:<28} {:>8}s left  {}",
            plain(&b["cidr"]),
            plain(&b["remaining_seconds"]),
            b["reason"].as_str().unwrap_or("")
        );
    }
}

fn replay_cmd(args: &ReplayArgs) -> anyhow::Result<()> {
    let policy = match &args.config {
        Some(path) => config::load(path, false)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .policy(&[]),
        None => args.policy.policy(),
    };
    policy.compile()?;
    let mut tg = Tollgate::load(&LoadOptions {
        max_sources: args.max_sources,
        ..LoadOptions::default()
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
    })
    .context("replaying the capture")?;
    if args.json {
        serde_json::to_writer(&mut out, &serde_json::json!({ "totals": totals }))?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "totals: {} packets, {} passed, {} dropped, {} monitored, {} not run; by reason: {}",
            totals.packets,
            totals.pass,
            totals.drop,
            totals.monitor,
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
