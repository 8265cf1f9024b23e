//! The ICMP and ICMPv6 headers, which share one layout. Only their
//! presence is recorded: nothing in them is limited on.

use monitor_common::{reason::Malformed, types::PacketInfo};

use super::{Cursor, malformed};

/// ICMP and ICMPv6: type, code, checksum and the 4-byte rest of header.
#[repr(C)]
struct IcmpHdr {
    kind: u8,
    code: u8,
    check: u16,
    rest: u32,
}

/// ICMP or ICMPv6 (the caller knows which from the IP version): checks
/// the header and advances past it. Returns `Some` for `parse_l4` to
/// record, or `None` with `info` marked malformed if it is cut short.
#[inline(always)]
pub(super) fn parse_icmp(c: &mut Cursor, info: &mut PacketInfo) -> Option<()> {
    if c.take::<IcmpHdr>().is_none() {
        return malformed(info, Malformed::Icmp);
    }
    Some(())
}
