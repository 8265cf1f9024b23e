//! The IPv6 extension-header chain between the fixed header and the upper
//! layer: hop-by-hop, routing, destination options and shim6 headers are
//! skipped by their length, AH by its own length unit, and the fragment
//! header is read for the fragment kind. The mobility and HIP headers end
//! the chain, as tshark reads them: each is a protocol of its own whose
//! next-header field is "no next header" (RFC 6275, RFC 7401), so the
//! parse records protocol 135 or 139 and no upper layer.

use monitor_common::{
    reason::Malformed,
    types::{PacketInfo, frag},
};

use super::{Cursor, malformed};

/// IPv6 extension headers walked before the upper layer. RFC 8200 lists
/// at most one of each kind (destination options twice): hop-by-hop,
/// destination, routing, fragment, AH, destination = 6; two more for
/// shim6 and slack. A longer chain is malformed.
pub const IPV6_EXT_MAX_CHAIN: usize = 8;

/// Extension header numbers (IANA), in the next-header field.
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_SHIM6: u8 = 140;

/// Routing type of the segment routing header (RFC 8754).
const ROUTING_SRH: u8 = 4;

/// The first two bytes of every extension header but the fragment header.
#[repr(C)]
struct Ipv6ExtHdr {
    next: u8,
    /// Length in 8-byte units, not counting the first 8 (AH: 4-byte units,
    /// not counting the first 8).
    len: u8,
}

/// The first five bytes of a routing header: the generic two, then the
/// routing type, the segments left and, in a segment routing header, the
/// index of its last segment.
#[repr(C)]
struct RoutingHdr {
    next: u8,
    len: u8,
    kind: u8,
    segments_left: u8,
    last_entry: u8,
}

#[repr(C)]
struct Ipv6FragHdr {
    next: u8,
    reserved: u8,
    /// Offset (13 bits, 8-byte units), 2 reserved bits, M flag. Network order.
    off_m: u16,
    id: u32,
}

/// Whether `next` is an extension header `parse_ipv6_ext` walks past
/// (the upper layer, TCP among others, may be behind it).
#[inline(always)]
pub(super) fn walked(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS
            | IPPROTO_DSTOPTS
            | IPPROTO_SHIM6
            | IPPROTO_ROUTING
            | IPPROTO_FRAGMENT
            | IPPROTO_AH
    )
}

/// Walks the extension headers from `next` (the fixed header's
/// next-header field), up to `IPV6_EXT_MAX_CHAIN`, keeping `info.proto`
/// at the header reached and `info.frag` at the fragment kind. Returns the
/// upper-layer protocol for `parse_l4`, or `None` when there is no
/// upper-layer header to read (later fragment, malformed, chain too long).
#[inline(always)]
pub(super) fn parse_ipv6_ext(c: &mut Cursor, info: &mut PacketInfo, next: u8) -> Option<u8> {
    let mut next = next;
    for _ in 0..IPV6_EXT_MAX_CHAIN {
        info.proto = next;
        match next {
            IPPROTO_HOPOPTS | IPPROTO_DSTOPTS | IPPROTO_SHIM6 => {
                let Some(h) = c.peek::<Ipv6ExtHdr>() else {
                    return malformed(info, Malformed::Ipv6Ext);
                };
                let h = unsafe { &*h };
                next = h.next;
                if c.skip((h.len as usize + 1) * 8).is_none() {
                    return malformed(info, Malformed::Ipv6Ext);
                }
            }
            IPPROTO_ROUTING => {
                let Some(h) = c.peek::<RoutingHdr>() else {
                    return malformed(info, Malformed::Ipv6Ext);
                };
                let h = unsafe { &*h };
                next = h.next;
                if !segments_fit(h) || c.skip((h.len as usize + 1) * 8).is_none() {
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
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_SHIM6 | IPPROTO_AH
        | IPPROTO_FRAGMENT => malformed(info, Malformed::Ipv6ExtChain),
        _ => Some(next),
    }
}

/// Whether a segment routing header's segment list (16 bytes for each
/// of its `last_entry + 1` segments, after 8 fixed bytes) fits in the
/// length it declares; a header that claims more segments than it holds
/// is cut short (tshark: malformed). Other routing types are taken at
/// their length.
#[inline(always)]
fn segments_fit(h: &RoutingHdr) -> bool {
    h.kind != ROUTING_SRH || (h.last_entry as usize + 1) * 2 <= h.len as usize
}
