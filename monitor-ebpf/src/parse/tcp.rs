//! The TCP header, options skipped by its data offset.

use core::mem::size_of;

use monitor_common::{
    reason::Malformed,
    types::{PacketInfo, tcp_flag},
};

use super::{Cursor, malformed};

/// The fixed 20 bytes; options follow up to the data offset. The ports
/// are read through `Ports`, as UDP's are.
#[repr(C)]
struct TcpHdr {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    /// Data offset (4 bits, in 4-byte words), then the 12-bit flags field.
    /// Network order.
    off_flags: u16,
    window: u16,
    check: u16,
    urg: u16,
}

/// TCP after its ports (`parse_l4` read those): checks the fixed header
/// and its data offset and advances past the options. Returns the
/// offset/flags word (host order) for `parse_l4` to record whenever the
/// fixed header is whole with a data offset that covers it, as tshark
/// shows the flags then, also when the options are cut short (`info`
/// marked `TcpOptions`); `None` with `info` marked `Tcp` otherwise.
#[inline(always)]
pub(super) fn parse_tcp(c: &mut Cursor, info: &mut PacketInfo) -> Option<u16> {
    let Some((doff, off_flags)) = fixed_header(c) else {
        return malformed(info, Malformed::Tcp);
    };
    if c.skip(doff).is_none() {
        info.malformed = Malformed::TcpOptions as u8;
    }
    Some(off_flags)
}

/// The data offset in bytes and the offset/flags word (host order) if the
/// fixed header is inside the packet and its data offset covers it. Does
/// not advance.
#[inline(always)]
fn fixed_header(c: &Cursor) -> Option<(usize, u16)> {
    let t = c.peek::<TcpHdr>()?;
    let off_flags = u16::from_be(unsafe { (*t).off_flags });
    let doff = ((off_flags >> 12) as usize) * 4;
    if doff < size_of::<TcpHdr>() {
        return None;
    }
    Some((doff, off_flags))
}

/// Whether the TCP header at the cursor is one whose flags `parse_tcp`
/// records and carries SYN without ACK (what the flow record counts as a
/// SYN).
#[inline(always)]
pub(super) fn bare_syn(c: &Cursor) -> bool {
    fixed_header(c)
        .is_some_and(|(_, off_flags)| off_flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN)
}
