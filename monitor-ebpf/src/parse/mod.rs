//! The packet parser: a cursor and one small bounded helper per header,
//! each in the file named after its header (`ethernet` with its VLAN tags,
//! `ipv4`, `ipv6` for the fixed header, `ipv6_ext` for the extension-header
//! walk, `tcp`, `udp`, `icmp`), as xdp-tools' `parsing_helpers.h` has
//! one function per header. It fills a `PacketInfo` and does no map
//! lookups.
//!
//! Every read goes through `Cursor::peek` or `Cursor::take`, checked
//! against `data_end`. Each helper advances the cursor past its header.
//! Variable lengths (IHL, TCP data offset, extension header lengths) are
//! turned into an offset first and checked again before the next read.
//! This file holds the cursor, the order the headers are read in
//! (`parse`, `parse_l4`) and the `malformed` marker the helpers share.
//! The link- and network-layer helpers record what they read in
//! `PacketInfo` themselves (IPv4's source, for one, is recorded even when
//! the rest of its header turns out malformed); the transport-layer
//! helpers check and step over their header and `parse_l4` records it
//! (see there why).

mod ethernet;
mod icmp;
mod ipv4;
mod ipv6;
mod ipv6_ext;
mod tcp;
mod udp;

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use monitor_common::{
    reason::Malformed,
    types::{PacketInfo, RuntimeConfig, SourceKey, family, l4},
};

use self::{
    ethernet::{ETH_P_IP, ETH_P_IPV6, parse_ethernet, skip_ethernet},
    icmp::parse_icmp,
    ipv4::{ipv4_source, ipv4_tcp_follows, parse_ipv4},
    ipv6::{ipv6_source, ipv6_tcp_follows, parse_ipv6},
    tcp::{bare_syn as tcp_bare_syn, parse_tcp},
    udp::parse_udp,
};

/// Upper-layer protocol numbers (IANA), as the IPv4 protocol field and the
/// last IPv6 next-header field carry them.
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// Position in the packet (an absolute address, as `ctx.data()` gives it)
/// and the end of the packet.
#[derive(Clone, Copy)]
pub struct Cursor {
    start: usize,
    pos: usize,
    end: usize,
}

impl Cursor {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            start: ctx.data(),
            pos: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// Bytes from the start of the frame to the cursor.
    #[inline(always)]
    fn offset(&self) -> u16 {
        (self.pos - self.start) as u16
    }

    /// A pointer to a `T` at the cursor, if the whole `T` is inside the
    /// packet. Does not advance.
    #[inline(always)]
    fn peek<T>(&self) -> Option<*const T> {
        if self.pos + size_of::<T>() > self.end {
            return None;
        }
        Some(self.pos as *const T)
    }

    /// Reads a `T` at the cursor and advances past it.
    #[inline(always)]
    fn take<T>(&mut self) -> Option<*const T> {
        let p = self.peek::<T>()?;
        self.pos += size_of::<T>();
        Some(p)
    }

    /// Advances by `len` bytes, checking that they are inside the packet.
    #[inline(always)]
    fn skip(&mut self, len: usize) -> Option<()> {
        if self.pos + len > self.end {
            return None;
        }
        self.pos += len;
        Some(())
    }
}

/// Parses Ethernet, up to two VLAN tags, IPv4/IPv6 and the upper layer.
/// Never fails: what could not be read is recorded in `info.malformed`
/// (and `info.family == MALFORMED` if not even the IP header was read).
#[inline(always)]
pub fn parse(ctx: &XdpContext, info: &mut PacketInfo) {
    let mut c = Cursor::new(ctx);
    let Some(proto) = parse_ethernet(&mut c, info) else {
        return;
    };
    info.l3_off = c.offset();
    match proto {
        ETH_P_IP => {
            if let Some(p) = parse_ipv4(&mut c, info) {
                parse_l4(&mut c, info, p);
            }
        }
        ETH_P_IPV6 => {
            if let Some(p) = parse_ipv6(&mut c, info) {
                parse_l4(&mut c, info, p);
            }
        }
        _ => info.family = family::OTHER,
    }
}

/// The network header's place and ethertype, read past the same tags as
/// `parse` and recording nothing: the drop cache's fast path reads the
/// source there (`source_key`) before any of the full parse.
#[inline(always)]
pub fn network_header(ctx: &XdpContext) -> Option<(Cursor, u16)> {
    let mut c = Cursor::new(ctx);
    let proto = skip_ethernet(&mut c)?;
    Some((c, proto))
}

/// The source key of the network header at `c` (ethertype `proto`): `Some`
/// exactly when `parse` records a source (the same version
/// checks). Reads, does not advance.
#[inline(always)]
pub fn source_key(c: &Cursor, proto: u16, cfg: &RuntimeConfig) -> Option<SourceKey> {
    match proto {
        ETH_P_IP => Some(SourceKey::v4(ipv4_source(c)?, cfg.v4_mask)),
        ETH_P_IPV6 => Some(SourceKey::v6(&ipv6_source(c)?, &cfg.v6_mask)),
        _ => None,
    }
}

/// Whether the packet whose network header is at `c` is a TCP SYN without
/// ACK as `parse` records one, where the TCP header follows the IP
/// header directly (a SYN behind IPv6 extension headers is not seen).
#[inline(always)]
pub fn bare_syn(c: &Cursor, proto: u16) -> bool {
    let mut c = *c;
    let tcp = match proto {
        ETH_P_IP => ipv4_tcp_follows(&mut c),
        ETH_P_IPV6 => ipv6_tcp_follows(&mut c),
        _ => false,
    };
    tcp && tcp_bare_syn(&c)
}

/// Marks `info` malformed at `kind`; returns `None` so helpers can
/// `return malformed(..)`.
#[inline(always)]
fn malformed<T>(info: &mut PacketInfo, kind: Malformed) -> Option<T> {
    info.malformed = kind as u8;
    None
}

/// TCP, UDP, ICMP and ICMPv6 headers, read by their helpers and recorded
/// here: `l4`, and the ports (host order) and the 12-bit TCP flags field
/// (host order). Other protocols are left at `l4::NONE`; ICMP counts only
/// under IPv4 and ICMPv6 only under IPv6.
///
/// The fields are read and stored here rather than in `parse_tcp` and
/// `parse_udp` because of what LLVM makes of the alternative: with both
/// helpers writing `info`, it merged this dispatch into the unrolled IPv6
/// extension-header walk, one copy per exit (`tollgate_parse` grew from
/// 1,585 to 2,358 instructions, `tollgate` from 3,152 to 3,604). Compare
/// the object's disassembly before moving these stores.
#[inline(always)]
fn parse_l4(c: &mut Cursor, info: &mut PacketInfo, proto: u8) {
    info.l4_off = c.offset();
    match proto {
        IPPROTO_TCP => {
            let Some((t, off_flags)) = parse_tcp(c, info) else {
                return;
            };
            let t = unsafe { &*t };
            info.l4 = l4::TCP;
            info.sport = u16::from_be(t.sport);
            info.dport = u16::from_be(t.dport);
            info.tcp_flags = off_flags & 0x0fff;
        }
        IPPROTO_UDP => {
            let Some(u) = parse_udp(c, info) else {
                return;
            };
            let u = unsafe { &*u };
            info.l4 = l4::UDP;
            info.sport = u16::from_be(u.sport);
            info.dport = u16::from_be(u.dport);
        }
        IPPROTO_ICMP if info.family == family::IPV4 => {
            if parse_icmp(c, info).is_some() {
                info.l4 = l4::ICMP;
            }
        }
        IPPROTO_ICMPV6 if info.family == family::IPV6 => {
            if parse_icmp(c, info).is_some() {
                info.l4 = l4::ICMPV6;
            }
        }
        _ => {}
    }
}
