//! The TCP header, options skipped by its data offset.

use core::mem::size_of;

use monitor_common::{
    reason::Malformed,
    types::{PacketInfo, tcp_flag},
};

use super::{Cursor, malformed};

/// The fixed 20 bytes; options follow up to the data offset.
#[repr(C)]
pub(super) struct TcpHdr {
    /// Network order.
    pub(super) sport: u16,
    /// Network order.
    pub(super) dport: u16,
    seq: u32,
    ack: u32,
    /// Data offset (4 bits, in 4-byte words), then the 12-bit flags field.
    /// Network order.
    off_flags: u16,
    window: u16,
    check: u16,
    urg: u16,
}

/// TCP with options: checks the header and its data offset and advances
/// past the options. Returns the header and its offset/flags word (host
/// order) for `parse_l4` to record, or `None` with `info` marked malformed
/// (header cut short, data offset shorter than the header or past the
/// packet).
#[inline(always)]
pub(super) fn parse_tcp(c: &mut Cursor, info: &mut PacketInfo) -> Option<(*const TcpHdr, u16)> {
    let Some(t) = c.peek::<TcpHdr>() else {
        return malformed(info, Malformed::Tcp);
    };
    let off_flags = u16::from_be(unsafe { (*t).off_flags });
    let doff = ((off_flags >> 12) as usize) * 4;
    if doff < size_of::<TcpHdr>() || c.skip(doff).is_none() {
        return malformed(info, Malformed::Tcp);
    }
    Some((t, off_flags))
}

/// Whether the TCP header at the cursor is one `parse_tcp` accepts and
/// carries SYN without ACK (what the flow record counts as a SYN).
#[inline(always)]
pub(super) fn bare_syn(c: &Cursor) -> bool {
    let Some(t) = c.peek::<TcpHdr>() else {
        return false;
    };
    let off_flags = u16::from_be(unsafe { (*t).off_flags });
    let doff = ((off_flags >> 12) as usize) * 4;
    let mut end = *c;
    doff >= size_of::<TcpHdr>()
        && end.skip(doff).is_some()
        && off_flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN
}
