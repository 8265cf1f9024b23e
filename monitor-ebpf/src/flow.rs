//! The per-source flow record a packet updates: its packet and byte
//! sums, its SYN and ACK counts, the port sketch a scan shows up in, and
//! when it was last seen. The daemon's detectors read these; nothing here
//! decides a verdict (that is `decide`).

use monitor_common::{
    maps::signal,
    types::{PacketInfo, l4, port_bit, tcp_flag},
};

use crate::{atomic, sources::Source, stats};

/// Flow record: CPUs race on one source, so the sums are atomic adds; the
/// last-seen time is a plain store (any CPU's recent time is right). The
/// detection signals (ACKs, the port sketch) are plain updates: a lost
/// race costs one count or one bit of an estimate, not an atomic per
/// packet. Only SYNs are counted host-wide (the host-wide SYN ratio is
/// SYNs over all other packets), which keeps the common packet, an ACK,
/// to one per-CPU counter.
#[inline(always)]
pub fn record_flow(src: Source, info: &PacketInfo, len: u64, now: u64, window: u32) {
    let (s, ctl) = unsafe { (&mut *src.flow, &mut *src.ctl) };
    atomic::add(&mut s.packets, 1);
    atomic::add(&mut s.bytes, len);
    // A scan probes ports with SYNs or datagrams; an established
    // connection's segments repeat one port, so they skip the sketch.
    let mut probe = info.l4 == l4::UDP;
    if info.l4 == l4::TCP {
        match info.tcp_flags & (tcp_flag::SYN | tcp_flag::ACK) {
            tcp_flag::SYN => {
                atomic::add(&mut s.syns, 1);
                stats::signal(signal::SYN);
                probe = true;
            }
            tcp_flag::ACK => ctl.acks += 1,
            _ => {}
        }
    }
    if probe {
        let bit = port_bit(info.dport);
        if s.port_window != window {
            s.port_window = window;
            s.port_sketch = bit;
        } else if s.port_sketch & bit == 0 {
            s.port_sketch |= bit;
        }
    }
    ctl.last_seen_ns = now;
}
