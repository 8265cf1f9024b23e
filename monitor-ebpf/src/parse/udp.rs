//! The UDP header.

use monitor_common::{reason::Malformed, types::PacketInfo};

use super::{Cursor, malformed};

/// Ports (read through `Ports`, as TCP's are), length and checksum.
#[repr(C)]
struct UdpHdr {
    sport: u16,
    dport: u16,
    len: u16,
    check: u16,
}

/// UDP after its ports (`parse_l4` read those): checks the header and
/// advances past it. `None` with `info` marked malformed if it is cut
/// short.
#[inline(always)]
pub(super) fn parse_udp(c: &mut Cursor, info: &mut PacketInfo) -> Option<()> {
    if c.take::<UdpHdr>().is_none() {
        return malformed(info, Malformed::Udp);
    }
    Some(())
}
