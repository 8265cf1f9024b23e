//! What the in-process benchmarks measure: Tollgate's object loaded here
//! with 1,000 CIDR rules, a ban, and its source table filled with
//! 1,000,000 sources, all from documentation and benchmarking ranges.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ipnet::IpNet;
use monitor_common::types::{SourceKey, SourceState};
use tollgate::{
    clock::monotonic_ns,
    loader::{LoadOptions, Tollgate},
    maps::source_key,
    policy::{Action, Limit, Policy, Rate, Rule},
};

pub const RULES: usize = 1_000;
pub const SOURCES: u32 = 1_000_000;

fn limit(pps: u64, burst: u64) -> Action {
    Action::Limit(Limit {
        packets: Some(Rate {
            per_sec: pps,
            burst,
        }),
        bytes: None,
    })
}

/// 1,000 rules: the ones the frames hit, and the rest from the benchmarking
/// range 198.18.0.0/15 and the documentation range 2001:db8::/32.
pub fn policy() -> Policy {
    let mut rules = vec![
        Rule::new("203.0.113.0/24".parse().unwrap(), Action::Allow),
        // Under its rate however fast the harness runs.
        Rule::new(
            "192.0.2.10/32".parse().unwrap(),
            limit(1_000_000_000, 1_000_000),
        ),
        // Over its rate from the second packet on.
        Rule::new("192.0.2.20/32".parse().unwrap(), limit(1, 1)),
        Rule::new(
            "2001:db8:1::/48".parse().unwrap(),
            limit(1_000_000_000, 1_000_000),
        ),
    ];
    let mut i = 0u32;
    while rules.len() < RULES {
        let net: IpNet = if i.is_multiple_of(2) {
            let n = i / 2;
            IpNet::new(
                IpAddr::V4(Ipv4Addr::new(198, 18 + (n >> 8) as u8, n as u8, 0)),
                24,
            )
            .unwrap()
        } else {
            let n = i / 2;
            IpNet::new(
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0x100 + n as u16,
                    0,
                    0,
                    0,
                    0,
                    0,
                )),
                48,
            )
            .unwrap()
        };
        let action = match i % 3 {
            0 => Action::Deny,
            1 => limit(10_000, 20_000),
            _ => Action::Allow,
        };
        rules.push(Rule::new(net, action));
        i += 1;
    }
    Policy {
        rules,
        ..Policy::default()
    }
}

/// The `i`-th of the benchmark's million sources: one per /64 of
/// 2001:db8:f000::/36 (documentation space).
pub fn bench_source(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(
        0x2001,
        0xdb8,
        0xf000 | (i >> 16) as u16,
        i as u16,
        0,
        0,
        0,
        1,
    )
}

fn fill_sources(tg: &mut Tollgate) -> anyhow::Result<()> {
    let cfg = tg.maps.runtime_config()?;
    let now = monotonic_ns();
    tg.maps.sources.insert((0..SOURCES).map(|i| {
        let key: SourceKey = source_key(&cfg, IpAddr::V6(bench_source(i)));
        let state = SourceState {
            packets: 1,
            bytes: 100,
            first_seen_ns: now,
            last_seen_ns: now,
            generation: cfg.generation,
            ..SourceState::default()
        };
        (key, state)
    }))?;
    Ok(())
}

/// Tollgate's object, loaded with the default source table (1,048,576
/// slots) and nothing applied yet.
pub fn load() -> anyhow::Result<Tollgate> {
    // The per-packet table and the verifier's count show the
    // multi-buffer program beside the single-buffer one.
    Tollgate::load(&LoadOptions {
        reference: true,
        multi_buffer: true,
        ..LoadOptions::default()
    })
    .context("loading Tollgate")
}

/// Applies the 1,000 rules (bucket clock based at now, as the daemon does)
/// and bans 192.0.2.30, then fills the source table; returns how long the
/// fill took.
pub fn prepare(tg: &mut Tollgate) -> anyhow::Result<Duration> {
    tg.maps.apply_policy(&policy(), Some(monotonic_ns()))?;
    tg.maps
        .ban("192.0.2.30/32".parse()?, monotonic_ns() + 3_600_000_000_000)?;
    let t = Instant::now();
    fill_sources(tg)?;
    Ok(t.elapsed())
}
