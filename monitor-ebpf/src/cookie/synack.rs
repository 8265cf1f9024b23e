//! `tollgate_synack`'s work: turn the SYN in the frame into its SYN-ACK in
//! place and send it back (XDP_TX). Reached only by tail call from the
//! main program, which left the header offsets in `TG_SYN_AT`.
//!
//! The headers are copied to the stack (`bpf_xdp_load_bytes`), the cookie
//! is the kernel's (`bpf_tcp_raw_gen_syncookie_*`, which also reads the
//! SYN's MSS option), the reply is built by the pure functions in
//! `monitor_common::syncookie` and written back with one
//! `bpf_xdp_store_bytes` after the frame is cut or grown to its size:
//! no packet pointer arithmetic for the verifier to follow past the MACs
//! (swapped in place at offset 0). VLAN tags stay
//! as they were; IPv4 options and IPv6 extension headers are not echoed
//! (the reply's TCP header follows the fixed IP header).

use aya_ebpf::{
    helpers::generated::{
        bpf_tcp_raw_gen_syncookie_ipv4, bpf_tcp_raw_gen_syncookie_ipv6, bpf_xdp_adjust_tail,
        bpf_xdp_store_bytes,
    },
    programs::XdpContext,
};
use monitor_common::{
    syncookie::{
        MAX_OPTIONS, PackedOptions, SynFacts, ipv4_header, ipv6_header, parse_syn_options, seal,
        synack_segment,
    },
    types::family,
};

use core::mem::MaybeUninit;

use super::load;
use crate::{
    maps::{TG_CONFIG, TG_SYN_AT},
    mem,
};

/// Deepest IP header offset the parser produces (Ethernet and two VLAN
/// tags).
const MAX_L3_OFF: u32 = 14 + 2 * 4;
/// Deepest TCP header offset it produces (IPv6 extension headers
/// included); a bound for the verifier, far above real packets.
const MAX_L4_OFF: u32 = 1024;

/// Rewrites the frame into the SYN-ACK; `None` if anything could not be
/// read, made or written (the caller drops the SYN and counts it).
#[inline(always)]
pub fn answer(ctx: &XdpContext) -> Option<()> {
    let at = unsafe { *TG_SYN_AT.get_ptr(0)? };
    let cfg = TG_CONFIG.get(0)?.cookie;
    let (l3, l4) = (at.l3_off as u32, at.l4_off as u32);
    if l3 > MAX_L3_OFF || l4 > MAX_L4_OFF {
        return None;
    }
    let md = ctx.ctx;
    // The frame's length, taken now as a 64-bit scalar: computed next to
    // the 32-bit sums below, LLVM does pointer arithmetic in 32 bits,
    // which the verifier refuses.
    let old_len = ctx.data_end() - ctx.data();
    let old_len = unsafe { core::ptr::read_volatile(&old_len) } as i64;
    let (mut th, mut ip) = (MaybeUninit::uninit(), MaybeUninit::uninit());
    let th: &mut [u8; 60] = mem::zeroed(&mut th);
    let ip: &mut [u8; 40] = mem::zeroed(&mut ip);
    unsafe { load(ctx, l4, th.as_mut_ptr(), 20)? };
    let th_len = ((th[12] >> 4) as u32) * 4;
    if th_len < 20 {
        return None;
    }
    if th_len > 20 {
        let opt_len = (th_len - 20).min(MAX_OPTIONS as u32);
        unsafe { load(ctx, l4 + 20, th.as_mut_ptr().add(20), opt_len)? };
    }
    let v4 = at.family == family::IPV4;
    let ip_len: u32 = if v4 { 20 } else { 40 };
    unsafe { load(ctx, l3, ip.as_mut_ptr(), ip_len)? };
    let cookie = unsafe {
        if v4 {
            bpf_tcp_raw_gen_syncookie_ipv4(ip.as_mut_ptr().cast(), th.as_mut_ptr().cast(), th_len)
        } else {
            bpf_tcp_raw_gen_syncookie_ipv6(ip.as_mut_ptr().cast(), th.as_mut_ptr().cast(), th_len)
        }
    };
    if cookie < 0 {
        return None;
    }
    let opts: &[u8; MAX_OPTIONS] = th[20..60].try_into().ok()?;
    // The walk over the options ends in many states (one per layout);
    // parked in the map and read back, its result is a value the verifier
    // does not follow, so everything after is verified once per reply
    // shape, not once per option layout.
    let parked = TG_SYN_AT.get_ptr_mut(0)?;
    unsafe {
        (*parked).options = PackedOptions::pack(&parse_syn_options(opts));
    }
    let options = unsafe { core::ptr::read_volatile(&(*parked).options) }.unpack();
    let syn = SynFacts {
        sport: u16::from_be_bytes([th[0], th[1]]),
        dport: u16::from_be_bytes([th[2], th[3]]),
        seq: u32::from_be_bytes([th[4], th[5], th[6], th[7]]),
        // ECE and CWR both set: the client asks for ECN (RFC 3168 6.1.1).
        ecn: th[13] & 0xc0 == 0xc0,
        options,
    };
    let mss = if v4 { cfg.mss4 } else { cfg.mss6 };
    let mut seg = synack_segment(&syn, cookie as u32, mss, cfg.wscale, at.now_ms);
    let word = |o: usize| u32::from_ne_bytes([ip[o], ip[o + 1], ip[o + 2], ip[o + 3]]);
    // The reply's IP header and TCP segment side by side, written with one
    // store (each helper call costs about 20 ns where returns are slow).
    let mut out = MaybeUninit::uninit();
    let out: &mut [u8; 80] = mem::zeroed(&mut out);
    if v4 {
        let (src, dst) = (word(12), word(16));
        seal(&mut seg, &[dst], &[src]);
        out[..20].copy_from_slice(&ipv4_header(dst, src, seg.len, cfg.ttl));
        out[20..60].copy_from_slice(&seg.bytes);
    } else {
        let src = [word(8), word(12), word(16), word(20)];
        let dst = [word(24), word(28), word(32), word(36)];
        seal(&mut seg, &dst, &src);
        out[..40].copy_from_slice(&ipv6_header(&dst, &src, seg.len, cfg.ttl));
        out[40..].copy_from_slice(&seg.bytes);
    }
    swap_macs(ctx)?;
    let seg_len = (seg.len as u32).min(40);
    if seg_len < 20 {
        return None;
    }
    let new_len = (l3 + ip_len + seg_len) as i64;
    unsafe {
        if bpf_xdp_adjust_tail(md, (new_len - old_len) as i32) != 0 {
            return None;
        }
        store(ctx, l3, out.as_mut_ptr(), ip_len + seg_len)?;
    }
    Some(())
}

/// The reply goes back to where the SYN came from: the MACs swapped in
/// the first buffer, which always holds the Ethernet header, without a
/// helper call.
#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> Option<()> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + 12 > end {
        return None;
    }
    let macs = start as *mut [u8; 12];
    let was = unsafe { core::ptr::read_unaligned(macs) };
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&was[6..]);
    swapped[6..].copy_from_slice(&was[..6]);
    unsafe { core::ptr::write_unaligned(macs, swapped) };
    Some(())
}

#[inline(always)]
unsafe fn store(ctx: &XdpContext, off: u32, buf: *mut u8, len: u32) -> Option<()> {
    (unsafe { bpf_xdp_store_bytes(ctx.ctx, off, buf.cast(), len) } == 0).then_some(())
}
