//! The lab's traffic generator (`tollgate_gen`), shared by the XDP program
//! that rewrites each frame and the tests that configure it. Not part of
//! the product's data path: the program is in the same object only so the
//! build makes one BPF object; the daemon never loads it.
//!
//! The generator transmits through BPF_PROG_TEST_RUN with
//! BPF_F_TEST_XDP_LIVE_FRAMES: the kernel runs the program on copies of one
//! template frame and sends each one it returns XDP_TX for out of the
//! interface, at millions of packets per second. The program gives each
//! frame a source from a range and, optionally, a random source port, and
//! fixes both checksums incrementally from the template's (so the result
//! does not depend on what a recycled frame held before).

/// The generator's settings (array map `GEN`, one entry). Addresses,
/// ports and checksums are stored as they appear in the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenConfig {
    /// First source address, host order; sources are `src_base ..
    /// src_base + src_count`.
    pub src_base: u32,
    pub src_count: u32,
    /// The template's source address, as read from the frame.
    pub orig_src: u32,
    /// The template's IPv4 header and TCP/UDP checksums, as read.
    pub ip_csum: u16,
    pub l4_csum: u16,
    /// The template's source port, as read.
    pub orig_sport: u16,
    /// Non-zero: a random source port (>= 1024) per frame.
    pub vary_sport: u16,
    /// Rounds of busy work per frame (at most `GEN_MAX_SPIN`): slows the
    /// generator evenly to a chosen rate, where pacing by sleeping between
    /// BPF_PROG_TEST_RUN calls would send bursts.
    pub spin: u32,
    /// The template's destination port, as read.
    pub orig_dport: u16,
    /// Non-zero: destination ports `dport .. dport + span` at random (a
    /// port scan); zero: the template's port.
    pub dport_span: u16,
}

/// Upper bound of `GenConfig::spin` (the loop the verifier walks).
pub const GEN_MAX_SPIN: u32 = 2048;
const _: () = assert!(core::mem::size_of::<GenConfig>() == 28);

/// Name of the generator's config map and program.
pub const GEN_MAP: &str = "TG_GEN";
pub const GEN_PROG: &str = "tollgate_gen";

/// Frames must hold Ethernet + a 20-byte IPv4 header + 20 bytes of L4
/// (pad UDP frames with payload).
pub const GEN_MIN_FRAME: usize = 14 + 20 + 20;

/// RFC 1624 incremental checksum update: the checksum `hc` of data in
/// which the 16-bit words `old` became `new`. Words are taken in the
/// packet's byte order, read natively; the one's-complement sum does not
/// care which order as long as it is the same throughout.
#[inline(always)]
pub fn csum_update(hc: u16, old: &[u16; 4], new: &[u16; 4], words: usize) -> u16 {
    let mut sum: u32 = (!hc) as u32;
    let mut i = 0;
    while i < 4 {
        if i < words {
            sum += (!old[i]) as u32 + new[i] as u32;
        }
        i += 1;
    }
    // Nine 16-bit terms: two folds always suffice.
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// A 32-bit value as stored (memory order) split into two native words.
#[inline(always)]
pub fn words_of(stored: u32) -> [u16; 2] {
    let b = stored.to_ne_bytes();
    [
        u16::from_ne_bytes([b[0], b[1]]),
        u16::from_ne_bytes([b[2], b[3]]),
    ]
}

#[cfg(test)]
mod tests {
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
            let old = u32::from_ne_bytes(hdr[12..16].try_into().unwrap());
            let new = u32::from_ne_bytes(src);
            let [o0, o1] = words_of(old);
            let [n0, n1] = words_of(new);
            let hc = u16::from_ne_bytes([hdr[10], hdr[11]]);
            let updated = csum_update(hc, &[o0, o1, 0, 0], &[n0, n1, 0, 0], 2);
            let mut expect = hdr;
            expect[12..16].copy_from_slice(&src);
            expect[10..12].copy_from_slice(&[0, 0]);
            assert_eq!(updated, full(&expect), "source {src:?}");
        }
    }
}
