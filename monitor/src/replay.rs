//! Running the real, loaded XDP program over frames through
//! BPF_PROG_TEST_RUN, with the clock taken from each frame's timestamp, and
//! reporting what the kernel parsed and decided.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun, TestRunOptions};
use monitor_common::{
    maps as names,
    reason::{Malformed, Reason, Verdict},
    types::{PacketInfo, ReplayRecord, family, frag, l4},
};
use serde::Serialize;

use crate::{
    loader::{LoadError, Tollgate},
    maps::MapError,
};

/// Smallest frame the kernel's test run accepts (an Ethernet header); XDP
/// never sees a shorter one either.
pub const MIN_FRAME: usize = 14;
/// Largest frame replayed: a jumbo frame of the largest MTU in common use
/// (9,216) with room for VLAN tags, rounded up. The replay program is
/// multi-buffer (`xdp.frags`), so a frame larger than a page goes through
/// the frags path, as it would on a jumbo-frame interface.
pub const MAX_FRAME: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error("BPF_PROG_TEST_RUN of program `{prog}` failed on a {len}-byte frame")]
    TestRun {
        prog: &'static str,
        len: usize,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error(
        "the replay program returned {action} but recorded no verdict; the object and this binary are out of step"
    )]
    NoRecord { action: u32 },
}

/// The kernel's judgement of one frame.
#[derive(Clone, Copy, Debug)]
pub struct Judged {
    pub record: ReplayRecord,
    /// The XDP action the program returned.
    pub action: u32,
}

impl Judged {
    pub fn reason(&self) -> Reason {
        Reason::from_u32(self.record.reason).unwrap_or(Reason::Malformed)
    }
    pub fn verdict(&self) -> Verdict {
        Verdict::from_u32(self.record.verdict).unwrap_or(Verdict::Drop)
    }
    pub fn info(&self) -> &PacketInfo {
        &self.record.info
    }
}

impl Tollgate {
    /// Runs the replay program on `frame` as if it arrived at `now_ns`
    /// (kernel `CLOCK_MONOTONIC` time), and returns what it recorded. The maps
    /// (sources, counters) are updated exactly as live traffic would.
    pub fn judge_frame(&mut self, frame: &[u8], now_ns: u64) -> Result<Judged, ReplayError> {
        self.maps.set_replay_clock(now_ns)?;
        self.maps.clear_replay_record()?;
        let action = self.run_program(names::PROG_REPLAY, frame, 1)?.0;
        let record = self.maps.replay_record()?;
        if record.written == 0 {
            return Err(ReplayError::NoRecord { action });
        }
        Ok(Judged { record, action })
    }

    /// Runs the parser alone (`tollgate_parse`) on `frame` and returns what
    /// it read: for the packet fuzzer, which compares it with a reference
    /// parser. Touches no map but the replay record.
    pub fn parse_frame(&mut self, frame: &[u8]) -> Result<PacketInfo, ReplayError> {
        self.run_program(names::PROG_PARSE, frame, 1)?;
        Ok(self.maps.replay_record()?.info)
    }

    /// Runs program `prog` on `frame` `repeat` times; returns the action
    /// and the kernel's mean duration per run in ns.
    pub fn run_program(
        &self,
        prog: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, u64), ReplayError> {
        let p = self.program(prog)?;
        let res = p
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .map_err(|source| ReplayError::TestRun {
                prog,
                len: frame.len(),
                source,
            })?;
        Ok((res.return_value, res.duration.as_nanos() as u64))
    }
}

/// One line of `tollgate replay --json`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PacketReport {
    pub index: usize,
    pub len: usize,
    pub vlan: Vec<u16>,
    pub family: &'static str,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub proto: Option<u8>,
    pub frag: Option<&'static str>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub tcp_flags: Option<u16>,
    pub malformed: bool,
    /// Which header could not be read, when malformed.
    pub malformed_at: Option<&'static str>,
    pub verdict: Option<&'static str>,
    pub reason: Option<&'static str>,
    /// Why the frame was not run through the kernel (too short or too long
    /// for XDP), if it was not.
    pub skipped: Option<String>,
}

fn addr(fam: u8, w: &[u32; 4]) -> Option<String> {
    match fam {
        family::IPV4 => Some(Ipv4Addr::from(w[0].to_ne_bytes()).to_string()),
        family::IPV6 => {
            let mut b = [0u8; 16];
            for (i, x) in w.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&x.to_ne_bytes());
            }
            Some(Ipv6Addr::from(b).to_string())
        }
        _ => None,
    }
}

impl PacketReport {
    pub fn from_judged(index: usize, len: usize, j: &Judged) -> Self {
        Self {
            verdict: Some(j.verdict().name()),
            reason: Some(j.reason().name()),
            ..Self::parsed(index, len, j.info())
        }
    }

    /// What the parse read, without a verdict.
    pub fn parsed(index: usize, len: usize, i: &PacketInfo) -> Self {
        let is_ip = i.family == family::IPV4 || i.family == family::IPV6;
        let ports = i.l4 == l4::TCP || i.l4 == l4::UDP;
        Self {
            index,
            len,
            vlan: i.vlan[..(i.vlan_count as usize).min(2)].to_vec(),
            family: match i.family {
                family::IPV4 => "ipv4",
                family::IPV6 => "ipv6",
                family::MALFORMED => "malformed",
                _ => "other",
            },
            src: addr(i.family, &i.src),
            dst: addr(i.family, &i.dst),
            proto: is_ip.then_some(i.proto),
            frag: is_ip.then_some(match i.frag {
                frag::FIRST => "first",
                frag::LATER => "later",
                frag::ATOMIC => "atomic",
                _ => "none",
            }),
            sport: ports.then_some(i.sport),
            dport: ports.then_some(i.dport),
            // A TCP header cut before its flags (or with a data offset
            // short of them) is TCP with ports and no flags, as tshark shows.
            tcp_flags: (i.l4 == l4::TCP && i.malformed != Malformed::Tcp as u8)
                .then_some(i.tcp_flags),
            malformed: i.malformed != 0,
            malformed_at: Malformed::from_u8(i.malformed)
                .filter(|m| *m != Malformed::None)
                .map(Malformed::name),
            verdict: None,
            reason: None,
            skipped: None,
        }
    }

    pub fn skipped(index: usize, len: usize, why: String) -> Self {
        Self {
            index,
            len,
            vlan: Vec::new(),
            family: "other",
            src: None,
            dst: None,
            proto: None,
            frag: None,
            sport: None,
            dport: None,
            tcp_flags: None,
            malformed: false,
            malformed_at: None,
            verdict: None,
            reason: None,
            skipped: Some(why),
        }
    }

    /// The human-readable line.
    pub fn line(&self) -> String {
        if let Some(why) = &self.skipped {
            return format!("{:>6}  {:>5}B  not run: {why}", self.index, self.len);
        }
        let vlan = if self.vlan.is_empty() {
            String::new()
        } else {
            format!(
                " vlan {}",
                self.vlan
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(".")
            )
        };
        let ports = match (self.sport, self.dport) {
            (Some(s), Some(d)) => format!(" {s} -> {d}"),
            _ => String::new(),
        };
        let flow = match (&self.src, &self.dst) {
            (Some(s), Some(d)) => format!(
                " {s} -> {d} proto {}{}",
                self.proto.unwrap_or(0),
                if ports.is_empty() {
                    String::new()
                } else {
                    format!(" ports{ports}")
                }
            ),
            _ => String::new(),
        };
        let frag = match self.frag {
            Some(f) if f != "none" => format!(" frag {f}"),
            _ => String::new(),
        };
        let flags = self
            .tcp_flags
            .map(|f| format!(" flags {f:#05x}"))
            .unwrap_or_default();
        let bad = self
            .malformed_at
            .map(|m| format!(" malformed at {m}"))
            .unwrap_or_default();
        format!(
            "{:>6}  {:>5}B  {}{vlan}{flow}{frag}{flags}{bad}  => {} ({})",
            self.index,
            self.len,
            self.family,
            self.verdict.unwrap_or("-"),
            self.reason.unwrap_or("-"),
        )
    }
}

/// Totals of a replay, by verdict and reason.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayTotals {
    pub packets: u64,
    pub pass: u64,
    pub drop: u64,
    /// Passed, but dropped if the rule were enforcing.
    pub monitor: u64,
    /// Answered from XDP with a SYN cookie's SYN-ACK (verdict `tx`; the
    /// replay sends nothing).
    pub answered: u64,
    pub skipped: u64,
    pub by_reason: std::collections::BTreeMap<&'static str, u64>,
}

impl ReplayTotals {
    pub fn add(&mut self, r: &PacketReport) {
        self.packets += 1;
        match r.verdict {
            Some("pass") => self.pass += 1,
            Some("monitor") => self.monitor += 1,
            Some("tx") => self.answered += 1,
            Some(_) => self.drop += 1,
            None => self.skipped += 1,
        }
        if let Some(reason) = r.reason {
            *self.by_reason.entry(reason).or_default() += 1;
        }
    }

    /// The closing line of a text replay.
    pub fn line(&self) -> String {
        format!(
            "totals: {} packets, {} passed, {} dropped, {} monitored, {} answered with a SYN cookie, {} not run; by reason: {}",
            self.packets,
            self.pass,
            self.drop,
            self.monitor,
            self.answered,
            self.skipped,
            self.by_reason
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

/// Where a frame of `len` bytes can be run, or why not.
pub fn runnable(len: usize) -> Result<(), String> {
    if len < MIN_FRAME {
        Err(format!(
            "{len} bytes is shorter than an Ethernet header; XDP never sees such a frame"
        ))
    } else if len > MAX_FRAME {
        Err(format!(
            "{len} bytes is larger than any jumbo frame ({MAX_FRAME}); GRO/TSO-merged captures hold frames the wire never carried, capture with offloads off (ethtool -K IFACE gro off tso off gso off)"
        ))
    } else {
        Ok(())
    }
}

/// Replays `frames` (timestamp ns, bytes) through the replay program. The
/// first frame's timestamp becomes "1 s after the clock base", so buckets
/// start full and judge the capture as it happened.
pub fn replay(
    tg: &mut Tollgate,
    ts_ns: u64,
    first_ts_ns: u64,
    index: usize,
    data: &[u8],
) -> Result<PacketReport, ReplayError> {
    if let Err(why) = runnable(data.len()) {
        return Ok(PacketReport::skipped(index, data.len(), why));
    }
    let now = 1_000_000_000 + ts_ns.saturating_sub(first_ts_ns);
    let j = tg.judge_frame(data, now)?;
    Ok(PacketReport::from_judged(index, data.len(), &j))
}
