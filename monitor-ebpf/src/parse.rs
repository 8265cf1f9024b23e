//! The packet parser: a cursor and one small bounded helper per header.
//! It fills a `PacketInfo` and does no map lookups.
//!
//! Every read goes through `Cursor::read`, checked against `data_end`. Each
//! helper advances the cursor past its header. Variable lengths (IHL, TCP
//! data offset, extension header lengths) are turned into an offset first
//! and checked again before the next read.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use monitor_common::{
    reason::Malformed,
    types::{PacketInfo, family, frag, l4},
};

/// 802.1Q and 802.1ad tags: an outer service tag and an inner customer tag
/// (QinQ) is as deep as real networks go; a third tag is malformed.
pub const VLAN_MAX_DEPTH: usize = 2;
/// IPv6 extension headers walked before the upper layer. RFC 8200 lists
/// at most one of each kind (destination options twice): hop-by-hop,
/// destination, routing, fragment, AH, destination = 6; two more for
/// mobility/HIP/shim6 headers. A longer chain is malformed.
pub const IPV6_EXT_MAX_CHAIN: usize = 8;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_MH: u8 = 135;
const IPPROTO_HIP: u8 = 139;
const IPPROTO_SHIM6: u8 = 140;

#[repr(C)]
struct EthHdr {
    dst: [u8; 6],
    src: [u8; 6],
    /// Network order.
    proto: u16,
}

#[repr(C)]
struct VlanHdr {
    /// PCP(3) DEI(1) VID(12), network order.
    tci: u16,
    /// Encapsulated ethertype, network order.
    proto: u16,
}

/// ```text
///  0       4       8              16      19             31
/// +-------+-------+---------------+--------------------------+
/// |Version|  IHL  |      ToS      |       Total length       |
/// +-------+-------+---------------+------+-------------------+
/// |        Identification         |Flags | Fragment offset   |
/// +---------------+---------------+------+-------------------+
/// |      TTL      |   Protocol    |      Header checksum     |
/// +---------------+---------------+--------------------------+
/// |                    Source address                        |
/// |                  Destination address                     |
/// |            Options (IHL > 5: up to 40 bytes)             |
/// ```
#[repr(C)]
struct Ipv4Hdr {
    ver_ihl: u8,
    tos: u8,
    tot_len: u16,
    id: u16,
    /// Flags (3 bits: reserved, DF, MF) and offset in 8-byte units.
    frag_off: u16,
    ttl: u8,
    proto: u8,
    check: u16,
    src: u32,
    dst: u32,
}

#[repr(C)]
struct Ipv6Hdr {
    ver_tc_flow: u32,
    payload_len: u16,
    next: u8,
    hop_limit: u8,
    src: [u32; 4],
    dst: [u32; 4],
}

/// The first two bytes of every extension header but the fragment header.
#[repr(C)]
struct Ipv6ExtHdr {
    next: u8,
    /// Length in 8-byte units, not counting the first 8 (AH: 4-byte units,
    /// not counting the first 8).
    len: u8,
}

#[repr(C)]
struct Ipv6FragHdr {
    next: u8,
    reserved: u8,
    /// Offset (13 bits, 8-byte units), 2 reserved bits, M flag. Network order.
    off_m: u16,
    id: u32,
}

#[repr(C)]
struct TcpHdr {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    /// Data offset (4 bits), then the 12-bit flags field. Network order.
    off_flags: u16,
    window: u16,
    check: u16,
    urg: u16,
}

#[repr(C)]
struct UdpHdr {
    sport: u16,
    dport: u16,
    len: u16,
    check: u16,
}

/// ICMP and ICMPv6: type, code, checksum and the 4-byte rest of header.
#[repr(C)]
struct IcmpHdr {
    kind: u8,
    code: u8,
    check: u16,
    rest: u32,
}

/// Position in the packet (an absolute address, as `ctx.data()` gives it)
/// and the end of the packet.
pub struct Cursor {
    pos: usize,
    end: usize,
}

impl Cursor {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            pos: ctx.data(),
            end: ctx.data_end(),
        }
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

/// Marks `info` malformed at `kind`; returns `None` so helpers can
/// `return malformed(..)`.
#[inline(always)]
fn malformed<T>(info: &mut PacketInfo, kind: Malformed) -> Option<T> {
    info.malformed = kind as u8;
    None
}

/// Ethernet and VLAN tags. Returns the inner ethertype (host order), or
/// `None` with `info` marked malformed. Non-IP frames set family OTHER.
#[inline(always)]
fn parse_ethernet(c: &mut Cursor, info: &mut PacketInfo) -> Option<u16> {
    let Some(eth) = c.take::<EthHdr>() else {
        info.family = family::MALFORMED;
        return malformed(info, Malformed::Ethernet);
    };
    let mut proto = u16::from_be(unsafe { (*eth).proto });
    for i in 0..VLAN_MAX_DEPTH {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let Some(tag) = c.take::<VlanHdr>() else {
            info.family = family::MALFORMED;
            return malformed(info, Malformed::Vlan);
        };
        let tci = u16::from_be(unsafe { (*tag).tci });
        info.vlan[i] = tci & 0x0fff;
        info.vlan_count = (i + 1) as u8;
        proto = u16::from_be(unsafe { (*tag).proto });
    }
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        info.family = family::MALFORMED;
        return malformed(info, Malformed::VlanDepth);
    }
    Some(proto)
}

/// IPv4 with options. Returns the protocol for `parse_l4`, or `None` when
/// there is no upper-layer header to read (later fragment, malformed).
#[inline(always)]
fn parse_ipv4(c: &mut Cursor, info: &mut PacketInfo) -> Option<u8> {
    let Some(ip) = c.peek::<Ipv4Hdr>() else {
        info.family = family::MALFORMED;
        return malformed(info, Malformed::Ipv4);
    };
    let ip = unsafe { &*ip };
    if ip.ver_ihl >> 4 != 4 {
        info.family = family::MALFORMED;
        return malformed(info, Malformed::Ipv4);
    }
    // From here the source is known, so the packet is limited by its source
    // even if the rest of the header turns out to be malformed.
    info.family = family::IPV4;
    info.src[0] = ip.src;
    info.dst[0] = ip.dst;
    info.proto = ip.proto;
    let hdr_len = ((ip.ver_ihl & 0x0f) as usize) * 4;
    if hdr_len < size_of::<Ipv4Hdr>() || (u16::from_be(ip.tot_len) as usize) < hdr_len {
        return malformed(info, Malformed::Ipv4);
    }
    if c.skip(hdr_len).is_none() {
        return malformed(info, Malformed::Ipv4);
    }
    let frag_off = u16::from_be(ip.frag_off);
    let offset = frag_off & 0x1fff;
    let more = frag_off & 0x2000 != 0;
    if offset != 0 {
        info.frag = frag::LATER;
        return None;
    }
    if more {
        info.frag = frag::FIRST;
    }
    Some(ip.proto)
}

/// IPv6 and its extension headers, walked up to `IPV6_EXT_MAX_CHAIN`.
#[inline(always)]
fn parse_ipv6(c: &mut Cursor, info: &mut PacketInfo) -> Option<u8> {
    let Some(ip) = c.take::<Ipv6Hdr>() else {
        info.family = family::MALFORMED;
        return malformed(info, Malformed::Ipv6);
    };
    let ip = unsafe { &*ip };
    if (u32::from_be(ip.ver_tc_flow) >> 28) != 6 {
        info.family = family::MALFORMED;
        return malformed(info, Malformed::Ipv6);
    }
    info.family = family::IPV6;
    info.src = ip.src;
    info.dst = ip.dst;
    let mut next = ip.next;
    for _ in 0..IPV6_EXT_MAX_CHAIN {
        info.proto = next;
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_MH | IPPROTO_HIP
            | IPPROTO_SHIM6 => {
                let Some(h) = c.peek::<Ipv6ExtHdr>() else {
                    return malformed(info, Malformed::Ipv6Ext);
                };
                let h = unsafe { &*h };
                next = h.next;
                if c.skip((h.len as usize + 1) * 8).is_none() {
                    return malformed(info, Malformed::Ipv6Ext);
                }
            }
            IPPROTO_AH => {
                let Some(h) = c.peek::<Ipv6ExtHdr>() else {
                    return malformed(info, Malformed::Ipv6Ext);
                };
                let h = unsafe { &*h };
                next = h.next;
                if c.skip((h.len as usize + 2) * 4).is_none() {
                    return malformed(info, Malformed::Ipv6Ext);
                }
            }
            IPPROTO_FRAGMENT => {
                let Some(h) = c.take::<Ipv6FragHdr>() else {
                    return malformed(info, Malformed::Ipv6Ext);
                };
                let h = unsafe { &*h };
                next = h.next;
                let off_m = u16::from_be(h.off_m);
                let offset = off_m >> 3;
                let more = off_m & 1 != 0;
                if offset != 0 {
                    info.frag = frag::LATER;
                    info.proto = next;
                    return None;
                }
                info.frag = if more { frag::FIRST } else { frag::ATOMIC };
            }
            _ => return Some(next),
        }
    }
    info.proto = next;
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_MH | IPPROTO_HIP
        | IPPROTO_SHIM6 | IPPROTO_AH | IPPROTO_FRAGMENT => malformed(info, Malformed::Ipv6ExtChain),
        _ => Some(next),
    }
}

/// TCP, UDP, ICMP and ICMPv6 headers; other protocols are left at `l4::NONE`.
#[inline(always)]
fn parse_l4(c: &mut Cursor, info: &mut PacketInfo, proto: u8) {
    match proto {
        IPPROTO_TCP => {
            let Some(t) = c.peek::<TcpHdr>() else {
                malformed::<()>(info, Malformed::Tcp);
                return;
            };
            let t = unsafe { &*t };
            let off_flags = u16::from_be(t.off_flags);
            let doff = ((off_flags >> 12) as usize) * 4;
            if doff < size_of::<TcpHdr>() || c.skip(doff).is_none() {
                malformed::<()>(info, Malformed::Tcp);
                return;
            }
            info.l4 = l4::TCP;
            info.sport = u16::from_be(t.sport);
            info.dport = u16::from_be(t.dport);
            info.tcp_flags = off_flags & 0x0fff;
        }
        IPPROTO_UDP => {
            let Some(u) = c.take::<UdpHdr>() else {
                malformed::<()>(info, Malformed::Udp);
                return;
            };
            let u = unsafe { &*u };
            info.l4 = l4::UDP;
            info.sport = u16::from_be(u.sport);
            info.dport = u16::from_be(u.dport);
        }
        IPPROTO_ICMP if info.family == family::IPV4 => {
            if c.take::<IcmpHdr>().is_none() {
                malformed::<()>(info, Malformed::Icmp);
                return;
            }
            info.l4 = l4::ICMP;
        }
        IPPROTO_ICMPV6 if info.family == family::IPV6 => {
            if c.take::<IcmpHdr>().is_none() {
                malformed::<()>(info, Malformed::Icmp);
                return;
            }
            info.l4 = l4::ICMPV6;
        }
        _ => {}
    }
}
