//! The UDP header.

use monitor_common::{reason::Malformed, types::PacketInfo};

use super::{Cursor, malformed};

#[repr(C)]
pub(super) struct UdpHdr {
    /// Network order.
    pub(super) sport: u16,
    /// Network order.
    pub(super) dport: u16,
    len: u16,
    check: u16,
}

/// UDP: checks the header and advances past it. Returns the header for
/// `parse_l4` to record, or `None` with `info` marked malformed if it is
/// cut short.
#[inline(always)]
pub(super) fn parse_udp(c: &mut Cursor, info: &mut PacketInfo) -> Option<*const UdpHdr> {
    let Some(u) = c.take::<UdpHdr>() else {
        return malformed(info, Malformed::Udp);
    };
    Some(u)
}
