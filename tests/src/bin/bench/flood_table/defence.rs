//! The defences the flood table compares, and how each is put in place on
//! the server's attack link and taken away again.

use anyhow::Context as _;
use lab::{
    NetNs,
    flood::Sink,
    flood_lab::{ATTACK_IF, FloodLab},
    netns::exec,
};
use monitor_common::reason::Verdict;
use tollgate::{
    clock::coarse_ns,
    loader::{AttachMode, LoadOptions, Tollgate},
    policy::{Limit, Policy, Rate},
};

use super::LIMIT;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Defence {
    None,
    XdpDrop,
    ReadDrop,
    /// `ReadDrop` meeting the storm's frames, which the generator writes
    /// (each its own source): the floor of a filter that reads them.
    ReadDropStorm,
    Banned,
    OverLimit,
    Storm,
    StormProbation,
    XdpFilter,
    Hashlimit,
    NftMeter,
}

impl Defence {
    pub const ALL: [Defence; 11] = [
        Defence::None,
        Defence::XdpDrop,
        Defence::ReadDrop,
        Defence::ReadDropStorm,
        Defence::Banned,
        Defence::OverLimit,
        Defence::Storm,
        Defence::StormProbation,
        Defence::XdpFilter,
        Defence::Hashlimit,
        Defence::NftMeter,
    ];

    /// Fed the storm's frames (random IPv6 sources, each frame written by
    /// the generator) rather than the single source's.
    pub fn storm_frames(self) -> bool {
        matches!(
            self,
            Defence::Storm | Defence::StormProbation | Defence::ReadDropStorm
        )
    }

    /// Judged in the kernel's stack, not in XDP: about 1 Mpps here.
    pub fn in_stack(self) -> bool {
        matches!(self, Defence::None | Defence::Hashlimit | Defence::NftMeter)
    }

    pub fn name(self) -> &'static str {
        match self {
            Defence::None => "no program",
            Defence::XdpDrop => "plain XDP_DROP",
            Defence::ReadDrop => "XDP_DROP after reading the source",
            Defence::ReadDropStorm => "the same, the storm's frames",
            Defence::Banned => "Tollgate, source banned",
            Defence::OverLimit => "Tollgate, source over its limit",
            Defence::Storm => "Tollgate, storm of random IPv6 /64s",
            Defence::StormProbation => "Tollgate, that storm on probation",
            Defence::XdpFilter => "xdp-filter, source denied",
            Defence::Hashlimit => "iptables hashlimit",
            Defence::NftMeter => "nftables meter",
        }
    }
}

/// What a defence holds while it is in place; dropping it removes it.
pub enum Installed {
    Nothing,
    Sink(#[allow(dead_code, reason = "held for its Drop")] Sink),
    Tollgate(#[allow(dead_code, reason = "held for its Drop")] Box<Tollgate>),
    /// Removed by running this command in the server's namespace.
    Command(&'static [&'static str]),
}

pub fn in_ns(ns: &NetNs, args: &[&str]) -> anyhow::Result<String> {
    exec(ns.nsenter(args[0]).args(&args[1..]))
}

pub fn install(d: Defence, lab: &FloodLab, attacker: &str) -> anyhow::Result<Installed> {
    let s = &lab.server;
    Ok(match d {
        Defence::None => Installed::Nothing,
        Defence::XdpDrop => Installed::Sink(Sink::attach(s, ATTACK_IF)?),
        Defence::ReadDrop | Defence::ReadDropStorm => {
            Installed::Sink(Sink::attach_reading(s, ATTACK_IF)?)
        }
        Defence::Banned | Defence::OverLimit | Defence::Storm | Defence::StormProbation => {
            let mut tg = Tollgate::load(&LoadOptions {
                max_sources: 1 << 16,
                ..LoadOptions::default()
            })?;
            tg.maps.apply_policy(
                &Policy {
                    default: Limit {
                        packets: Some(Rate {
                            per_sec: LIMIT,
                            burst: LIMIT,
                        }),
                        bytes: None,
                    },
                    ..Policy::default()
                },
                None,
            )?;
            // As the daemon sets it while its storm detector fires.
            if d == Defence::StormProbation {
                tg.maps.set_storm(true)?;
            }
            if d == Defence::Banned {
                let net = format!("{attacker}/32").parse()?;
                tg.maps.ban(net, coarse_ns() + 3_600_000_000_000)?;
            }
            s.enter(|| tg.attach(ATTACK_IF, AttachMode::Native))??;
            Installed::Tollgate(Box::new(tg))
        }
        Defence::XdpFilter => {
            in_ns(
                s,
                &[
                    "xdp-filter",
                    "load",
                    ATTACK_IF,
                    "--mode",
                    "native",
                    "--features",
                    "ipv4,ipv6",
                    "--policy",
                    "allow",
                ],
            )
            .context("loading xdp-filter (Debian's xdp-tools; `cargo xtask setup` installs it)")?;
            in_ns(s, &["xdp-filter", "ip", attacker, "--mode", "src"])?;
            Installed::Command(&["xdp-filter", "unload", ATTACK_IF])
        }
        Defence::Hashlimit => {
            let rate = format!("{LIMIT}/sec");
            let burst = LIMIT.to_string();
            in_ns(
                s,
                &[
                    "iptables",
                    "-t",
                    "raw",
                    "-A",
                    "PREROUTING",
                    "-i",
                    ATTACK_IF,
                    "-m",
                    "hashlimit",
                    "--hashlimit-mode",
                    "srcip",
                    "--hashlimit-above",
                    &rate,
                    "--hashlimit-burst",
                    &burst,
                    "--hashlimit-name",
                    "tgbench",
                    "-j",
                    "DROP",
                ],
            )
            .context(
                "adding the hashlimit rule (Debian's iptables; `cargo xtask setup` installs it)",
            )?;
            Installed::Command(&["iptables", "-t", "raw", "-F", "PREROUTING"])
        }
        Defence::NftMeter => {
            let chain = "{ type filter hook prerouting priority -300; policy accept; }";
            let meter =
                format!("{{ ip saddr limit rate over {LIMIT}/second burst {LIMIT} packets }}");
            for cmd in [
                vec!["nft", "add", "table", "inet", "tgbench"],
                vec!["nft", "add", "chain", "inet", "tgbench", "pre", chain],
                vec![
                    "nft",
                    "add",
                    "rule",
                    "inet",
                    "tgbench",
                    "pre",
                    "iifname",
                    ATTACK_IF,
                    "meter",
                    "persource",
                    &meter,
                    "drop",
                ],
            ] {
                in_ns(s, &cmd).context("adding the nftables meter")?;
            }
            Installed::Command(&["nft", "delete", "table", "inet", "tgbench"])
        }
    })
}

pub fn remove(i: Installed, ns: &NetNs) -> anyhow::Result<()> {
    if let Installed::Command(args) = i {
        in_ns(ns, args)?;
    }
    Ok(())
}

/// Of the frames Tollgate judged since it was loaded, the share it passed
/// (to the stack); `None` for the other defences.
pub fn passed_share(i: &Installed) -> anyhow::Result<Option<f64>> {
    let Installed::Tollgate(tg) = i else {
        return Ok(None);
    };
    let c = tg.maps.counters()?;
    let (pass, drop) = (
        c.total(Verdict::Pass).packets as f64,
        c.total(Verdict::Drop).packets as f64,
    );
    Ok(Some(pass / (pass + drop).max(1.0)))
}
