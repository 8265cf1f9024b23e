//! Frames on which Tollgate's parse once read differently from tshark,
//! each built by hand (raw bytes: most of them no builder would make).
//! The kernel tests check what the parse reads from each
//! (`tests/parse.rs`); the replay test checks that tshark reads the same
//! (`tests/replay.rs`).

const SRC4: [u8; 4] = [192, 0, 2, 10];
const DST4: [u8; 4] = [198, 51, 100, 1];
/// 2001:db8::10 and 2001:db8:ffff::1.
const SRC6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const DST6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
];

fn eth(ether_type: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

/// IPv4 with header length `ihl` (words) and total length `tot` (the
/// true one if `None`).
fn v4(proto: u8, payload: &[u8], ihl: u8, tot: Option<u16>) -> Vec<u8> {
    let opts = usize::from(ihl.max(5) - 5) * 4;
    let tot = tot.unwrap_or((20 + opts + payload.len()) as u16);
    let mut f = eth(0x0800);
    f.extend_from_slice(&[0x40 | ihl, 0]);
    f.extend_from_slice(&tot.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&SRC4);
    f.extend_from_slice(&DST4);
    f.extend(std::iter::repeat_n(1, opts));
    f.extend_from_slice(payload);
    f
}

/// IPv6 with payload length `plen` (the true one if `None`).
fn v6(next: u8, payload: &[u8], plen: Option<u16>) -> Vec<u8> {
    let plen = plen.unwrap_or(payload.len() as u16);
    let mut f = eth(0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[next, 64]);
    f.extend_from_slice(&SRC6);
    f.extend_from_slice(&DST6);
    f.extend_from_slice(payload);
    f
}

/// TCP 40000 -> 443 with ACK and data offset `doff` (words; options not
/// included whatever it says).
fn tcp(doff: u8) -> Vec<u8> {
    let mut t = vec![0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 2];
    t.extend_from_slice(&[doff << 4, 0x10, 0x03, 0xe8, 0, 0, 0, 0]);
    t
}

/// The shapes, named, each with what Tollgate (and tshark) read from it.
pub struct Shape {
    pub name: &'static str,
    pub frame: Vec<u8>,
    /// `ipv4`, `ipv6` or `malformed`.
    pub family: &'static str,
    pub proto: Option<u8>,
    pub ports: Option<(u16, u16)>,
    pub tcp_flags: Option<u16>,
    pub malformed_at: Option<&'static str>,
}

impl Shape {
    fn new(name: &'static str, frame: Vec<u8>, family: &'static str, proto: Option<u8>) -> Self {
        Self {
            name,
            frame,
            family,
            proto,
            ports: None,
            tcp_flags: None,
            malformed_at: None,
        }
    }
    fn ports(self, sport: u16, dport: u16) -> Self {
        Self {
            ports: Some((sport, dport)),
            ..self
        }
    }
    fn flags(self, flags: u16) -> Self {
        Self {
            tcp_flags: Some(flags),
            ..self
        }
    }
    fn malformed(self, at: &'static str) -> Self {
        Self {
            malformed_at: Some(at),
            ..self
        }
    }
}

pub fn shapes() -> Vec<Shape> {
    // A mobility header (RFC 6275): payload proto 59, 16 bytes.
    let mobility = [59, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    // A segment routing header 24 bytes long listing four segments.
    let mut srh = vec![6, 2, 4, 1, 3, 0, 0, 0];
    srh.extend_from_slice(&[0; 16]);
    srh.extend_from_slice(&tcp(5));
    let mut fragment = vec![6, 0, 0, 1, 0, 0, 0, 7];
    fragment.extend_from_slice(&tcp(5));
    let (v4_tcp, v6_tcp) = (Some(6), Some(6));
    vec![
        Shape::new(
            "IPv4 header length 16",
            v4(6, &tcp(5), 4, None),
            "malformed",
            None,
        )
        .malformed("ipv4"),
        Shape::new(
            "IPv4 total length under its header's",
            v4(6, &tcp(5), 5, Some(16)),
            "malformed",
            None,
        )
        .malformed("ipv4"),
        Shape::new(
            "IPv4 total length ending inside TCP",
            v4(6, &tcp(5), 5, Some(30)),
            "ipv4",
            v4_tcp,
        )
        .ports(40000, 443)
        .malformed("tcp"),
        Shape::new(
            "IPv6 mobility header",
            v6(135, &mobility, None),
            "ipv6",
            Some(135),
        ),
        Shape::new(
            "IPv6 segment routing header listing more than it holds",
            v6(43, &srh, None),
            "ipv6",
            Some(43),
        )
        .malformed("ipv6_ext"),
        Shape::new(
            "IPv6 fragment header past the payload length",
            v6(44, &fragment, Some(4)),
            "ipv6",
            Some(44),
        )
        .malformed("ipv6_ext"),
        Shape::new(
            "IPv6 payload length 0 without hop-by-hop",
            v6(6, &tcp(5), Some(0)),
            "ipv6",
            v6_tcp,
        )
        .malformed("tcp"),
        Shape::new(
            "TCP cut after its ports",
            v4(6, &tcp(5)[..6], 5, None),
            "ipv4",
            v4_tcp,
        )
        .ports(40000, 443)
        .malformed("tcp"),
        Shape::new(
            "TCP cut inside its flags",
            v4(6, &tcp(5)[..13], 5, None),
            "ipv4",
            v4_tcp,
        )
        .ports(40000, 443)
        .malformed("tcp"),
        Shape::new("TCP data offset 3", v4(6, &tcp(3), 5, None), "ipv4", v4_tcp)
            .ports(40000, 443)
            .malformed("tcp"),
        Shape::new(
            "TCP options past the end",
            v4(6, &tcp(15), 5, None),
            "ipv4",
            v4_tcp,
        )
        .ports(40000, 443)
        .flags(0x010)
        .malformed("tcp_options"),
        Shape::new(
            "UDP cut after its ports",
            v4(17, &[0x9c, 0x40, 0, 53], 5, None),
            "ipv4",
            Some(17),
        )
        .ports(40000, 53)
        .malformed("udp"),
    ]
}
