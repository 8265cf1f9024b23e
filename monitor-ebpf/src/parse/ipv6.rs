//! The fixed IPv6 header (40 bytes); the extension headers after it are
//! walked by `ipv6_ext`, called from here.

use monitor_common::{
    reason::Malformed,
    types::{PacketInfo, family},
};

use super::{Cursor, ipv6_ext::parse_ipv6_ext, malformed};
use crate::mem;

/// Hop-by-hop options, the one extension header that may carry a Jumbo
/// Payload option (RFC 2675), which a payload length of 0 announces.
const IPPROTO_HOPOPTS: u8 = 0;

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
/// (network order, as on the wire) and ends the packet at its payload
/// length (`end_payload`). Returns the upper-layer protocol for
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
    // Word by word: `info` is in map memory (`mem`).
    mem::copy(&mut info.src, &ip.src);
    mem::copy(&mut info.dst, &ip.dst);
    end_payload(c, ip);
    parse_ipv6_ext(c, info, ip.next)
}

/// Ends the packet at the header's payload length (`Cursor::stop_after`),
/// the cursor just past the fixed header. A length of 0 ahead of a
/// hop-by-hop header may be a jumbogram's, whose real length is in that
/// header's options: the frame's end stands then. Anywhere else 0 is what
/// it says, and tshark too reads no upper layer behind it.
#[inline(always)]
fn end_payload(c: &mut Cursor, ip: &Ipv6Hdr) {
    let len = u16::from_be(ip.payload_len) as usize;
    if len != 0 || ip.next != IPPROTO_HOPOPTS {
        c.stop_after(len);
    }
}

/// The source address (network order) of an IPv6 header that
/// `parse_ipv6` would record one for (whole fixed header, version 6).
#[inline(always)]
pub(super) fn ipv6_source(c: &Cursor) -> Option<[u32; 4]> {
    let ip = unsafe { &*c.peek::<Ipv6Hdr>()? };
    ((u32::from_be(ip.ver_tc_flow) >> 28) == 6).then_some(ip.src)
}

/// Whether a TCP header follows the fixed IPv6 header directly; if so the
/// cursor is moved to it, with the packet ended at its payload length as
/// `parse_ipv6` ends it.
#[inline(always)]
pub(super) fn ipv6_tcp_follows(c: &mut Cursor) -> bool {
    ipv6_next(c) == Some(super::IPPROTO_TCP)
}

/// The fixed header's next-header field, if `parse_ipv6` reads past the
/// header (whole, version 6); the cursor is moved just past it, with the
/// packet ended at its payload length as `parse_ipv6` ends it.
#[inline(always)]
pub(super) fn ipv6_next(c: &mut Cursor) -> Option<u8> {
    let ip = unsafe { &*c.take::<Ipv6Hdr>()? };
    end_payload(c, ip);
    ((u32::from_be(ip.ver_tc_flow) >> 28) == 6).then_some(ip.next)
}
