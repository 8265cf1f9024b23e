//! The fixed IPv6 header (40 bytes); the extension headers after it are
//! walked by `ipv6_ext`, called from here.

use monitor_common::{
    reason::Malformed,
    types::{PacketInfo, family},
};

use super::{Cursor, ipv6_ext::parse_ipv6_ext, malformed};

#[repr(C)]
struct Ipv6Hdr {
    ver_tc_flow: u32,
    payload_len: u16,
    next: u8,
    hop_limit: u8,
    src: [u32; 4],
    dst: [u32; 4],
}

/// The fixed IPv6 header, then its extension headers (`parse_ipv6_ext`,
/// from the next-header field). Fills the family and the addresses
/// (network order, as on the wire). Returns the upper-layer protocol for
/// `parse_l4`, or `None` when there is no upper-layer header to read
/// (later fragment, malformed). The walk is chained here rather than in
/// `parse`, where the extra `Option` cost the program an instruction.
#[inline(always)]
pub(super) fn parse_ipv6(c: &mut Cursor, info: &mut PacketInfo) -> Option<u8> {
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
    parse_ipv6_ext(c, info, ip.next)
}

/// The source address (network order) of an IPv6 header that
/// `parse_ipv6` would record one for (whole fixed header, version 6).
#[inline(always)]
pub(super) fn ipv6_source(c: &Cursor) -> Option<[u32; 4]> {
    let ip = unsafe { &*c.peek::<Ipv6Hdr>()? };
    ((u32::from_be(ip.ver_tc_flow) >> 28) == 6).then_some(ip.src)
}

/// Whether a TCP header follows the fixed IPv6 header directly; if so the
/// cursor is moved to it.
#[inline(always)]
pub(super) fn ipv6_tcp_follows(c: &mut Cursor) -> bool {
    c.take::<Ipv6Hdr>()
        .is_some_and(|ip| unsafe { (*ip).next } == super::IPPROTO_TCP)
}
