//! The lab's traffic generator (`tollgate_gen`), shared by the XDP program
//! that rewrites each frame and the tests that configure it. Not part of
//! the product's data path: the program is in the same object only so the
//! build makes one BPF object; the daemon never loads it.
//!
//! The generator transmits through BPF_PROG_TEST_RUN with
//! BPF_F_TEST_XDP_LIVE_FRAMES: the kernel runs the program on copies of one
//! template frame and sends each one it returns XDP_TX for out of the
//! interface, at millions of packets per second. The program gives each
//! frame a source (IPv4: from up to `GEN_MAX_RANGES` ranges; IPv6: random
//! bits in words 1..3 of the template's source, never the first word, so
//! a template in 2001:db8::/32 stays there) and, optionally, a random
//! source or destination port, and fixes the checksums incrementally from
//! the template's (so the result does not depend on what a recycled frame
//! held before).
//!
//! The same object holds `tollgate_sink` (XDP_DROP on everything), which
//! the lab attaches to the attacker's end of its veth: it absorbs the
//! server's answers to spoofed sources for almost nothing, and a program
//! there is what lets a veth deliver frames sent to it with XDP_TX.

/// One IPv4 source range: `base .. base + count`, host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SrcRange {
    pub base: u32,
    pub count: u32,
}

/// How many IPv4 source ranges a flood draws from (the three
/// documentation /24s, one of them split around the lab's own hosts).
pub const GEN_MAX_RANGES: usize = 4;

/// The generator's settings (array map `GEN`, one entry). Addresses,
/// ports and checksums are stored as they appear in the packet unless a
/// field says "host order".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenConfig {
    /// IPv4 sources: each frame's is drawn uniformly from the union of
    /// the ranges (unused ones have `count` 0).
    pub ranges: [SrcRange; GEN_MAX_RANGES],
    /// The sum of the ranges' counts; 0 or 1 keeps the first range's base.
    pub src_total: u32,
    /// The template's IPv4 source address, as read from the frame.
    pub orig_src: u32,
    /// IPv6 sources: the bits drawn at random per frame in words 1..3
    /// (bytes 4..16) of the source, as stored; zero: the template's.
    pub src6_random: [u32; 3],
    /// The template's IPv6 source words 1..3, as read.
    pub orig_src6: [u32; 3],
    /// The template's IPv4 header checksum (unused for IPv6) and TCP/UDP
    /// checksum, as read.
    pub ip_csum: u16,
    pub l4_csum: u16,
    /// The template's source port, as read.
    pub orig_sport: u16,
    /// Non-zero: a random source port (>= 1024) per frame.
    pub vary_sport: u16,
    /// Rounds of busy work per frame (at most `GEN_MAX_SPIN`), `fixed`
    /// frames included: slows the generator evenly to a chosen rate, where
    /// pacing by sleeping between BPF_PROG_TEST_RUN calls would send
    /// bursts.
    pub spin: u32,
    /// The template's destination port, as read.
    pub orig_dport: u16,
    /// Non-zero: destination ports `dport .. dport + span` at random (a
    /// port scan); zero: the template's port.
    pub dport_span: u16,
    /// Non-zero: every frame is the template as built, not rewritten (the
    /// fastest flood; only for receivers that never write to a frame,
    /// since the kernel recycles a sent frame's page as it was left).
    pub fixed: u32,
}

/// Upper bound of `GenConfig::spin` (the loop the verifier walks, one
/// pending branch per round: it refuses more than 8,192 of them, "the
/// sequence of jumps is too complex"; a generator of 2.6 Mpps flat out
/// needs about 2,150 for the bench's slowest pace).
pub const GEN_MAX_SPIN: u32 = 4096;
const _: () = assert!(core::mem::size_of::<GenConfig>() == 84);

/// Name of the generator's config map and programs.
pub const GEN_MAP: &str = "TG_GEN";
/// The template frame, which the program writes over each frame whole
/// before changing its fields: in live-frames mode the kernel recycles a
/// frame's page without copying the template again, and a receiver that
/// rewrote the frame in place (Tollgate's SYN-ACK) would otherwise leave
/// its bytes in the next frame.
pub const GEN_FRAME_MAP: &str = "TG_GEN_FRAME";

/// `GEN_FRAME_MAP`'s value: the template's first `GEN_MIN_FRAME6` bytes
/// (all of it: templates are `GEN_MIN_FRAME` or `GEN_MIN_FRAME6` long).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GenFrame {
    pub bytes: [u8; GEN_MIN_FRAME6],
    pub _pad: [u8; 2],
}
pub const GEN_PROG: &str = "tollgate_gen";
pub const SINK_PROG: &str = "tollgate_sink";
/// The flood table's second reference: drops after reading the frame's
/// EtherType and source address, the least any filter must touch.
pub const SINK_READ_PROG: &str = "tollgate_sink_read";

/// IPv4 frames must hold Ethernet + a 20-byte IPv4 header + 20 bytes of
/// L4 (pad UDP frames with payload).
pub const GEN_MIN_FRAME: usize = 14 + 20 + 20;
/// IPv6 frames: Ethernet + the 40-byte header (no extension headers) +
/// 20 bytes of L4.
pub const GEN_MIN_FRAME6: usize = 14 + 40 + 20;

/// RFC 1624 incremental checksum update: the checksum `hc` of data in
/// which the 32-bit values `old` became `new`. Values are taken in the
/// packet's byte order, read natively: the one's-complement sum of 32-bit
/// words folds to the sum of their 16-bit halves, and it does not care
/// which byte order as long as it is the same throughout.
#[inline(always)]
pub fn csum_replace<const N: usize>(hc: u16, old: &[u32; N], new: &[u32; N]) -> u16 {
    let mut sum: u64 = (!hc) as u64;
    let mut i = 0;
    while i < N {
        sum += (!old[i]) as u64 + new[i] as u64;
        i += 1;
    }
    // At most 2N + 1 terms below 2^32: two folds to 32 bits, two to 16.
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Two 16-bit fields as stored side by side (the source and destination
/// ports) as one 32-bit value as stored.
#[inline(always)]
pub fn pair(first: u16, second: u16) -> u32 {
    let (a, b) = (first.to_ne_bytes(), second.to_ne_bytes());
    u32::from_ne_bytes([a[0], a[1], b[0], b[1]])
}

/// The IPv4 source for random `r`: uniform over the ranges' union.
#[inline(always)]
pub fn pick_source(cfg: &GenConfig, r: u32) -> u32 {
    if cfg.src_total <= 1 {
        return cfg.ranges[0].base;
    }
    let mut idx = r % cfg.src_total;
    let mut i = 0;
    while i < GEN_MAX_RANGES {
        let n = cfg.ranges[i].count;
        if idx < n {
            return cfg.ranges[i].base.wrapping_add(idx);
        }
        idx -= n;
        i += 1;
    }
    cfg.ranges[0].base
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, vec::Vec};

    use super::*;

    /// The RFC 1071 checksum of `data`, words read natively.
    fn full(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                [c[0], c[1]]
            } else {
                [c[0], 0]
            };
            sum += u16::from_ne_bytes(w) as u32;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn at32(b: &[u8], o: usize) -> u32 {
        u32::from_ne_bytes(b[o..o + 4].try_into().unwrap())
    }

    #[test]
    fn incremental_update_equals_a_full_recompute() {
        // A 20-byte IPv4 header with its checksum at bytes 10..12.
        let mut hdr: [u8; 20] = [
            0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 192, 0, 2, 7, 198, 51, 100, 1,
        ];
        let c = full(&hdr);
        hdr[10..12].copy_from_slice(&c.to_ne_bytes());
        assert_eq!(full(&hdr), 0, "a header with its checksum sums to zero");
        for src in [
            [203, 0, 113, 9],
            [198, 51, 100, 255],
            [0, 0, 0, 0],
            [255; 4],
        ] {
            let hc = u16::from_ne_bytes([hdr[10], hdr[11]]);
            let updated = csum_replace(hc, &[at32(&hdr, 12)], &[u32::from_ne_bytes(src)]);
            let mut expect = hdr;
            expect[12..16].copy_from_slice(&src);
            expect[10..12].copy_from_slice(&[0, 0]);
            assert_eq!(updated, full(&expect), "source {src:?}");
        }
    }

    #[test]
    fn many_words_at_once_equal_a_full_recompute() {
        // 40 bytes of anything with a checksum at 16..18; replace four
        // 32-bit values (as an IPv6 source's words 1..3 and the ports).
        let mut data: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
        data[16..18].copy_from_slice(&[0, 0]);
        let c = full(&data);
        data[16..18].copy_from_slice(&c.to_ne_bytes());
        let offsets = [4, 8, 12, 20];
        for new in [
            [0u32; 4],
            [u32::MAX; 4],
            [0x2001_0db8, 7, 0xdead_beef, 0x0050_1f90],
        ] {
            let old = offsets.map(|o| at32(&data, o));
            let hc = u16::from_ne_bytes([data[16], data[17]]);
            let updated = csum_replace(hc, &old, &new);
            let mut expect = data.clone();
            for (o, v) in offsets.iter().zip(new) {
                expect[*o..*o + 4].copy_from_slice(&v.to_ne_bytes());
            }
            expect[16..18].copy_from_slice(&[0, 0]);
            assert_eq!(updated, full(&expect), "new values {new:x?}");
        }
    }

    #[test]
    fn sources_cover_every_range_and_nothing_else() {
        let mut cfg = GenConfig::default();
        let ranges = [(0xc000_0202, 126), (0xc000_02c0, 63), (0xc633_6400, 256)];
        for (i, (base, count)) in ranges.iter().enumerate() {
            cfg.ranges[i] = SrcRange {
                base: *base,
                count: *count,
            };
        }
        cfg.src_total = ranges.iter().map(|r| r.1).sum();
        let mut seen = HashSet::new();
        let spread =
            (0..cfg.src_total).chain((0..1000).map(|r: u32| r.wrapping_mul(2_654_435_761)));
        for r in spread {
            let s = pick_source(&cfg, r);
            assert!(
                ranges.iter().any(|(b, n)| s >= *b && s - *b < *n),
                "{s:#x} is in no range"
            );
            seen.insert(s);
        }
        assert_eq!(seen.len() as u32, cfg.src_total, "every source is drawn");
        cfg.src_total = 1;
        assert_eq!(pick_source(&cfg, 12345), ranges[0].0);
    }

    #[test]
    fn pair_is_two_fields_side_by_side() {
        let (a, b) = (0x1234u16.to_be(), 0x5678u16.to_be());
        assert_eq!(pair(a, b).to_ne_bytes(), [0x12, 0x34, 0x56, 0x78]);
    }
}
