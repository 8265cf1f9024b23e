//! `tollgate_gen`: the lab's traffic generator (see
//! `monitor_common::generator`). Run through BPF_PROG_TEST_RUN with live
//! frames, never attached; and `tollgate_sink`, the lab's XDP_DROP for the
//! attacker's end of a veth. The daemon loads neither.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_get_prandom_u32, bpf_xdp_store_bytes},
    macros::map,
    macros::xdp,
    maps::Array,
    programs::XdpContext,
};
use monitor_common::generator::{
    GEN_MAX_SPIN, GEN_MIN_FRAME, GEN_MIN_FRAME6, GenConfig, GenFrame, csum_replace, pair,
    pick_source,
};

#[map]
pub static TG_GEN: Array<GenConfig> = Array::with_max_entries(1, 0);

#[map]
pub static TG_GEN_FRAME: Array<GenFrame> = Array::with_max_entries(1, 0);

/// The EtherType's second byte at offset 13: 0x00 for IPv4 (0x0800),
/// 0xdd for IPv6 (0x86dd); the template is one or the other, untagged.
const ETH_TYPE_LO: usize = 13;
const IPV6_LO: u8 = 0xdd;

/// Byte offsets in an untagged IPv4 frame with a 20-byte header.
mod v4 {
    pub const PROTO: usize = 23;
    pub const CSUM: usize = 24;
    pub const SRC: usize = 26;
    pub const PORTS: usize = 34;
    pub const TCP_CSUM: usize = 50;
    pub const UDP_CSUM: usize = 40;
}

/// Byte offsets in an untagged IPv6 frame without extension headers.
mod v6 {
    pub const NEXT: usize = 20;
    /// Words 1..3 of the source (bytes 4..16 of the address).
    pub const SRC_W1: usize = 26;
    pub const PORTS: usize = 54;
    pub const TCP_CSUM: usize = 70;
    pub const UDP_CSUM: usize = 60;
}

/// What a frame gets besides its source: the ports as stored, and the
/// random words for an IPv6 source.
struct Draw {
    r: u32,
    sport: u16,
    dport: u16,
    rand6: [u32; 3],
}

#[inline(always)]
fn prandom() -> u32 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_prandom_u32() }
}

#[inline(always)]
fn draw(cfg: &GenConfig) -> Draw {
    let r = prandom();
    let rand6 = if cfg.src6_random != [0; 3] {
        [prandom(), prandom(), prandom()]
    } else {
        [0; 3]
    };
    // Busy work that feeds the ports, so it is not optimised away.
    let x = spin(cfg, r);
    let sport = if cfg.vary_sport != 0 {
        ((x >> 16) as u16 | 1024).to_be()
    } else {
        cfg.orig_sport
    };
    let dport = if cfg.dport_span != 0 {
        (u16::from_be(cfg.orig_dport).wrapping_add((x % cfg.dport_span as u32) as u16)).to_be()
    } else {
        cfg.orig_dport
    };
    Draw {
        r,
        sport,
        dport,
        rand6,
    }
}

/// `cfg.spin` rounds of busy work from `seed` (the pace; see
/// `GenConfig::spin`).
#[inline(always)]
fn spin(cfg: &GenConfig, seed: u32) -> u32 {
    let mut x = seed;
    let mut i = 0;
    while i < GEN_MAX_SPIN {
        if i >= cfg.spin {
            break;
        }
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        i += 1;
    }
    x
}

/// A zero UDP checksum means "none"; a computed zero is sent as all ones.
#[inline(always)]
fn udp_csum(c: u16) -> u16 {
    if c == 0 { 0xffff } else { c }
}

#[xdp]
pub fn tollgate_gen(ctx: XdpContext) -> u32 {
    let Some(cfg) = TG_GEN.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    if cfg.fixed != 0 {
        // Paced too: the result is kept (a volatile store) so the work is
        // not optimised away, and the frame is left as built.
        let mut kept = 0u32;
        // SAFETY: a store to a local.
        unsafe { core::ptr::write_volatile(&mut kept, spin(cfg, cfg.spin)) };
        return xdp_action::XDP_TX;
    }
    let Some(template) = TG_GEN_FRAME.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // The whole template first (see `GEN_FRAME_MAP`).
    let is_v6 = unsafe { (*template).bytes[ETH_TYPE_LO] } == IPV6_LO;
    let len = if is_v6 { GEN_MIN_FRAME6 } else { GEN_MIN_FRAME };
    // SAFETY: the map value holds GEN_MIN_FRAME6 bytes; the helper checks
    // the frame's bounds.
    if unsafe {
        bpf_xdp_store_bytes(
            ctx.ctx,
            0,
            (*template).bytes.as_mut_ptr().cast(),
            len as u32,
        )
    } != 0
    {
        return xdp_action::XDP_ABORTED;
    }
    let d = draw(cfg);
    // Checked after the helper calls, which clobber the verifier's
    // knowledge of packet bounds held in registers.
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + GEN_MIN_FRAME > end {
        return xdp_action::XDP_ABORTED;
    }
    let p = data as *mut u8;
    if is_v6 {
        if data + GEN_MIN_FRAME6 > end {
            return xdp_action::XDP_ABORTED;
        }
        // SAFETY: the frame holds GEN_MIN_FRAME6 bytes, checked above.
        unsafe { rewrite_v6(p, cfg, &d) };
    } else {
        // SAFETY: the frame holds GEN_MIN_FRAME bytes, checked above.
        unsafe { rewrite_v4(p, cfg, &d) };
    }
    xdp_action::XDP_TX
}

/// Writes the source and ports and fixes both checksums.
///
/// # Safety
/// `p` points at an IPv4 frame of at least GEN_MIN_FRAME bytes.
#[inline(always)]
unsafe fn rewrite_v4(p: *mut u8, cfg: &GenConfig, d: &Draw) {
    let src = pick_source(cfg, d.r).to_be();
    let old = [cfg.orig_src, pair(cfg.orig_sport, cfg.orig_dport)];
    let new = [src, pair(d.sport, d.dport)];
    // SAFETY: every offset written is below GEN_MIN_FRAME (the caller's).
    unsafe {
        (p.add(v4::SRC) as *mut u32).write_unaligned(src);
        (p.add(v4::PORTS) as *mut u32).write_unaligned(new[1]);
        (p.add(v4::CSUM) as *mut u16).write_unaligned(csum_replace(
            cfg.ip_csum,
            &[old[0]],
            &[new[0]],
        ));
        // The addresses are in the TCP/UDP pseudo-header, the ports in
        // the header.
        match *p.add(v4::PROTO) {
            6 => (p.add(v4::TCP_CSUM) as *mut u16).write_unaligned(csum_replace(
                cfg.l4_csum,
                &old,
                &new,
            )),
            17 if cfg.l4_csum != 0 => (p.add(v4::UDP_CSUM) as *mut u16)
                .write_unaligned(udp_csum(csum_replace(cfg.l4_csum, &old, &new))),
            _ => {}
        }
    }
}

/// Writes source words 1..3 and the ports and fixes the L4 checksum
/// (IPv6 has no header checksum).
///
/// # Safety
/// `p` points at an IPv6 frame of at least GEN_MIN_FRAME6 bytes.
#[inline(always)]
unsafe fn rewrite_v6(p: *mut u8, cfg: &GenConfig, d: &Draw) {
    let mut src = cfg.orig_src6;
    let mut i = 0;
    while i < 3 {
        src[i] = (src[i] & !cfg.src6_random[i]) | (d.rand6[i] & cfg.src6_random[i]);
        i += 1;
    }
    let (o, ports) = (cfg.orig_src6, pair(d.sport, d.dport));
    let old = [o[0], o[1], o[2], pair(cfg.orig_sport, cfg.orig_dport)];
    let new = [src[0], src[1], src[2], ports];
    // SAFETY: every offset written is below GEN_MIN_FRAME6 (the caller's).
    unsafe {
        let s = p.add(v6::SRC_W1) as *mut u32;
        s.write_unaligned(src[0]);
        s.add(1).write_unaligned(src[1]);
        s.add(2).write_unaligned(src[2]);
        (p.add(v6::PORTS) as *mut u32).write_unaligned(ports);
        match *p.add(v6::NEXT) {
            6 => (p.add(v6::TCP_CSUM) as *mut u16).write_unaligned(csum_replace(
                cfg.l4_csum,
                &old,
                &new,
            )),
            17 => (p.add(v6::UDP_CSUM) as *mut u16).write_unaligned(udp_csum(csum_replace(
                cfg.l4_csum,
                &old,
                &new,
            ))),
            _ => {}
        }
    }
}

/// Drops everything: the lab attaches it to the attacker's end of a veth,
/// where it absorbs the server's answers to spoofed sources, and where a
/// program must be for the veth to deliver XDP_TX frames to that end.
#[xdp]
pub fn tollgate_sink(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Drops a frame after reading its EtherType and IPv4 or IPv6 source
/// address (passes the rare frame too short to hold them, so the reads
/// cannot be optimised away): the floor of any filter that looks at the
/// packet, where `tollgate_sink` never touches it. The flood table runs
/// both: the difference is what reading the frame costs the receiving
/// core (runs on the veth lab have put it at 7 to 42 ns).
#[xdp]
pub fn tollgate_sink_read(ctx: XdpContext) -> u32 {
    const ETH: usize = 14;
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + ETH + 40 > end {
        return xdp_action::XDP_PASS;
    }
    let p = data as *const u8;
    // SAFETY: the 54 bytes read below were bounds-checked against data_end.
    let src = unsafe {
        if *p.add(ETH_TYPE_LO) == IPV6_LO {
            (p.add(ETH + 8) as *const u64).read_unaligned()
                ^ (p.add(ETH + 16) as *const u64).read_unaligned()
        } else {
            u64::from((p.add(ETH + 12) as *const u32).read_unaligned())
        }
    };
    if src == 0 {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}
