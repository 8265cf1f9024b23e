//! SYN cookies for the protected ports: which TCP segments the cookie
//! path takes (`gate`), the verified-source map, and the check of a
//! returning ACK. The SYN-ACK itself is built by the `tollgate_synack`
//! program (`synack`), which the main program tail-calls: a separate
//! program is verified on its own, so the cookie work adds nothing to the
//! main program's verifier budget beyond this gate.
//!
//! How a connection opens while cookies are on: the SYN of an unverified
//! source is answered here (`Reason::SynCookie`, XDP_TX) and claims no
//! source slot; the client's ACK carries the cookie, which
//! `bpf_tcp_raw_check_syncookie_*` checks with the kernel's secret; a
//! valid one verifies the source and the ACK goes on to the stack, where
//! the kernel's SYNPROXY (the nftables table the daemon installs) checks
//! the same cookie and opens the connection to the real socket. A verified
//! source's SYNs then go to the socket like any other packet, without the
//! proxy.

pub mod synack;

use core::mem::MaybeUninit;

use aya_ebpf::{
    helpers::generated::{
        bpf_tcp_raw_check_syncookie_ipv4, bpf_tcp_raw_check_syncookie_ipv6, bpf_xdp_load_bytes,
    },
    programs::XdpContext,
};
use monitor_common::{
    reason::{Reason, Verdict},
    syncookie::{CookieParams, VerifiedKey, cookie_event, cookie_mode, port_slot},
    types::{PacketInfo, RuntimeConfig, SourceControl, SourceKey, action, family, l4, tcp_flag},
};

use crate::{
    atomic,
    decide::enforce_untracked,
    maps::{self, TG_COOKIE_EVENTS, TG_COOKIE_PORTS, TG_VERIFIED, TG_VERIFIED_FILTER},
    mem, policy, sources,
};

/// Whether the packet is TCP to a port the cookies protect (while they
/// are configured at all). A malformed segment is not: it takes the
/// pipeline's malformed verdict, and no SYN-ACK can be built from it.
#[inline(always)]
pub fn protected(cfg: &CookieParams, info: &PacketInfo) -> bool {
    if cfg.mode == cookie_mode::OFF || info.l4 != l4::TCP || info.malformed != 0 {
        return false;
    }
    port_protected(info.dport)
}

/// Whether the cookies protect TCP port `port` (host order).
#[inline(always)]
pub fn port_protected(port: u16) -> bool {
    let (word, bit) = port_slot(port);
    TG_COOKIE_PORTS.get(word).is_some_and(|w| *w & bit != 0)
}

/// SYN without ACK, RST or FIN: what the gate answers with a cookie (a
/// SYN with FIN or RST too skips the gate, so the host-wide SYN limit in
/// `decide` still holds it).
#[inline(always)]
pub fn bare_syn(info: &PacketInfo) -> bool {
    info.tcp_flags & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST | tcp_flag::FIN)
        == tcp_flag::SYN
}

/// Copies `len` bytes of the frame at `off` to `buf`; `None` if they are
/// not all inside it.
///
/// # Safety
/// `buf` has room for `len` bytes.
#[inline(always)]
unsafe fn load(ctx: &XdpContext, off: u32, buf: *mut u8, len: u32) -> Option<()> {
    (unsafe { bpf_xdp_load_bytes(ctx.ctx, off, buf.cast(), len) } == 0).then_some(())
}

#[inline(always)]
pub fn event(index: u32) {
    if let Some(c) = TG_COOKIE_EVENTS.get_ptr_mut(index) {
        unsafe { *c += 1 };
    }
}

/// What the cookie path makes of a TCP segment to a protected port:
/// `None` to go on through the ordinary pipeline, or the verdict. Bans
/// and deny rules still win over an unverified SYN; a verified source
/// and an `allow` rule's sources go the ordinary way, their ACKs too.
#[inline(always)]
pub fn gate(
    ctx: &XdpContext,
    info: &PacketInfo,
    source: &SourceKey,
    cfg: &RuntimeConfig,
    now: u64,
) -> Option<(Reason, Verdict)> {
    let syn = bare_syn(info);
    let ack = info.tcp_flags & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST) == tcp_flag::ACK;
    if (!syn && !ack) || info.malformed != 0 {
        return None;
    }
    let key = if info.family == family::IPV4 {
        VerifiedKey::v4(info.src[0])
    } else {
        VerifiedKey::v6(&info.src)
    };
    if is_verified(&key, now, cfg.cookie.verified_ttl_s) {
        if syn {
            event(cookie_event::VERIFIED_SYN);
        }
        return None;
    }
    if syn {
        if cfg.cookie.mode != cookie_mode::ON {
            return None;
        }
        return unverified_syn(info, cfg.generation, now);
    }
    if ack_cookie_valid(ctx, info) {
        let until = now + cfg.cookie.verified_ttl_s as u64 * 1_000_000_000;
        if TG_VERIFIED.insert(&key, &until, 0).is_ok() {
            let (word, bit) = key.filter_slot();
            if let Some(w) = TG_VERIFIED_FILTER.get_ptr_mut(word) {
                atomic::or(w, bit);
            }
        }
        event(cookie_event::ACK_VALID);
        return None;
    }
    if cfg.cookie.mode != cookie_mode::ON || no_cookie_expected(info, source, cfg) {
        // Cookies are not being issued, or the source's handshakes did not
        // go through them (see `no_cookie_expected`).
        return None;
    }
    event(cookie_event::ACK_INVALID);
    Some((Reason::CookieInvalid, Verdict::Drop))
}

/// Whether the source's connections may carry no cookie: it was in the
/// source table before the cookies last turned on (its connections from
/// before), or its rule allows it (its SYNs go to the socket, whose
/// SYN-ACK is no cookie). A spoofer's ACK flood during the attack comes
/// from sources seen only since, under no allow rule.
#[inline(always)]
fn no_cookie_expected(info: &PacketInfo, source: &SourceKey, cfg: &RuntimeConfig) -> bool {
    if let Some(src) = sources::find(source)
        && unsafe { (*src.ctl).first_seen_ns } < cfg.cookie.on_since_ns
    {
        return true;
    }
    let (rule_slot, _) = policy::lookup(info, cfg.generation);
    maps::rule(cfg.generation & 1, rule_slot).is_some_and(|r| r.action == action::ALLOW)
}

/// Whether `key` is verified now; an entry past half its time is
/// refreshed, so a source that keeps talking stays verified while a
/// flood's worth of lookups costs no writes.
#[inline(always)]
fn is_verified(key: &VerifiedKey, now: u64, ttl_s: u32) -> bool {
    // The filter first: a flood's random sources miss it in a cache-warm
    // 128 KiB (see `maps::VERIFIED_FILTER`).
    let (word, bit) = key.filter_slot();
    match TG_VERIFIED_FILTER.get(word) {
        Some(w) if atomic::load(w) & bit != 0 => {}
        _ => return false,
    }
    let Some(until) = (unsafe { TG_VERIFIED.get(key) }) else {
        return false;
    };
    let until = *until;
    if until <= now {
        return false;
    }
    let ttl = ttl_s as u64 * 1_000_000_000;
    if until - now < ttl / 2 {
        let _ = TG_VERIFIED.insert(key, &(now + ttl), 0);
    }
    true
}

/// An unverified source's SYN: its ban or deny rule first (looked up
/// without claiming a source slot), an `allow` rule's sources the
/// ordinary way, everyone else a cookie.
#[inline(always)]
fn unverified_syn(info: &PacketInfo, generation: u32, now: u64) -> Option<(Reason, Verdict)> {
    let (rule_slot, ban_until_ns) = policy::lookup(info, generation);
    let fresh = SourceControl {
        ban_until_ns,
        generation,
        rule_slot,
        ..SourceControl::default()
    };
    match enforce_untracked(&fresh, now) {
        (Reason::Allow, _) => None,
        (reason, Verdict::Drop) => Some((reason, Verdict::Drop)),
        _ => Some((Reason::SynCookie, Verdict::Tx)),
    }
}

/// Copies the segment's IP and TCP headers to the stack and asks the
/// kernel whether its ACK number is a cookie it issued for this
/// connection (`bpf_tcp_raw_check_syncookie_*` reads the addresses, ports
/// and sequence numbers only).
#[inline(always)]
fn ack_cookie_valid(ctx: &XdpContext, info: &PacketInfo) -> bool {
    let (mut th, mut ip) = (MaybeUninit::uninit(), MaybeUninit::uninit());
    let th: &mut [u8; 20] = mem::zeroed(&mut th);
    let ip: &mut [u8; 40] = mem::zeroed(&mut ip);
    let v4 = info.family == family::IPV4;
    let ip_len = if v4 { 20 } else { 40 };
    // SAFETY: each buffer holds what is loaded into it.
    unsafe {
        if load(ctx, info.l4_off as u32, th.as_mut_ptr(), 20).is_none()
            || load(ctx, info.l3_off as u32, ip.as_mut_ptr(), ip_len).is_none()
        {
            return false;
        }
        if v4 {
            bpf_tcp_raw_check_syncookie_ipv4(ip.as_mut_ptr().cast(), th.as_mut_ptr().cast()) == 0
        } else {
            bpf_tcp_raw_check_syncookie_ipv6(ip.as_mut_ptr().cast(), th.as_mut_ptr().cast()) == 0
        }
    }
}
