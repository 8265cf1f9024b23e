//! The reference parser the packet fuzzer holds the kernel's parse to:
//! etherparse reads each header, and the few rules Tollgate adds on top
//! are written out here, one per header, so a disagreement names the rule
//! or the program that is wrong. It fills the same `PacketInfo` the
//! kernel's parse does, field for field.
//!
//! Tollgate's rules, beyond reading each header as etherparse (and
//! tshark) does:
//! - at most two VLAN tags; a third is `vlan_depth`;
//! - the IPv4 total length and the IPv6 payload length end the packet
//!   when shorter than the frame (what follows is padding or a trailer);
//!   a payload length of 0 ahead of a hop-by-hop header stands for a
//!   jumbogram and leaves the frame's end;
//! - an IPv4 header with a header length under 20 bytes or a total
//!   length under its header length is no IPv4 header: no source;
//! - at most eight IPv6 extension headers (`ipv6_ext_chain`); mobility
//!   (135) and HIP (139) end the chain as upper layers; a segment routing
//!   header must hold the segments it lists;
//! - TCP and UDP ports are recorded once their four bytes are in; TCP
//!   flags once the fixed header is, with a data offset that covers it;
//!   options past the end are `tcp_options`;
//! - ICMP counts only under IPv4 and ICMPv6 only under IPv6.

use etherparse::{
    Ethernet2HeaderSlice, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice,
    Ipv6RawExtHeaderSlice, SingleVlanHeaderSlice, UdpHeaderSlice,
};
use monitor_common::{
    reason::Malformed,
    types::{PacketInfo, family, frag, l4},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const VLAN_TYPES: [u16; 2] = [0x8100, 0x88a8];
const VLAN_MAX_DEPTH: usize = 2;
const IPV6_EXT_MAX_CHAIN: usize = 8;

/// Extension headers Tollgate walks (hop-by-hop, routing, fragment, AH,
/// destination options, shim6).
const EXT_HEADERS: [u8; 6] = [0, 43, 44, 51, 60, 140];

/// What Tollgate's parse should read from `frame`.
pub fn parse(frame: &[u8]) -> PacketInfo {
    let mut info = PacketInfo::default();
    let mut p = Parse {
        frame,
        off: 0,
        stop: frame.len(),
        info: &mut info,
    };
    p.ethernet();
    info
}

struct Parse<'a, 'i> {
    frame: &'a [u8],
    /// The next header's offset.
    off: usize,
    /// The packet's end: the frame's, or the IP length's if shorter.
    stop: usize,
    info: &'i mut PacketInfo,
}

impl<'a> Parse<'a, '_> {
    /// The bytes from the cursor to the packet's end.
    fn rest(&self) -> &'a [u8] {
        &self.frame[self.off.min(self.stop)..self.stop]
    }

    fn malformed(&mut self, kind: Malformed) {
        self.info.malformed = kind as u8;
    }

    /// Malformed before a source was read.
    fn unreadable(&mut self, kind: Malformed) {
        self.info.family = family::MALFORMED;
        self.malformed(kind);
    }

    fn ethernet(&mut self) {
        let Ok(eth) = Ethernet2HeaderSlice::from_slice(self.rest()) else {
            return self.unreadable(Malformed::Ethernet);
        };
        let mut ether_type = eth.ether_type().0;
        self.off += 14;
        for i in 0..VLAN_MAX_DEPTH {
            if !VLAN_TYPES.contains(&ether_type) {
                break;
            }
            let Ok(tag) = SingleVlanHeaderSlice::from_slice(self.rest()) else {
                return self.unreadable(Malformed::Vlan);
            };
            self.info.vlan[i] = tag.vlan_identifier().value();
            self.info.vlan_count = i as u8 + 1;
            ether_type = tag.ether_type().0;
            self.off += 4;
        }
        if VLAN_TYPES.contains(&ether_type) {
            return self.unreadable(Malformed::VlanDepth);
        }
        self.info.l3_off = self.off as u16;
        match ether_type {
            ETH_P_IP => self.ipv4(),
            ETH_P_IPV6 => self.ipv6(),
            _ => self.info.family = family::OTHER,
        }
    }

    fn ipv4(&mut self) {
        let rest = self.rest();
        // Version, IHL and total length, checked before etherparse reads
        // the header (it would refuse a header cut inside its options,
        // whose source Tollgate records).
        if rest.len() < 20 {
            return self.unreadable(Malformed::Ipv4);
        }
        let hdr_len = usize::from(rest[0] & 0x0f) * 4;
        let tot_len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if rest[0] >> 4 != 4 || hdr_len < 20 || tot_len < hdr_len {
            return self.unreadable(Malformed::Ipv4);
        }
        let word = |b: &[u8]| u32::from_ne_bytes(b.try_into().unwrap());
        self.info.family = family::IPV4;
        self.info.src[0] = word(&rest[12..16]);
        self.info.dst[0] = word(&rest[16..20]);
        self.info.proto = rest[9];
        self.stop = self.stop.min(self.off + tot_len);
        let Ok(ip) = Ipv4HeaderSlice::from_slice(self.rest()) else {
            return self.malformed(Malformed::Ipv4);
        };
        let (offset, more, proto) = (
            ip.fragments_offset().value(),
            ip.more_fragments(),
            ip.protocol().0,
        );
        self.off += hdr_len;
        if offset != 0 {
            self.info.frag = frag::LATER;
            return;
        }
        if more {
            self.info.frag = frag::FIRST;
        }
        self.l4(proto);
    }

    fn ipv6(&mut self) {
        let Ok(ip) = Ipv6HeaderSlice::from_slice(self.rest()) else {
            return self.unreadable(Malformed::Ipv6);
        };
        let words = |b: [u8; 16]| {
            core::array::from_fn(|i| u32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().unwrap()))
        };
        self.info.family = family::IPV6;
        self.info.src = words(ip.source());
        self.info.dst = words(ip.destination());
        let (next, plen) = (ip.next_header().0, usize::from(ip.payload_length()));
        self.off += 40;
        if plen != 0 || next != 0 {
            self.stop = self.stop.min(self.off + plen);
        }
        if let Some(proto) = self.ipv6_exts(next) {
            self.l4(proto);
        }
    }

    /// The extension-header walk; the upper-layer protocol, or `None`
    /// when there is no upper layer to read.
    fn ipv6_exts(&mut self, mut next: u8) -> Option<u8> {
        for _ in 0..IPV6_EXT_MAX_CHAIN {
            self.info.proto = next;
            match next {
                0 | 60 | 140 | 43 => {
                    let rest = self.rest();
                    let Ok(h) = Ipv6RawExtHeaderSlice::from_slice(rest) else {
                        self.malformed(Malformed::Ipv6Ext);
                        return None;
                    };
                    // A segment routing header (routing type 4) lists
                    // last_entry + 1 segments of 16 bytes.
                    if next == 43
                        && rest[2] == 4
                        && (usize::from(rest[4]) + 1) * 2 > usize::from(rest[1])
                    {
                        self.malformed(Malformed::Ipv6Ext);
                        return None;
                    }
                    next = h.next_header().0;
                    self.off += h.slice().len();
                }
                51 => {
                    // AH counts its length in 4-byte units, less two.
                    let rest = self.rest();
                    let len = rest.get(1).map(|l| (usize::from(*l) + 2) * 4);
                    let Some(len) = len.filter(|l| *l <= rest.len()) else {
                        self.malformed(Malformed::Ipv6Ext);
                        return None;
                    };
                    next = rest[0];
                    self.off += len;
                }
                44 => {
                    let Ok(h) = Ipv6FragmentHeaderSlice::from_slice(self.rest()) else {
                        self.malformed(Malformed::Ipv6Ext);
                        return None;
                    };
                    next = h.next_header().0;
                    let (offset, more) = (h.fragment_offset().value(), h.more_fragments());
                    self.off += 8;
                    if offset != 0 {
                        self.info.frag = frag::LATER;
                        self.info.proto = next;
                        return None;
                    }
                    self.info.frag = if more { frag::FIRST } else { frag::ATOMIC };
                }
                _ => return Some(next),
            }
        }
        self.info.proto = next;
        if EXT_HEADERS.contains(&next) {
            self.malformed(Malformed::Ipv6ExtChain);
            return None;
        }
        Some(next)
    }

    fn l4(&mut self, proto: u8) {
        self.info.l4_off = self.off as u16;
        let rest = self.rest();
        match proto {
            6 | 17 => {
                let tcp = proto == 6;
                if rest.len() < 4 {
                    let kind = if tcp { Malformed::Tcp } else { Malformed::Udp };
                    return self.malformed(kind);
                }
                self.info.sport = u16::from_be_bytes([rest[0], rest[1]]);
                self.info.dport = u16::from_be_bytes([rest[2], rest[3]]);
                if tcp {
                    self.info.l4 = l4::TCP;
                    self.tcp();
                } else {
                    self.info.l4 = l4::UDP;
                    if UdpHeaderSlice::from_slice(rest).is_err() {
                        self.malformed(Malformed::Udp);
                    }
                }
            }
            // The 8-byte ICMP header, whatever the message. etherparse
            // also holds a timestamp message to exactly 20 bytes, which
            // Tollgate, reading no ICMP field, does not (the fuzzer's first
            // 10,000,000-frame run found 13 such frames; they stay in the
            // corpus).
            1 | 58 if rest.len() < 8 && self.icmp_of_family(proto) => {
                self.malformed(Malformed::Icmp)
            }
            1 if self.info.family == family::IPV4 => self.info.l4 = l4::ICMP,
            58 if self.info.family == family::IPV6 => self.info.l4 = l4::ICMPV6,
            _ => {}
        }
    }

    /// ICMP under IPv4 or ICMPv6 under IPv6, the only pairings read.
    fn icmp_of_family(&self, proto: u8) -> bool {
        (proto == 1 && self.info.family == family::IPV4)
            || (proto == 58 && self.info.family == family::IPV6)
    }

    /// TCP after its ports. etherparse's `TcpHeaderSlice` refuses a header
    /// whose options are cut short outright; Tollgate still records its
    /// flags, as tshark shows them, so the rules are written out.
    fn tcp(&mut self) {
        let rest = self.rest();
        if rest.len() < 20 {
            return self.malformed(Malformed::Tcp);
        }
        let off_flags = u16::from_be_bytes([rest[12], rest[13]]);
        let doff = usize::from(off_flags >> 12) * 4;
        if doff < 20 {
            return self.malformed(Malformed::Tcp);
        }
        self.info.tcp_flags = off_flags & 0x0fff;
        match etherparse::TcpHeaderSlice::from_slice(rest) {
            Ok(_) => {}
            Err(_) => self.malformed(Malformed::TcpOptions),
        }
    }
}
