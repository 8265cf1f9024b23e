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
    ipv6::{ipv6_next, ipv6_source, ipv6_tcp_follows, parse_ipv6},
    ipv6_ext::walked,
    tcp::{bare_syn as tcp_bare_syn, parse_tcp},
    udp::parse_udp,
};

/// Upper-layer protocol numbers (IANA), as the IPv4 protocol field and the
/// last IPv6 next-header field carry them.
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// The start and end of the packet (addresses, as `ctx.data()` gives
/// them), the position in it and the end its IP header declares (offsets
/// from the start). Offsets rather than addresses: the verifier refuses
/// arithmetic that LLVM derives from the difference of two addresses.
#[derive(Clone, Copy)]
pub struct Cursor {
    start: usize,
    end: usize,
    off: usize,
    /// The end of the IP packet by its own length field (IPv4 total
    /// length, IPv6 payload length) when that is short of the frame's
    /// end: the bytes past it are Ethernet padding or a trailer, not
    /// headers, so reads stop there as tshark's do. Checked without a
    /// branch of its own (`at`): a branch per read doubled the paths the
    /// verifier walks through the pipeline and took the program past its
    /// limit of a million instructions.
    stop: usize,
}

/// Past the end of a frame's first buffer, which is at most a page (native
/// mode, and generic mode with multi-buffer programs), and small enough
/// that an offset plus it stays under the verifier's limit for packet
/// offsets (64 KiB). On a kernel with 64 KiB pages a first buffer can be
/// longer: there a header read past the IP length may land inside the
/// frame and be read, as it was before `stop` (no bound is weakened; the
/// verifier still checks every read against the frame's end).
const PAST_END: usize = 0x8000;

impl Cursor {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
            off: 0,
            stop: u16::MAX as usize + 1,
        }
    }

    /// Ends the packet `len` bytes past the cursor if that is short of
    /// where it ends (see `stop`).
    #[inline(always)]
    fn stop_after(&mut self, len: usize) {
        let at = self.off + len;
        if at < self.stop {
            self.stop = at;
        }
    }

    /// The address of `len` bytes at the cursor if they are inside the
    /// packet. Bytes past `stop` get an address past the end by
    /// arithmetic, so the one check against `end`, which the verifier
    /// needs, refuses them too.
    #[inline(always)]
    fn at(&self, len: usize) -> Option<usize> {
        let past = ((self.stop as i64 - (self.off + len) as i64) >> 63) as usize;
        let at = self.start + self.off + (past & PAST_END);
        if at + len > self.end {
            return None;
        }
        Some(at)
    }

    /// Bytes from the start of the frame to the cursor.
    #[inline(always)]
    fn offset(&self) -> u16 {
        self.off as u16
    }

    /// A pointer to a `T` at the cursor, if the whole `T` is inside the
    /// packet. Does not advance.
    #[inline(always)]
    fn peek<T>(&self) -> Option<*const T> {
        Some(self.at(size_of::<T>())? as *const T)
    }

    /// Reads a `T` at the cursor and advances past it.
    #[inline(always)]
    fn take<T>(&mut self) -> Option<*const T> {
        let p = self.peek::<T>()?;
        self.off += size_of::<T>();
        Some(p)
    }

    /// Advances by `len` bytes, checking that they are inside the packet.
    #[inline(always)]
    fn skip(&mut self, len: usize) -> Option<()> {
        self.at(len)?;
        self.off += len;
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

/// What the drop cache's fast path knows of a packet's transport layer
/// without the full parse (`transport`).
pub enum Transport {
    /// `parse` records no TCP header for it.
    NotTcp,
    /// TCP, the header following the IP header directly: its
    /// destination port (host order).
    TcpTo(u16),
    /// It may be TCP, and the port is not read here: behind IPv6
    /// extension headers, or the ports cut short.
    Unread,
}

/// The transport layer of the packet whose network header is at `c`
/// (ethertype `proto`), as far as the fast path reads it: what tells it
/// whether the SYN-cookie gate could judge the packet (`drops::hit`).
/// An IPv4 header that `parse` hands no TCP to (another protocol, a later
/// fragment, a broken header) is `NotTcp`, as `parse` records it.
#[inline(always)]
pub fn transport(c: &Cursor, proto: u16) -> Transport {
    let mut c = *c;
    let tcp = match proto {
        ETH_P_IP => ipv4_tcp_follows(&mut c),
        ETH_P_IPV6 => match ipv6_next(&mut c) {
            Some(IPPROTO_TCP) => true,
            Some(next) if walked(next) => return Transport::Unread,
            _ => false,
        },
        _ => false,
    };
    if !tcp {
        return Transport::NotTcp;
    }
    match c.peek::<Ports>() {
        Some(p) => Transport::TcpTo(u16::from_be(unsafe { (*p).dport })),
        None => Transport::Unread,
    }
}

/// Marks `info` malformed at `kind`; returns `None` so helpers can
/// `return malformed(..)`.
#[inline(always)]
fn malformed<T>(info: &mut PacketInfo, kind: Malformed) -> Option<T> {
    info.malformed = kind as u8;
    None
}

/// The first four bytes of TCP and UDP headers alike.
#[repr(C)]
struct Ports {
    /// Network order.
    sport: u16,
    /// Network order.
    dport: u16,
}

/// TCP, UDP, ICMP and ICMPv6 headers, read by their helpers and recorded
/// here: `l4`, and the ports (host order) and the 12-bit TCP flags field
/// (host order). Other protocols are left at `l4::NONE`; ICMP counts only
/// under IPv4 and ICMPv6 only under IPv6.
///
/// The ports are recorded as soon as they are inside the packet, also
/// when the rest of the header is cut short (marked malformed), as tshark
/// shows them; the TCP flags when the fixed header is whole
/// (`parse_tcp`).
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
        IPPROTO_TCP | IPPROTO_UDP => {
            let tcp = proto == IPPROTO_TCP;
            let Some(p) = c.peek::<Ports>() else {
                let kind = if tcp { Malformed::Tcp } else { Malformed::Udp };
                info.malformed = kind as u8;
                return;
            };
            let p = unsafe { &*p };
            info.sport = u16::from_be(p.sport);
            info.dport = u16::from_be(p.dport);
            if tcp {
                info.l4 = l4::TCP;
                info.tcp_flags = parse_tcp(c, info).unwrap_or(0) & 0x0fff;
            } else {
                info.l4 = l4::UDP;
                let _ = parse_udp(c, info);
            }
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
