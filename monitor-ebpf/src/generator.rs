//! `tollgate_gen`: the lab's traffic generator (see
//! `monitor_common::generator`). Run through BPF_PROG_TEST_RUN with live
//! frames, never attached; the daemon never loads it.

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_get_prandom_u32, macros::map, macros::xdp,
    maps::Array, programs::XdpContext,
};
use monitor_common::generator::{GEN_MAX_SPIN, GEN_MIN_FRAME, GenConfig, csum_update, words_of};

#[map]
pub static TG_GEN: Array<GenConfig> = Array::with_max_entries(1, 0);

/// Byte offsets in an untagged IPv4 frame with a 20-byte header.
const IP_PROTO: usize = 23;
const IP_CSUM: usize = 24;
const IP_SRC: usize = 26;
const SPORT: usize = 34;
const DPORT: usize = 36;
const TCP_CSUM: usize = 50;
const UDP_CSUM: usize = 40;

#[xdp]
pub fn tollgate_gen(ctx: XdpContext) -> u32 {
    let Some(cfg) = TG_GEN.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: a helper without arguments.
    let r = unsafe { bpf_get_prandom_u32() };
    let idx = if cfg.src_count > 1 {
        r % cfg.src_count
    } else {
        0
    };
    let src = cfg.src_base.wrapping_add(idx).to_be();
    // Busy work that feeds the source port, so it is not optimised away.
    let mut x = r;
    let mut i = 0;
    while i < GEN_MAX_SPIN {
        if i >= cfg.spin {
            break;
        }
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        i += 1;
    }
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
    let [o0, o1] = words_of(cfg.orig_src);
    let [n0, n1] = words_of(src);
    let old = [o0, o1, cfg.orig_sport, cfg.orig_dport];
    let new = [n0, n1, sport, dport];
    // Checked after the helper calls, which clobber the verifier's
    // knowledge of packet bounds held in registers.
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + GEN_MIN_FRAME > end {
        return xdp_action::XDP_ABORTED;
    }
    let p = data as *mut u8;
    // SAFETY: every offset written is below GEN_MIN_FRAME, checked above.
    unsafe {
        (p.add(IP_SRC) as *mut u32).write_unaligned(src);
        (p.add(SPORT) as *mut u16).write_unaligned(sport);
        (p.add(DPORT) as *mut u16).write_unaligned(dport);
        (p.add(IP_CSUM) as *mut u16).write_unaligned(csum_update(cfg.ip_csum, &old, &new, 2));
        match *p.add(IP_PROTO) {
            // Addresses and both ports are in the TCP/UDP pseudo-header
            // and header: all four words.
            6 => (p.add(TCP_CSUM) as *mut u16).write_unaligned(csum_update(
                cfg.l4_csum,
                &old,
                &new,
                4,
            )),
            // A zero UDP checksum means "none"; a computed zero is sent
            // as all ones.
            17 if cfg.l4_csum != 0 => {
                let c = csum_update(cfg.l4_csum, &old, &new, 4);
                (p.add(UDP_CSUM) as *mut u16).write_unaligned(if c == 0 { 0xffff } else { c });
            }
            _ => {}
        }
    }
    xdp_action::XDP_TX
}
