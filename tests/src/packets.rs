//! Test frames, built with etherparse (lengths, next-header chains and
//! checksums filled in by the library). A `Spec` says what the frame holds;
//! `Spec::build` writes it.

use std::net::IpAddr;

use etherparse::{
    IpAuthHeader, IpFragOffset, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv4Options,
    Ipv6Extensions, Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions,
    PacketBuilder, TcpHeader, VlanId,
};

pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// 802.1ad service tag ethertype (outer tag of QinQ).
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_8021Q: u16 = 0x8100;

/// Upper layer of a test frame.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        syn: bool,
        ack: bool,
        /// TCP option bytes (multiple of 4).
        options: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP echo request (ICMPv6 on IPv6).
    Echo,
}

/// IPv6 extension headers, in RFC 8200 order.
#[derive(Clone, Debug, Default)]
pub struct Exts {
    pub hop_by_hop: bool,
    pub dest_opts: bool,
    pub routing: bool,
    /// `(offset in 8-byte units, more fragments)`.
    pub fragment: Option<(u16, bool)>,
    pub auth: bool,
    /// Destination options after the routing header.
    pub final_dest_opts: bool,
}

impl Exts {
    /// Every kind RFC 8200 lists, in its order: hop-by-hop, destination
    /// options, routing, destination options, fragment (atomic), AH.
    pub fn all() -> Self {
        Self {
            hop_by_hop: true,
            dest_opts: true,
            routing: true,
            fragment: Some((0, false)),
            auth: true,
            final_dest_opts: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Spec {
    /// VLAN IDs, outer first (two = QinQ with an 802.1ad outer tag).
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 option bytes (multiple of 4, at most 40).
    pub ipv4_options: Vec<u8>,
    /// IPv4 fragment: `(offset in 8-byte units, more fragments)`.
    pub ipv4_frag: Option<(u16, bool)>,
    pub exts: Exts,
    pub l4: L4,
    pub payload: usize,
}

impl Spec {
    /// A TCP segment of an established connection (ACK set).
    pub fn tcp(src: &str, dst: &str, sport: u16, dport: u16) -> Self {
        Self::tcp_flags(src, dst, sport, dport, false, true)
    }

    /// A connection opening (SYN set, ACK clear).
    pub fn syn(src: &str, dst: &str, sport: u16, dport: u16) -> Self {
        Self::tcp_flags(src, dst, sport, dport, true, false)
    }

    fn tcp_flags(src: &str, dst: &str, sport: u16, dport: u16, syn: bool, ack: bool) -> Self {
        let l4 = L4::Tcp {
            sport,
            dport,
            syn,
            ack,
            options: Vec::new(),
        };
        Self::new(src, dst, l4)
    }

    pub fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Self {
        Self::new(src, dst, L4::Udp { sport, dport })
    }

    pub fn echo(src: &str, dst: &str) -> Self {
        Self::new(src, dst, L4::Echo)
    }

    fn new(src: &str, dst: &str, l4: L4) -> Self {
        Self {
            vlans: Vec::new(),
            src: src.parse().expect("test address"),
            dst: dst.parse().expect("test address"),
            ipv4_options: Vec::new(),
            ipv4_frag: None,
            exts: Exts::default(),
            l4,
            payload: 0,
        }
    }

    pub fn vlans(mut self, v: &[u16]) -> Self {
        self.vlans = v.to_vec();
        self
    }

    /// TCP option bytes (a multiple of 4, at most 40); TCP frames only.
    pub fn tcp_options(mut self, o: &[u8]) -> Self {
        match &mut self.l4 {
            L4::Tcp { options, .. } => *options = o.to_vec(),
            _ => panic!("TCP options on a frame that is not TCP"),
        }
        self
    }

    pub fn payload(mut self, n: usize) -> Self {
        self.payload = n;
        self
    }

    pub fn ipv4_options(mut self, o: &[u8]) -> Self {
        self.ipv4_options = o.to_vec();
        self
    }

    pub fn ipv4_frag(mut self, offset: u16, more: bool) -> Self {
        self.ipv4_frag = Some((offset, more));
        self
    }

    pub fn exts(mut self, e: Exts) -> Self {
        self.exts = e;
        self
    }

    fn ip_headers(&self) -> IpHeaders {
        let proto = match self.l4 {
            L4::Tcp { .. } => IpNumber::TCP,
            L4::Udp { .. } => IpNumber::UDP,
            L4::Echo if self.src.is_ipv4() => IpNumber::ICMP,
            L4::Echo => IpNumber::IPV6_ICMP,
        };
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = Ipv4Header::new(0, 64, proto, s.octets(), d.octets())
                    .expect("zero payload fits");
                h.options = Ipv4Options::try_from(&self.ipv4_options[..])
                    .expect("IPv4 options: a multiple of 4 bytes, at most 40");
                if let Some((off, more)) = self.ipv4_frag {
                    h.fragment_offset = IpFragOffset::try_new(off).expect("13-bit offset");
                    h.more_fragments = more;
                    h.dont_fragment = false;
                }
                IpHeaders::Ipv4(h, Ipv4Extensions::default())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let h = Ipv6Header {
                    hop_limit: 64,
                    source: s.octets(),
                    destination: d.octets(),
                    ..Default::default()
                };
                // Option payloads: PadN filling the 6 bytes after the
                // next-header and length fields.
                let padn = [1u8, 4, 0, 0, 0, 0];
                let raw = || Ipv6RawExtHeader::new_raw(IpNumber(0), &padn).expect("6-byte payload");
                let e = &self.exts;
                let exts = Ipv6Extensions {
                    hop_by_hop_options: e.hop_by_hop.then(raw),
                    destination_options: e.dest_opts.then(raw),
                    routing: e.routing.then(|| Ipv6RoutingExtensions {
                        // Type 0 is deprecated but parses as any routing
                        // header: type, segments left, 4 reserved bytes.
                        routing: Ipv6RawExtHeader::new_raw(IpNumber(0), &[0, 0, 0, 0, 0, 0])
                            .expect("6-byte payload"),
                        final_destination_options: e.final_dest_opts.then(raw),
                    }),
                    fragment: e.fragment.map(|(off, more)| {
                        Ipv6FragmentHeader::new(
                            IpNumber(0),
                            IpFragOffset::try_new(off).expect("13-bit offset"),
                            more,
                            0x1234,
                        )
                    }),
                    auth: e.auth.then(|| {
                        IpAuthHeader::new(IpNumber(0), 0x100, 1, &[0; 12]).expect("12-byte ICV")
                    }),
                };
                IpHeaders::Ipv6(h, exts)
            }
            _ => panic!("source and destination must be of one family"),
        }
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
        let vid = |v: u16| VlanId::try_new(v).expect("12-bit VLAN ID");
        let ip = match self.vlans.as_slice() {
            [] => eth.ip(self.ip_headers()),
            [v] => eth.single_vlan(vid(*v)).ip(self.ip_headers()),
            [o, i] => eth.double_vlan(vid(*o), vid(*i)).ip(self.ip_headers()),
            _ => panic!("etherparse builds at most two tags; use `add_vlan_tag` for more"),
        };
        let payload = vec![0x5a; self.payload];
        let mut out = Vec::new();
        let res = match &self.l4 {
            L4::Tcp {
                sport,
                dport,
                syn,
                ack,
                options,
            } => {
                let mut t = TcpHeader::new(*sport, *dport, 1000, 64_240);
                t.syn = *syn;
                if *ack {
                    t.ack = true;
                    t.acknowledgment_number = 1;
                }
                t.set_options_raw(options)
                    .expect("TCP options: a multiple of 4, at most 40");
                ip.tcp_header(t).write(&mut out, &payload)
            }
            L4::Udp { sport, dport } => ip.udp(*sport, *dport).write(&mut out, &payload),
            L4::Echo if self.src.is_ipv4() => {
                ip.icmpv4_echo_request(7, 1).write(&mut out, &payload)
            }
            L4::Echo => ip.icmpv6_echo_request(7, 1).write(&mut out, &payload),
        };
        res.expect("etherparse builds the frame");
        if self.vlans.len() == 2 {
            // etherparse writes 0x8100 for both tags; QinQ's outer tag is an
            // 802.1ad service tag.
            out[12..14].copy_from_slice(&ETH_P_8021AD.to_be_bytes());
        }
        out
    }
}

/// The options Linux puts in a SYN: MSS 1460, SACK permitted, timestamps
/// (TSval `tsval`), NOP, window scale `wscale`.
pub fn linux_syn_options(tsval: u32, wscale: u8) -> Vec<u8> {
    let mut o = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&[0, 0, 0, 0, 1, 3, 3, wscale]);
    o
}

/// Byte offsets of each header in a frame built from `spec`, for cutting
/// frames at header boundaries: (name of the header that starts there,
/// offset).
pub fn boundaries(frame: &[u8]) -> Vec<(&'static str, usize)> {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame).expect("a frame we built parses");
    let mut out = vec![("ethernet", 0)];
    let mut off = 14;
    if let Some(vlan) = &sliced.vlan() {
        match vlan {
            etherparse::VlanSlice::SingleVlan(_) => {
                out.push(("vlan", off));
                off += 4;
            }
            etherparse::VlanSlice::DoubleVlan(_) => {
                out.push(("vlan", off));
                out.push(("vlan", off + 4));
                off += 8;
            }
        }
    }
    match &sliced.net {
        Some(etherparse::NetSlice::Ipv4(v4)) => {
            out.push(("ipv4", off));
            off += v4.header().slice().len();
        }
        Some(etherparse::NetSlice::Ipv6(v6)) => {
            out.push(("ipv6", off));
            off += 40;
            for ext in v6.extensions().clone().into_iter() {
                out.push(("ipv6_ext", off));
                use etherparse::Ipv6ExtensionSlice as E;
                off += match ext {
                    E::HopByHop(h) | E::Routing(h) | E::DestinationOptions(h) => h.slice().len(),
                    E::Fragment(h) => h.slice().len(),
                    E::Authentication(h) => h.slice().len(),
                };
            }
        }
        _ => {}
    }
    if sliced.transport.is_some() {
        out.push(("l4", off));
    }
    out
}

/// Inserts another 802.1Q tag right after the MAC addresses (a frame with
/// more tags than the parser accepts).
pub fn add_vlan_tag(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
    out.extend_from_slice(&vid.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// An ARP request (not IP: passes, counted as non-IP).
pub fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let arp = etherparse::ArpPacket::new(
        etherparse::ArpHardwareId::ETHERNET,
        etherparse::EtherType::IPV4,
        etherparse::ArpOperation::REQUEST,
        &SRC_MAC,
        &sender,
        &[0; 6],
        &target,
    )
    .expect("ARP addresses of the declared sizes");
    let mut out = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, [0xff; 6])
        .arp(arp)
        .write(&mut out)
        .expect("etherparse builds the frame");
    out
}
