//! Floods at millions of packets per second, for attacks that hurt a
//! 2-core server (hping3 and trafgen reach 100-250 kpps here, which it
//! absorbs). The generator program `tollgate_gen` runs through
//! BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES inside the attacker's
//! namespace: the kernel copies one template frame, the program gives each
//! copy a source (IPv4: from up to four ranges; IPv6: random bits beneath
//! 2001:db8::/32; documentation addresses only) and a random source port,
//! and XDP_TX sends it out of the attacker's interface. Bounded in frames
//! and in time like every sender here. `Sink` attaches the object's
//! XDP_DROP program to an interface.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::{
    EbpfLoader,
    maps::Array,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use monitor_common::{
    generator::{
        GEN_FRAME_MAP, GEN_MAP, GEN_MAX_RANGES, GEN_MIN_FRAME, GEN_MIN_FRAME6, GEN_PROG, GenConfig,
        GenFrame, SINK_PROG, SINK_READ_PROG, SrcRange,
    },
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

/// No further source range.
pub const NO_RANGE: (Ipv4Addr, u32) = (Ipv4Addr::UNSPECIFIED, 0);

#[derive(Clone, Copy, Debug)]
pub struct Flood {
    pub kind: Kind,
    /// IPv4 floods: sources `first_src .. first_src + sources` and the
    /// `more_sources` ranges (first, count), one per frame uniformly from
    /// their union. Each range stays within one documentation /24.
    pub first_src: Ipv4Addr,
    pub sources: u32,
    pub more_sources: [(Ipv4Addr, u32); GEN_MAX_RANGES - 1],
    /// IPv6 floods (an IPv6 `dst`): the template's source, in
    /// 2001:db8::/32, and the bits of it drawn at random per frame
    /// (never the top 32).
    pub src6: Ipv6Addr,
    pub src6_random: u128,
    pub dst: IpAddr,
    pub dport: u16,
    /// Busy work per frame, to slow the generator evenly (0: full speed).
    pub spin: u32,
    /// Non-zero: destination ports `dport .. dport + dport_span` at random
    /// (a port scan).
    pub dport_span: u16,
    /// Every frame the template as built: one source, one source port,
    /// no rewriting, the generator's fastest (see `GenConfig::fixed`).
    pub fixed: bool,
}

impl Flood {
    /// SYNs at full speed to `dst:dport` from sources drawn from `ranges`
    /// (first, count), at most `GEN_MAX_RANGES`.
    pub fn spoofed_syn_v4(ranges: &[(Ipv4Addr, u32)], dst: Ipv4Addr, dport: u16) -> Self {
        assert!(
            (1..=GEN_MAX_RANGES).contains(&ranges.len()),
            "1 to {GEN_MAX_RANGES} source ranges"
        );
        let mut more_sources = [NO_RANGE; GEN_MAX_RANGES - 1];
        more_sources[..ranges.len() - 1].copy_from_slice(&ranges[1..]);
        Self {
            first_src: ranges[0].0,
            sources: ranges[0].1,
            more_sources,
            ..Self::new(Kind::Syn, dst.into(), dport)
        }
    }

    /// `kind` to `dst:dport` at full speed, from one source: the first
    /// address of 192.0.2.0/24 (IPv4) or 2001:db8:: (IPv6).
    pub fn new(kind: Kind, dst: IpAddr, dport: u16) -> Self {
        Self {
            kind,
            first_src: Ipv4Addr::new(192, 0, 2, 0),
            sources: 1,
            more_sources: [NO_RANGE; GEN_MAX_RANGES - 1],
            src6: DOC_V6,
            src6_random: 0,
            dst,
            dport,
            spin: 0,
            dport_span: 0,
            fixed: false,
        }
    }

    /// SYNs at full speed to `dst:dport` from random addresses in random
    /// /64s across 2001:db8::/32 (all 96 bits beneath it drawn per frame).
    pub fn spoofed_syn_v6(dst: Ipv6Addr, dport: u16) -> Self {
        Self {
            src6_random: u128::MAX >> 32,
            ..Self::new(Kind::Syn, dst.into(), dport)
        }
    }

    /// The IPv4 source ranges in use, the first included.
    pub fn ranges(&self) -> impl Iterator<Item = (Ipv4Addr, u32)> + '_ {
        std::iter::once((self.first_src, self.sources))
            .chain(self.more_sources)
            .filter(|r| r.1 > 0)
    }
}

/// 2001:db8::/32, the IPv6 documentation prefix.
const DOC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0);

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
            first_src: attacker,
            spin: 300,
            dport_span,
            ..Flood::new(kind, dst.into(), port)
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
/// An IPv4 range must lie within one documentation /24.
fn check_sources(spec: &Flood) -> anyhow::Result<()> {
    if spec.dst.is_ipv6() {
        let top = u128::from(DOC_V6) >> 96;
        anyhow::ensure!(
            u128::from(spec.src6) >> 96 == top && spec.src6_random >> 96 == 0,
            "flood sources {}/{:#x} leave the documentation range 2001:db8::/32",
            spec.src6,
            spec.src6_random
        );
        return Ok(());
    }
    let documentation = |a: Ipv4Addr| {
        let o = a.octets();
        matches!(
            (o[0], o[1], o[2]),
            (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
        )
    };
    anyhow::ensure!(spec.sources >= 1, "a flood needs a source");
    for (first, count) in spec.ranges() {
        let last = Ipv4Addr::from(u32::from(first).saturating_add(count - 1));
        anyhow::ensure!(
            documentation(first) && u32::from(first) >> 8 == u32::from(last) >> 8,
            "flood sources {first}..={last} leave the documentation ranges"
        );
    }
    Ok(())
}

/// The frame the generator rewrites, and its config.
fn template(spec: &Flood) -> (Vec<u8>, GenConfig) {
    let (src, dst) = match spec.dst {
        IpAddr::V4(d) => (spec.first_src.to_string(), d.to_string()),
        IpAddr::V6(d) => (spec.src6.to_string(), d.to_string()),
    };
    let v6 = spec.dst.is_ipv6();
    let (min, ip_len) = if v6 {
        (GEN_MIN_FRAME6, 40)
    } else {
        (GEN_MIN_FRAME, 20)
    };
    let template = match spec.kind {
        Kind::Syn => Spec::syn(&src, &dst, 40_000, spec.dport).build(),
        Kind::Udp => Spec::udp(&src, &dst, 40_000, spec.dport)
            .payload(min - 14 - ip_len - 8)
            .build(),
    };
    let l4 = 14 + ip_len;
    let at16 = |o: usize| u16::from_ne_bytes([template[o], template[o + 1]]);
    let at32 = |o: usize| u32::from_ne_bytes([0, 1, 2, 3].map(|i| template[o + i]));
    let mut ranges = [SrcRange::default(); GEN_MAX_RANGES];
    for (r, (first, count)) in ranges.iter_mut().zip(spec.ranges()) {
        *r = SrcRange {
            base: u32::from(first),
            count,
        };
    }
    let mask = spec.src6_random.to_be_bytes();
    let mask_at = |w: usize| u32::from_ne_bytes([0, 1, 2, 3].map(|i| mask[4 * w + i]));
    let cfg = GenConfig {
        ranges,
        src_total: spec.ranges().map(|r| r.1).sum(),
        orig_src: if v6 { 0 } else { at32(26) },
        src6_random: [mask_at(1), mask_at(2), mask_at(3)],
        orig_src6: if v6 {
            [at32(26), at32(30), at32(34)]
        } else {
            [0; 3]
        },
        ip_csum: if v6 { 0 } else { at16(24) },
        l4_csum: at16(match spec.kind {
            Kind::Syn => l4 + 16,
            Kind::Udp => l4 + 6,
        }),
        orig_sport: at16(l4),
        vary_sport: 1,
        spin: spec.spin,
        orig_dport: at16(l4 + 2),
        dport_span: spec.dport_span,
        fixed: spec.fixed as u32,
    };
    (template, cfg)
}

/// The BPF object, loaded in the current namespace. Its other maps are
/// created too; the source table is kept small, nothing else is used.
fn load_object() -> anyhow::Result<aya::Ebpf> {
    EbpfLoader::new()
        .map_max_entries(SOURCES, 1024)
        .map_max_entries(SOURCE_FLOWS, 1024)
        .map_max_entries(SOURCE_CONTROL, 1024)
        .load(tollgate::loader::OBJECT)
        .context("loading the BPF object for the lab's generator or sink")
}

fn ifindex(ns: &NetNs, iface: &str) -> anyhow::Result<u32> {
    let name = std::ffi::CString::new(iface)?;
    // SAFETY: a valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    anyhow::ensure!(ifindex != 0, "no interface {iface} in {}", ns.name());
    Ok(ifindex)
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
        check_sources(spec)?;
        let (template, cfg) = template(spec);
        ns.enter(|| -> anyhow::Result<Self> {
            let mut ebpf = load_object()?;
            let mut map: Array<_, GenConfig> = ebpf
                .take_map(GEN_MAP)
                .context("the object has no generator map")?
                .try_into()?;
            map.set(0, cfg, 0)?;
            let mut frame = GenFrame {
                bytes: [0; GEN_MIN_FRAME6],
                _pad: [0; 2],
            };
            anyhow::ensure!(
                template.len() == GEN_MIN_FRAME || template.len() == GEN_MIN_FRAME6,
                "a generator template is {GEN_MIN_FRAME} or {GEN_MIN_FRAME6} bytes, not {}",
                template.len()
            );
            frame.bytes[..template.len()].copy_from_slice(&template);
            let mut frames: Array<_, GenFrame> = ebpf
                .take_map(GEN_FRAME_MAP)
                .context("the object has no generator frame map")?
                .try_into()?;
            frames.set(0, frame, 0)?;
            let prog: &mut Xdp = ebpf
                .program_mut(GEN_PROG)
                .context("the object has no generator program")?
                .try_into()?;
            prog.load().context("loading the generator program")?;
            let ifindex = ifindex(ns, iface)?;
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
    pub fn send(&self, ns: &NetNs, frames: u64, max_time: Duration) -> anyhow::Result<Sent> {
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

    /// `send` from a thread pinned to each CPU of `cpus` at once, each
    /// sending up to `frames`; the frames they sent in all, over the
    /// longest of their times. In `FloodLab::spread`, each CPU's frames
    /// are received on that CPU.
    pub fn send_from(
        &self,
        ns: &NetNs,
        cpus: &[usize],
        frames: u64,
        max_time: Duration,
    ) -> anyhow::Result<Sent> {
        let each = std::thread::scope(|s| {
            let threads: Vec<_> = cpus
                .iter()
                .map(|&cpu| {
                    s.spawn(move || {
                        crate::traffic::pin_thread(cpu)?;
                        self.send(ns, frames, max_time)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("a generator thread"))
                .collect::<anyhow::Result<Vec<Sent>>>()
        })?;
        Ok(Sent {
            packets: each.iter().map(|s| s.packets).sum(),
            elapsed: each.iter().map(|s| s.elapsed).max().unwrap_or_default(),
        })
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

/// `tollgate_sink` (XDP_DROP), or `tollgate_floor` (XDP_PASS), attached
/// natively to an interface in a namespace; detached when dropped.
///
/// A veth end needs an XDP program of its own to take frames its peer
/// sends with XDP_TX promptly: the peer wakes its NAPI only if it has one
/// (`veth_xdp_flush`); with GRO alone the frames wait in its ring until
/// the next ordinary packet, which a lone SYN-ACK never gets.
pub struct Sink {
    _ebpf: aya::Ebpf,
}

impl Sink {
    /// Drops everything `iface` receives.
    pub fn attach(ns: &NetNs, iface: &str) -> anyhow::Result<Self> {
        Self::attach_program(ns, iface, SINK_PROG)
    }

    /// Drops everything `iface` receives after reading each frame's source
    /// address (`SINK_READ_PROG`).
    pub fn attach_reading(ns: &NetNs, iface: &str) -> anyhow::Result<Self> {
        Self::attach_program(ns, iface, SINK_READ_PROG)
    }

    /// Passes everything `iface` receives (an end that must take XDP_TX
    /// frames and hand them to its stack).
    pub fn pass(ns: &NetNs, iface: &str) -> anyhow::Result<Self> {
        Self::attach_program(ns, iface, monitor_common::maps::PROG_FLOOR)
    }

    fn attach_program(ns: &NetNs, iface: &str, name: &str) -> anyhow::Result<Self> {
        ns.enter(|| -> anyhow::Result<Self> {
            let mut ebpf = load_object()?;
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("the object has no program {name}"))?
                .try_into()?;
            prog.load().with_context(|| format!("loading {name}"))?;
            prog.attach(iface, XdpMode::Driver)
                .with_context(|| format!("attaching {name} to {iface} in {}", ns.name()))?;
            Ok(Self { _ebpf: ebpf })
        })?
    }
}
