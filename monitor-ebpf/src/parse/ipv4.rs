//! The IPv4 header, options included.

use core::mem::size_of;

use monitor_common::{
    reason::Malformed,
    types::{PacketInfo, family, frag},
};

use super::{Cursor, malformed};

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

/// IPv4 with options. Fills the family, the addresses (network order, as
/// on the wire), the protocol and the fragment kind, and ends the packet
/// at its total length (`Cursor::stop_after`). Returns the protocol for
/// `parse_l4`, or `None` when there is no upper-layer header to read
/// (later fragment, malformed).
#[inline(always)]
pub(super) fn parse_ipv4(c: &mut Cursor, info: &mut PacketInfo) -> Option<u8> {
    let Some(ip) = c.peek::<Ipv4Hdr>().filter(|ip| valid(unsafe { &**ip })) else {
        info.family = family::MALFORMED;
        return malformed(info, Malformed::Ipv4);
    };
    let ip = unsafe { &*ip };
    // From here the source is known, so the packet is limited by its source
    // even if its options turn out to be cut short.
    info.family = family::IPV4;
    info.src[0] = ip.src;
    info.dst[0] = ip.dst;
    info.proto = ip.proto;
    c.stop_after(u16::from_be(ip.tot_len) as usize);
    if c.skip(header_len(ip)).is_none() {
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

/// The header length in bytes (IHL counts 4-byte words).
#[inline(always)]
fn header_len(ip: &Ipv4Hdr) -> usize {
    ((ip.ver_ihl & 0x0f) as usize) * 4
}

/// Version 4, a header length that covers the fixed header and a total
/// length that covers the header. A header failing any of these is no
/// IPv4 header at all to tshark ("Bogus IP header length", "Bogus IP
/// length"), which then shows no address, and the kernel's IP layer
/// drops it: the parse records no source for it either.
#[inline(always)]
fn valid(ip: &Ipv4Hdr) -> bool {
    let hdr_len = header_len(ip);
    ip.ver_ihl >> 4 == 4
        && hdr_len >= size_of::<Ipv4Hdr>()
        && u16::from_be(ip.tot_len) as usize >= hdr_len
}

/// The source address (network order) of an IPv4 header that
/// `parse_ipv4` would record one for (whole fixed header, `valid`).
#[inline(always)]
pub(super) fn ipv4_source(c: &Cursor) -> Option<u32> {
    let ip = unsafe { &*c.peek::<Ipv4Hdr>()? };
    valid(ip).then_some(ip.src)
}

/// Whether `parse_ipv4` hands a TCP header to `parse_l4` (valid header,
/// not a later fragment); if so the cursor is moved to it, with the
/// packet ended at its total length as `parse_ipv4` ends it.
#[inline(always)]
pub(super) fn ipv4_tcp_follows(c: &mut Cursor) -> bool {
    let Some(ip) = c.peek::<Ipv4Hdr>() else {
        return false;
    };
    let ip = unsafe { &*ip };
    if ip.proto != super::IPPROTO_TCP || !valid(ip) || u16::from_be(ip.frag_off) & 0x1fff != 0 {
        return false;
    }
    c.stop_after(u16::from_be(ip.tot_len) as usize);
    c.skip(header_len(ip)).is_some()
}
