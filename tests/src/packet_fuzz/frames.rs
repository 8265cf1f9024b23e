//! The packet fuzzer's frames: a valid stack with random fields (VLAN
//! tags, IPv4 options and fragments, IPv6 extension-header chains, every
//! upper layer Tollgate reads and some it does not), then a few
//! mutations: a cut at any offset, a length field that lies, random bytes
//! in the headers, an unexpected ethertype or protocol, a trailer past
//! the IP length.

use fastrand::Rng;

/// The largest frame generated: headers and a little payload, well
/// inside what BPF_PROG_TEST_RUN takes.
const MAX_FRAME: usize = 1_500;
/// XDP never sees less than an Ethernet header, and the kernel refuses to
/// test-run less.
pub const MIN_FRAME: usize = 14;

/// Where the length fields of the frame being built are, for the
/// mutations that make them lie.
#[derive(Default)]
struct Fields {
    /// Offset of each length-bearing byte or word, and its width.
    lengths: Vec<(usize, usize)>,
    /// Where the headers end (mutations aim at the bytes before).
    headers_end: usize,
}

/// One frame from `rng`.
pub fn frame(rng: &mut Rng) -> Vec<u8> {
    let mut f = Vec::with_capacity(256);
    let mut fields = Fields::default();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]);
    for _ in 0..weighted(rng, &[60, 25, 10, 5]) {
        let tpid: u16 = if rng.bool() { 0x8100 } else { 0x88a8 };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&rng.u16(..).to_be_bytes());
    }
    match weighted(rng, &[45, 45, 10]) {
        0 => ipv4(rng, &mut f, &mut fields),
        1 => ipv6(rng, &mut f, &mut fields),
        _ => {
            f.extend_from_slice(&rng.u16(..).to_be_bytes());
            let n = rng.usize(0..64);
            f.extend((0..n).map(|_| rng.u8(..)));
            fields.headers_end = f.len();
        }
    }
    for _ in 0..weighted(rng, &[40, 35, 15, 10]) {
        mutate(rng, &mut f, &fields);
    }
    f.truncate(MAX_FRAME);
    if f.len() < MIN_FRAME {
        f.resize(MIN_FRAME, 0);
    }
    f
}

/// An index drawn with the given weights.
fn weighted(rng: &mut Rng, weights: &[u32]) -> usize {
    let mut pick = rng.u32(0..weights.iter().sum::<u32>());
    for (i, w) in weights.iter().enumerate() {
        if pick < *w {
            return i;
        }
        pick -= w;
    }
    weights.len() - 1
}

fn ipv4(rng: &mut Rng, f: &mut Vec<u8>, fields: &mut Fields) {
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let at = f.len();
    let opts = if rng.u8(..4) == 0 {
        rng.usize(0..=10) * 4
    } else {
        0
    };
    let proto = upper(rng, false);
    let frag: u16 = match weighted(rng, &[80, 10, 10]) {
        0 => 0,
        1 => 0x2000,
        _ => rng.u16(1..0x2000) | if rng.bool() { 0x2000 } else { 0 },
    };
    f.push(0x40 | (5 + opts / 4) as u8);
    f.push(0);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&rng.u16(..).to_be_bytes());
    f.extend_from_slice(&frag.to_be_bytes());
    f.push(64);
    f.push(proto);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&[192, 0, 2, rng.u8(..)]);
    f.extend_from_slice(&[198, 51, 100, rng.u8(..)]);
    f.extend((0..opts).map(|_| rng.u8(..)));
    fields.lengths.push((at, 1));
    fields.lengths.push((at + 2, 2));
    transport(rng, f, fields, proto);
    let tot = (f.len() - at) as u16;
    f[at + 2..at + 4].copy_from_slice(&tot.to_be_bytes());
}

fn ipv6(rng: &mut Rng, f: &mut Vec<u8>, fields: &mut Fields) {
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    let at = f.len();
    f.extend_from_slice(&0x6000_0000u32.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    let next_at = f.len();
    f.push(0);
    f.push(64);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    f.extend((0..12).map(|_| rng.u8(..)));
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff]);
    f.extend((0..10).map(|_| rng.u8(..)));
    fields.lengths.push((at + 4, 2));
    let mut next_at = next_at;
    // Up to ten headers: past `IPV6_EXT_MAX_CHAIN` (eight) at times.
    for _ in 0..weighted(rng, &[40, 20, 15, 10, 5, 4, 3, 2, 1, 3, 3]) {
        let kind = [0u8, 43, 44, 51, 60, 135, 139, 140][rng.usize(0..8)];
        f[next_at] = kind;
        next_at = f.len();
        extension(rng, f, fields, kind);
        if kind == 135 || kind == 139 {
            break;
        }
    }
    let proto = upper(rng, true);
    f[next_at] = proto;
    transport(rng, f, fields, proto);
    let plen = (f.len() - at - 40) as u16;
    f[at + 4..at + 6].copy_from_slice(&plen.to_be_bytes());
}

/// One extension header of `kind` (its next-header byte is set by the
/// caller, at its first byte).
fn extension(rng: &mut Rng, f: &mut Vec<u8>, fields: &mut Fields, kind: u8) {
    let at = f.len();
    match kind {
        44 => {
            let off: u16 = if rng.u8(..4) == 0 {
                rng.u16(1..0x2000)
            } else {
                0
            };
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&((off << 3) | u16::from(rng.bool())).to_be_bytes());
            f.extend_from_slice(&rng.u32(..).to_be_bytes());
        }
        51 => {
            let words = rng.usize(1..6);
            f.extend_from_slice(&[0, words as u8]);
            f.extend((0..(words + 2) * 4 - 2).map(|_| rng.u8(..)));
            fields.lengths.push((at + 1, 1));
        }
        43 => {
            let segments = rng.usize(0..4);
            let routing_type = if rng.bool() { 4 } else { rng.u8(..) };
            let len = segments * 2 + if rng.u8(..4) == 0 { 1 } else { 0 };
            let last_entry = segments.saturating_sub(1) as u8 + rng.u8(..2);
            f.extend_from_slice(&[0, len as u8, routing_type, rng.u8(..4), last_entry]);
            f.extend((0..(len + 1) * 8 - 5).map(|_| rng.u8(..)));
            fields.lengths.push((at + 1, 1));
            fields.lengths.push((at + 4, 1));
        }
        _ => {
            let len = rng.usize(0..3);
            f.extend_from_slice(&[0, len as u8]);
            f.extend((0..(len + 1) * 8 - 2).map(|_| rng.u8(..)));
            fields.lengths.push((at + 1, 1));
        }
    }
}

/// An upper-layer protocol: mostly those Tollgate reads, the wrong ICMP
/// for the family at times, sometimes any.
fn upper(rng: &mut Rng, v6: bool) -> u8 {
    match weighted(rng, &[40, 30, 15, 5, 10]) {
        0 => 6,
        1 => 17,
        2 => {
            if v6 {
                58
            } else {
                1
            }
        }
        3 => {
            if v6 {
                1
            } else {
                58
            }
        }
        _ => rng.u8(..),
    }
}

fn transport(rng: &mut Rng, f: &mut Vec<u8>, fields: &mut Fields, proto: u8) {
    let at = f.len();
    match proto {
        6 => {
            let opts = if rng.u8(..3) == 0 {
                rng.usize(0..=10) * 4
            } else {
                0
            };
            f.extend_from_slice(&rng.u16(..).to_be_bytes());
            f.extend_from_slice(&rng.u16(..).to_be_bytes());
            f.extend((0..8).map(|_| rng.u8(..)));
            let off_flags = (((5 + opts / 4) as u16) << 12) | rng.u16(..0x1000);
            f.extend_from_slice(&off_flags.to_be_bytes());
            f.extend((0..6).map(|_| rng.u8(..)));
            f.extend((0..opts).map(|_| rng.u8(..)));
            fields.lengths.push((at + 12, 1));
        }
        17 => {
            f.extend_from_slice(&rng.u16(..).to_be_bytes());
            f.extend_from_slice(&rng.u16(..).to_be_bytes());
            f.extend_from_slice(&[0, 8, 0, 0]);
        }
        1 | 58 => f.extend((0..8).map(|_| rng.u8(..))),
        _ => {}
    }
    fields.headers_end = f.len();
    let n = rng.usize(0..48);
    f.extend((0..n).map(|_| rng.u8(..)));
}

/// One mutation of `f`.
fn mutate(rng: &mut Rng, f: &mut Vec<u8>, fields: &Fields) {
    let headers = fields.headers_end.clamp(MIN_FRAME, f.len().max(MIN_FRAME));
    match weighted(rng, &[30, 30, 20, 10, 10]) {
        // A cut anywhere, mostly inside the headers.
        0 => {
            let cut = rng.usize(MIN_FRAME..=headers.max(MIN_FRAME));
            f.truncate(cut);
        }
        // A length field that lies.
        1 if !fields.lengths.is_empty() => {
            let (at, width) = fields.lengths[rng.usize(0..fields.lengths.len())];
            if at + width <= f.len() {
                match (width, rng.u8(..3)) {
                    (1, _) => f[at] = rng.u8(..),
                    (_, 0) => f[at..at + 2].copy_from_slice(&[0, 0]),
                    (_, 1) => f[at..at + 2].copy_from_slice(&rng.u16(..64).to_be_bytes()),
                    _ => f[at..at + 2].copy_from_slice(&rng.u16(..).to_be_bytes()),
                }
            }
        }
        // Random bytes in the headers.
        2 => {
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(12..headers.min(f.len()).max(13));
                if i < f.len() {
                    f[i] = rng.u8(..);
                }
            }
        }
        // A trailer (Ethernet padding, or garbage) past the IP length.
        3 => {
            let n = rng.usize(1..32);
            f.extend((0..n).map(|_| if rng.bool() { 0 } else { rng.u8(..) }));
        }
        // An unexpected ethertype or tag.
        _ => {
            let types = [0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x0806, rng.u16(..)];
            let at = 12 + 4 * rng.usize(0..3);
            if at + 2 <= f.len() {
                f[at..at + 2].copy_from_slice(&types[rng.usize(0..types.len())].to_be_bytes());
            }
        }
    }
}
