//! Floods at millions of packets per second, for attacks that hurt a
//! 2-core server (hping3 and trafgen reach 100-250 kpps here, which it
//! absorbs). The generator program `tollgate_gen` runs through
//! BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES inside the attacker's
//! namespace: the kernel copies one template frame, the program gives each
//! copy a source from a range (documentation addresses only) and a random
//! source port, and XDP_TX sends it out of the attacker's interface.
//! Bounded in frames and in time like every sender here.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::{
    EbpfLoader,
    maps::Array,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp},
};
use monitor_common::{
    generator::{GEN_MAP, GEN_MIN_FRAME, GEN_PROG, GenConfig},
    maps::{SOURCE_CONTROL, SOURCE_FLOWS, SOURCES},
};

use crate::{NetNs, packets::Spec, traffic::Sent};

/// What the generator sends.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// TCP SYNs (connection openings) to `dport`.
    Syn,
    /// UDP datagrams to `dport`.
    Udp,
}

#[derive(Clone, Copy, Debug)]
pub struct Flood {
    pub kind: Kind,
    /// Sources `first_src .. first_src + sources`, one per frame at random.
    pub first_src: Ipv4Addr,
    pub sources: u32,
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// Busy work per frame, to slow the generator evenly (0: full speed).
    pub spin: u32,
    /// Non-zero: destination ports `dport .. dport + dport_span` at random
    /// (a port scan).
    pub dport_span: u16,
}

/// The attacks the lab runs (tests/tests/attacks.rs) and times
/// (`cargo xtask bench`), each from the generator at ~1.2 Mpps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// SYNs from one source to the server's port.
    SynFlood,
    /// SYNs from 250 spoofed sources (198.51.100.1-250).
    SpoofedSynFlood,
    /// UDP datagrams from one source to the server's port.
    UdpFlood,
    /// SYNs from one source to 10,000 ports (20000-29999), as fast as a
    /// flood.
    PortScan,
}

impl Attack {
    pub const ALL: [Attack; 4] = [
        Attack::UdpFlood,
        Attack::SynFlood,
        Attack::PortScan,
        Attack::SpoofedSynFlood,
    ];

    /// The attack from `attacker` (single-source kinds) on `dst:port`.
    pub fn flood(self, attacker: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Flood {
        let one = |kind, dport_span| Flood {
            kind,
            first_src: attacker,
            sources: 1,
            dst,
            dport: port,
            spin: 300,
            dport_span,
        };
        match self {
            Attack::SynFlood => one(Kind::Syn, 0),
            Attack::UdpFlood => one(Kind::Udp, 0),
            Attack::PortScan => Flood {
                dport: 20_000,
                ..one(Kind::Syn, 10_000)
            },
            Attack::SpoofedSynFlood => Flood {
                first_src: Ipv4Addr::new(198, 51, 100, 1),
                sources: 250,
                ..one(Kind::Syn, 0)
            },
        }
    }
}

/// Documentation ranges only: a generator must never emit anything else.
fn documentation(a: Ipv4Addr) -> bool {
    let o = a.octets();
    matches!(
        (o[0], o[1], o[2]),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
    )
}

/// A generator loaded in a namespace, ready to send `spec`'s frames out
/// of an interface there.
pub struct Generator {
    ebpf: aya::Ebpf,
    template: Vec<u8>,
    /// `struct xdp_md` naming the interface.
    md: Vec<u8>,
}

impl Generator {
    pub fn load(ns: &NetNs, iface: &str, spec: &Flood) -> anyhow::Result<Self> {
        let last = Ipv4Addr::from(u32::from(spec.first_src) + spec.sources.max(1) - 1);
        anyhow::ensure!(
            documentation(spec.first_src) && documentation(last) && spec.sources >= 1,
            "flood sources {}..={last} leave the documentation ranges",
            spec.first_src
        );
        let (src, dst) = (spec.first_src.to_string(), spec.dst.to_string());
        let template = match spec.kind {
            Kind::Syn => Spec::syn(&src, &dst, 40_000, spec.dport).build(),
            Kind::Udp => Spec::udp(&src, &dst, 40_000, spec.dport)
                .payload(GEN_MIN_FRAME - 42)
                .build(),
        };
        let at16 = |o: usize| u16::from_ne_bytes([template[o], template[o + 1]]);
        let cfg = GenConfig {
            src_base: u32::from(spec.first_src),
            src_count: spec.sources,
            orig_src: u32::from_ne_bytes(template[26..30].try_into()?),
            ip_csum: at16(24),
            l4_csum: at16(match spec.kind {
                Kind::Syn => 50,
                Kind::Udp => 40,
            }),
            orig_sport: at16(34),
            vary_sport: 1,
            spin: spec.spin,
            orig_dport: at16(36),
            dport_span: spec.dport_span,
        };
        ns.enter(|| -> anyhow::Result<Self> {
            // The object's other maps are created too; keep the source
            // table small, nothing else is used.
            let mut ebpf = EbpfLoader::new()
                .map_max_entries(SOURCES, 1024)
                .map_max_entries(SOURCE_FLOWS, 1024)
                .map_max_entries(SOURCE_CONTROL, 1024)
                .load(tollgate::loader::OBJECT)
                .context("loading the BPF object for the generator")?;
            let mut map: Array<_, GenConfig> = ebpf
                .take_map(GEN_MAP)
                .context("the object has no generator map")?
                .try_into()?;
            map.set(0, cfg, 0)?;
            let prog: &mut Xdp = ebpf
                .program_mut(GEN_PROG)
                .context("the object has no generator program")?
                .try_into()?;
            prog.load().context("loading the generator program")?;
            let name = std::ffi::CString::new(iface)?;
            // SAFETY: a valid NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            anyhow::ensure!(ifindex != 0, "no interface {iface} in {}", ns.name());
            // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
            // rx_queue_index, egress_ifindex.
            let md: Vec<u8> = [0, template.len() as u32, 0, ifindex, 0, 0]
                .iter()
                .flat_map(|v| v.to_ne_bytes())
                .collect();
            Ok(Self { ebpf, template, md })
        })?
    }

    fn program(&self) -> anyhow::Result<&Xdp> {
        Ok(self
            .ebpf
            .program(GEN_PROG)
            .context("the object has no generator program")?
            .try_into()?)
    }

    /// Sends `frames` frames as fast as the program goes (its `spin` sets
    /// the rate), from `ns` (the namespace it was loaded in), stopping at
    /// `max_time`; returns what the program transmitted.
    pub fn send(&mut self, ns: &NetNs, frames: u64, max_time: Duration) -> anyhow::Result<Sent> {
        let prog = self.program()?;
        let (template, md) = (&self.template, &self.md);
        ns.enter(|| -> anyhow::Result<Sent> {
            let start = Instant::now();
            let mut sent = 0u64;
            while sent < frames && start.elapsed() < max_time && !crate::traffic::stopped() {
                // ~0.1 s per call at a few Mpps, so time and stop are
                // checked often.
                let batch = (frames - sent).min(200_000) as u32;
                prog.test_run(TestRunOptions {
                    data_in: Some(template),
                    ctx_in: Some(md),
                    repeat: batch,
                    attrs: TestRunAttrs::new().xdp_live_frames(64),
                    ..TestRunOptions::default()
                })
                .context("BPF_PROG_TEST_RUN with live frames")?;
                sent += batch as u64;
            }
            Ok(Sent {
                packets: sent,
                elapsed: start.elapsed(),
            })
        })?
    }

    /// One frame as the program rewrites it (BPF_PROG_TEST_RUN without live
    /// frames: nothing is sent), for checking what goes on the wire.
    pub fn sample(&self) -> anyhow::Result<Vec<u8>> {
        let mut out = vec![0u8; self.template.len() + 256];
        let r = self
            .program()?
            .test_run(TestRunOptions {
                data_in: Some(&self.template),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN")?;
        anyhow::ensure!(
            r.return_value == 3,
            "the generator returned {} instead of XDP_TX",
            r.return_value
        );
        out.truncate(r.data_size_out as usize);
        Ok(out)
    }
}

/// Loads a generator for `spec` in `ns` and sends `frames` frames out of
/// `iface` (see `Generator::send`).
pub fn flood(
    ns: &NetNs,
    iface: &str,
    spec: &Flood,
    frames: u64,
    max_time: Duration,
) -> anyhow::Result<Sent> {
    Generator::load(ns, iface, spec)?.send(ns, frames, max_time)
}
