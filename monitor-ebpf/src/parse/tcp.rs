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
    let Some(header) = tcp_header(c) else {
        return malformed(info, Malformed::Tcp);
    };
    Some(header)
}

/// The header and its offset/flags word (host order) if the header and
/// its options are inside the packet and its data offset covers at least
/// the fixed header; the cursor then past the options.
#[inline(always)]
fn tcp_header(c: &mut Cursor) -> Option<(*const TcpHdr, u16)> {
    let t = c.peek::<TcpHdr>()?;
    let off_flags = u16::from_be(unsafe { (*t).off_flags });
    let doff = ((off_flags >> 12) as usize) * 4;
    if doff < size_of::<TcpHdr>() {
        return None;
    }
    c.skip(doff)?;
    Some((t, off_flags))
}

/// Whether the TCP header at the cursor is one `parse_tcp` accepts and
/// carries SYN without ACK (what the flow record counts as a SYN).
#[inline(always)]
pub(super) fn bare_syn(c: &Cursor) -> bool {
    tcp_header(&mut c.clone())
        .is_some_and(|(_, off_flags)| off_flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN)
}
