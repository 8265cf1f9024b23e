//! SYN cookies answered from XDP: the settings the daemon gives the
//! program, the verified-source key, and the pure work of turning a SYN
//! into its SYN-ACK (reading the SYN's options, the timestamp cookie that
//! carries them, the reply's headers and checksums). The cookie itself
//! (the sequence number) is the kernel's: the program asks
//! `bpf_tcp_raw_gen_syncookie_ipv4/ipv6` for it and the kernel's SYNPROXY
//! or `bpf_tcp_raw_check_syncookie_*` check the returning ACK with the same
//! secret, so nothing here needs to agree with anything but the kernel's
//! encoding of options in the timestamp (`cookie_init_timestamp` in
//! `net/ipv4/syncookies.c`), which the kernel's SYNPROXY decodes.
//!
//! Everything works on fixed-size arrays with bounded loops, so the same
//! code passes the verifier in the kernel and is tested on the host.

/// `CookieParams::mode`.
pub mod cookie_mode {
    /// No `[syn_cookies]`: the program never looks at the cookie path.
    pub const OFF: u32 = 0;
    /// Configured but not answering (mode `under_attack` while calm): SYNs
    /// go to the socket as usual. An ACK carrying a cookie the program
    /// issued while it was on still verifies its source.
    pub const WATCH: u32 = 1;
    /// Answering: SYNs to protected ports from unverified sources get a
    /// SYN-ACK from XDP; ACKs from unverified sources with an invalid
    /// cookie are dropped, unless the source was seen before the cookies
    /// turned on (`CookieParams::on_since_ns`: its connections from before
    /// carry no cookie).
    pub const ON: u32 = 2;
}

/// What the program needs to answer SYNs; part of `RuntimeConfig`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CookieParams {
    /// One of `cookie_mode::*`.
    pub mode: u32,
    /// A source that returned a valid cookie stays verified this long after
    /// its last packet to a protected port.
    pub verified_ttl_s: u32,
    /// MSS advertised in the SYN-ACK, IPv4 and IPv6.
    pub mss4: u16,
    pub mss6: u16,
    /// Window scale advertised (when the client offered one).
    pub wscale: u8,
    /// TTL / hop limit of the SYN-ACK.
    pub ttl: u8,
    pub _pad: [u8; 2],
    /// Coarse-clock ns the mode last turned `ON`: a source first seen
    /// before then may have connections open without a cookie, so its ACKs
    /// are not dropped for want of one.
    pub on_since_ns: u64,
}
const _: () = assert!(core::mem::size_of::<CookieParams>() == 24);

/// Indexes of the per-CPU cookie counters (`maps::COOKIE_EVENTS`).
pub mod cookie_event {
    /// SYN-ACKs sent from XDP.
    pub const SENT: u32 = 0;
    /// ACKs from unverified sources whose cookie the kernel accepted (the
    /// source became verified).
    pub const ACK_VALID: u32 = 1;
    /// ACKs from unverified sources whose cookie the kernel refused.
    pub const ACK_INVALID: u32 = 2;
    /// SYNs to protected ports passed to the stack because their source is
    /// verified.
    pub const VERIFIED_SYN: u32 = 3;
    /// SYNs the program meant to answer but could not (an empty jump slot,
    /// a header it could not copy, a cookie the kernel would not make, no
    /// room to grow the frame): dropped, and the client sends again. Passed
    /// to the socket instead, the SYN would cost the socket path and its
    /// ordinary SYN-ACK would bring back an ACK without a cookie, which
    /// the program drops anyway.
    pub const FAILED: u32 = 4;
    pub const COUNT: u32 = 5;
}

pub use crate::verified::{MAX_VERIFIED, VERIFIED_FILTER_WORDS, VerifiedKey};

/// Ports are kept as a bitmap of this many 64-bit words.
pub const PORT_WORDS: u32 = 1024;

/// The word and bit of `port` in the protected-port bitmap.
#[inline(always)]
pub const fn port_slot(port: u16) -> (u32, u64) {
    ((port >> 6) as u32, 1u64 << (port & 63))
}

/// Where the headers of the SYN being answered start, from the main
/// program to the SYN-ACK program it tail-calls (a per-CPU scratch slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynAt {
    /// Offset of the IP header (after Ethernet and VLAN tags).
    pub l3_off: u16,
    /// Offset of the TCP header (after IPv4 options or IPv6 extension
    /// headers).
    pub l4_off: u16,
    /// `types::family::IPV4` or `IPV6`.
    pub family: u8,
    pub _pad: [u8; 3],
    /// The main program's clock (`CLOCK_MONOTONIC_COARSE`) in ms, for the
    /// SYN-ACK's timestamp: a clock the SYN-ACK program need not read
    /// again (a helper call, about 20 ns where returns are slow).
    pub now_ms: u32,
    /// The SYN's options, parked here by the SYN-ACK program between
    /// reading them and using them (see `cookie::synack`).
    pub options: PackedOptions,
}

/// `SynOptions` in two words: `bits` holds the window scale (0xf: none)
/// in bits 0-3, SACK in bit 4 and "timestamps present" in bit 5.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackedOptions {
    pub bits: u32,
    pub tsval: u32,
}

impl PackedOptions {
    pub fn pack(o: &SynOptions) -> Self {
        let mut bits = match o.wscale {
            Some(w) => w as u32 & 0xf,
            None => 0xf,
        };
        if o.sack {
            bits |= 1 << 4;
        }
        if o.tsval.is_some() {
            bits |= 1 << 5;
        }
        Self {
            bits,
            tsval: o.tsval.unwrap_or(0),
        }
    }

    pub fn unpack(&self) -> SynOptions {
        SynOptions {
            wscale: (self.bits & 0xf != 0xf).then_some((self.bits & 0xf) as u8),
            sack: self.bits & 1 << 4 != 0,
            tsval: (self.bits & 1 << 5 != 0).then_some(self.tsval),
        }
    }
}

/// TCP option kinds and lengths (RFC 9293, 7323, 2018).
const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WSCALE: u8 = 3;
const OPT_SACK_PERM: u8 = 4;
const OPT_TIMESTAMP: u8 = 8;
/// The largest window scale (RFC 7323 2.3).
const MAX_WSCALE: u8 = 14;

/// Bits of the timestamp cookie (`net/ipv4/syncookies.c`): the low six
/// bits of the SYN-ACK's TSval carry the client's window scale (0xf: none),
/// SACK and ECN; the kernel reads them back from the ACK's TSecr.
pub const TS_OPT_WSCALE_MASK: u32 = 0xf;
pub const TS_OPT_SACK: u32 = 1 << 4;
pub const TS_OPT_ECN: u32 = 1 << 5;
const TSBITS: u32 = 6;

/// The options of a SYN, as far as the SYN-ACK depends on them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    /// The client's window scale, if it offered one.
    pub wscale: Option<u8>,
    pub sack: bool,
    /// The client's TSval, if it sent timestamps.
    pub tsval: Option<u32>,
}

/// Longest TCP option space.
pub const MAX_OPTIONS: usize = 40;

/// Reads the options a SYN carries in `opts`, whose bytes past the
/// header's option space must be zero (EOL), as a zero-filled buffer
/// loaded with exactly the option bytes is. An option with a length below
/// 2 or past the 40 bytes ends the walk, as the kernel's
/// `tcp_parse_options` does.
///
/// The walk visits every byte position in turn and skips the bytes an
/// option covers, rather than jumping by the option's length: the verifier
/// then sees only constant offsets and a skip count it needs not track
/// exactly, and prunes its paths; a jumping walk (or any comparison
/// against the options' length) keeps every path apart and ran past a
/// million instructions for 40 bytes.
pub fn parse_syn_options(opts: &[u8; MAX_OPTIONS]) -> SynOptions {
    if let Some(o) = linux_layout(opts) {
        return o;
    }
    let mut out = SynOptions::default();
    let mut skip = 0usize;
    for i in 0..MAX_OPTIONS {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        let kind = opts[i];
        if kind == OPT_EOL {
            break;
        }
        if kind == OPT_NOP {
            continue;
        }
        let size = byte(opts, i + 1) as usize;
        if size < 2 || i + size > MAX_OPTIONS {
            break;
        }
        match (kind, size) {
            (OPT_WSCALE, 3) => out.wscale = Some(byte(opts, i + 2).min(MAX_WSCALE)),
            (OPT_SACK_PERM, 2) => out.sack = true,
            (OPT_TIMESTAMP, 10) => {
                out.tsval = Some(u32::from_be_bytes([
                    byte(opts, i + 2),
                    byte(opts, i + 3),
                    byte(opts, i + 4),
                    byte(opts, i + 5),
                ]))
            }
            _ => {}
        }
        skip = size - 1;
    }
    out
}

/// The options exactly as Linux sends them in a SYN (MSS, SACK-permitted,
/// timestamps, NOP, window scale: 20 bytes), read at their fixed places
/// without the walk: most SYNs a server sees, and the walk is a fifth of
/// the cost of answering one (`cargo xtask bench`).
fn linux_layout(opts: &[u8; MAX_OPTIONS]) -> Option<SynOptions> {
    let fixed = opts[0] == OPT_MSS
        && opts[1] == 4
        && opts[4] == OPT_SACK_PERM
        && opts[5] == 2
        && opts[6] == OPT_TIMESTAMP
        && opts[7] == 10
        && opts[16] == OPT_NOP
        && opts[17] == OPT_WSCALE
        && opts[18] == 3
        && opts[20] == OPT_EOL;
    fixed.then(|| SynOptions {
        wscale: Some(opts[19].min(MAX_WSCALE)),
        sack: true,
        tsval: Some(u32::from_be_bytes([opts[8], opts[9], opts[10], opts[11]])),
    })
}

/// `opts[i]`, or 0 (EOL) past the end.
#[inline(always)]
fn byte(opts: &[u8; MAX_OPTIONS], i: usize) -> u8 {
    if i < MAX_OPTIONS { opts[i] } else { 0 }
}

/// The SYN-ACK's TSval: the time in ms with the options the kernel must
/// remember in its low bits (`cookie_init_timestamp`).
pub fn timestamp_cookie(now_ms: u32, opts: &SynOptions, ecn: bool) -> u32 {
    let mut options = match opts.wscale {
        Some(w) => w as u32 & TS_OPT_WSCALE_MASK,
        None => TS_OPT_WSCALE_MASK,
    };
    if opts.sack {
        options |= TS_OPT_SACK;
    }
    if ecn {
        options |= TS_OPT_ECN;
    }
    (now_ms & !((1 << TSBITS) - 1)) | options
}

/// TCP flag bits as they sit in the header's 13th and 14th bytes.
const FLAG_SYN: u8 = 0x02;
const FLAG_ACK: u8 = 0x10;
const FLAG_ECE: u8 = 0x40;

/// A TCP segment of up to 40 bytes (a header with up to 20 option bytes),
/// which is all a SYN-ACK needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub bytes: [u8; 40],
    pub len: usize,
}

/// What the SYN-ACK answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynFacts {
    /// The SYN's ports and sequence number, host order.
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    /// The SYN asked for ECN (ECE and CWR set).
    pub ecn: bool,
    pub options: SynOptions,
}

/// The SYN-ACK's TCP header and options, checksum zero (see
/// `tcp_checksum`). With timestamps the options are MSS, SACK-permitted
/// (if offered), timestamps and window scale (if offered); without, only
/// MSS, since only the timestamp can carry the others through the cookie.
/// The window is zero, as the kernel's SYNPROXY sends it: the server's
/// window reaches the client once the proxied handshake completes.
pub fn synack_segment(syn: &SynFacts, cookie: u32, mss: u16, wscale: u8, now_ms: u32) -> Segment {
    let mut b = [0u8; 40];
    b[0..2].copy_from_slice(&syn.dport.to_be_bytes());
    b[2..4].copy_from_slice(&syn.sport.to_be_bytes());
    b[4..8].copy_from_slice(&cookie.to_be_bytes());
    b[8..12].copy_from_slice(&syn.seq.wrapping_add(1).to_be_bytes());
    // ECN only where the timestamp can carry it to the kernel (it clears
    // ECN for a cookie without one, as its SYNPROXY does).
    let ecn = syn.ecn && syn.options.tsval.is_some();
    b[13] = FLAG_SYN | FLAG_ACK | if ecn { FLAG_ECE } else { 0 };
    b[20..24].copy_from_slice(&[OPT_MSS, 4, (mss >> 8) as u8, mss as u8]);
    let mut len = 24;
    if let Some(tsecr) = syn.options.tsval {
        let head = if syn.options.sack {
            [OPT_SACK_PERM, 2, OPT_TIMESTAMP, 10]
        } else {
            [OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10]
        };
        b[24..28].copy_from_slice(&head);
        let tsval = timestamp_cookie(now_ms, &syn.options, syn.ecn);
        b[28..32].copy_from_slice(&tsval.to_be_bytes());
        b[32..36].copy_from_slice(&tsecr.to_be_bytes());
        len = 36;
        if syn.options.wscale.is_some() {
            b[36..40].copy_from_slice(&[OPT_NOP, OPT_WSCALE, 3, wscale.min(MAX_WSCALE)]);
            len = 40;
        }
    }
    b[12] = ((len / 4) as u8) << 4;
    Segment { bytes: b, len }
}

/// One's-complement sum of `bytes[..len]` as 16-bit big-endian words
/// (an odd last byte padded with zero), added to `sum`; not folded.
pub fn csum_add(mut sum: u32, bytes: &[u8; 40], len: usize) -> u32 {
    for w in 0..20 {
        let i = w * 2;
        if i >= len {
            break;
        }
        let hi = bytes.get(i).copied().unwrap_or(0);
        let lo = if i + 1 < len {
            bytes.get(i + 1).copied().unwrap_or(0)
        } else {
            0
        };
        sum += u16::from_be_bytes([hi, lo]) as u32;
    }
    sum
}

/// Folds a 32-bit one's-complement sum to 16 bits and complements it.
pub fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Sum of 16-bit big-endian words of an address (given as in memory).
fn addr_sum(words: &[u32]) -> u32 {
    let mut s = 0u32;
    for w in words {
        let b = w.to_ne_bytes();
        s += u16::from_be_bytes([b[0], b[1]]) as u32 + u16::from_be_bytes([b[2], b[3]]) as u32;
    }
    s
}

/// The TCP checksum of `seg` between `src` and `dst` (network-order words
/// as in memory: one for IPv4, four for IPv6), over the pseudo-header.
pub fn tcp_checksum(seg: &Segment, src: &[u32], dst: &[u32]) -> u16 {
    let pseudo = addr_sum(src) + addr_sum(dst) + 6 + seg.len as u32;
    csum_fold(csum_add(pseudo, &seg.bytes, seg.len))
}

/// Writes the checksum into the segment.
pub fn seal(seg: &mut Segment, src: &[u32], dst: &[u32]) {
    seg.bytes[16] = 0;
    seg.bytes[17] = 0;
    let c = tcp_checksum(seg, src, dst);
    seg.bytes[16..18].copy_from_slice(&c.to_be_bytes());
}

/// A 20-byte IPv4 header from `src` to `dst` (network order, as in
/// memory) carrying `payload` bytes of TCP, DF set, checksum filled in.
pub fn ipv4_header(src: u32, dst: u32, payload: usize, ttl: u8) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
    h[6] = 0x40;
    h[8] = ttl;
    h[9] = 6;
    h[12..16].copy_from_slice(&src.to_ne_bytes());
    h[16..20].copy_from_slice(&dst.to_ne_bytes());
    let mut sum = 0u32;
    for w in 0..10 {
        sum += u16::from_be_bytes([h[w * 2], h[w * 2 + 1]]) as u32;
    }
    h[10..12].copy_from_slice(&csum_fold(sum).to_be_bytes());
    h
}

/// A 40-byte IPv6 header from `src` to `dst` carrying `payload` bytes of
/// TCP (next header 6: extension headers of the SYN are not echoed).
pub fn ipv6_header(src: &[u32; 4], dst: &[u32; 4], payload: usize, hop_limit: u8) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    h[6] = 6;
    h[7] = hop_limit;
    for i in 0..4 {
        h[8 + i * 4..12 + i * 4].copy_from_slice(&src[i].to_ne_bytes());
        h[24 + i * 4..28 + i * 4].copy_from_slice(&dst[i].to_ne_bytes());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(bytes: &[u8]) -> [u8; MAX_OPTIONS] {
        let mut o = [0u8; MAX_OPTIONS];
        o[..bytes.len()].copy_from_slice(bytes);
        o
    }

    #[test]
    fn reads_the_layouts_real_stacks_send() {
        // Linux: MSS, SACK-permitted, timestamps, NOP, window scale.
        let linux = opts(&[
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 1, 2, 0, 0, 0, 0, 1, 3, 3, 7,
        ]);
        assert_eq!(
            parse_syn_options(&linux),
            SynOptions {
                wscale: Some(7),
                sack: true,
                tsval: Some(258)
            }
        );
        // Windows: MSS, NOP, window scale, NOP, NOP, SACK-permitted.
        let windows = opts(&[2, 4, 5, 180, 1, 3, 3, 8, 1, 1, 4, 2]);
        assert_eq!(
            parse_syn_options(&windows),
            SynOptions {
                wscale: Some(8),
                sack: true,
                tsval: None
            }
        );
        assert_eq!(parse_syn_options(&opts(&[])), SynOptions::default());
    }

    #[test]
    fn the_linux_fast_path_reads_what_the_walk_reads() {
        let mut linux = opts(&[
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 1, 2, 0, 0, 0, 0, 1, 3, 3, 9,
        ]);
        let fast = linux_layout(&linux).expect("the Linux layout");
        // One more option after it: not the fixed layout; the walk reads it.
        linux[20] = OPT_NOP;
        assert!(linux_layout(&linux).is_none());
        assert_eq!(parse_syn_options(&linux), fast);
        linux[19] = 200;
        assert_eq!(parse_syn_options(&linux).wscale, Some(14));
    }

    #[test]
    fn a_broken_option_ends_the_walk_and_scales_are_capped() {
        // Length 1 is invalid: nothing after it is read.
        assert_eq!(
            parse_syn_options(&opts(&[4, 1, 4, 2])),
            SynOptions::default()
        );
        // An option running past the 40 bytes is not read.
        let mut o = [1u8; MAX_OPTIONS];
        o[36..40].copy_from_slice(&[8, 10, 1, 1]);
        assert_eq!(parse_syn_options(&o).tsval, None);
        assert_eq!(parse_syn_options(&opts(&[3, 3, 200])).wscale, Some(14));
    }

    #[test]
    fn the_timestamp_carries_what_the_kernel_decodes() {
        let o = SynOptions {
            wscale: Some(9),
            sack: true,
            tsval: Some(1),
        };
        let ts = timestamp_cookie(0x1234_5678, &o, true);
        assert_eq!(ts & 0x3f, 9 | TS_OPT_SACK | TS_OPT_ECN);
        assert_eq!(ts & !0x3f, 0x1234_5678 & !0x3f);
        let none = timestamp_cookie(0, &SynOptions::default(), false);
        assert_eq!(none, TS_OPT_WSCALE_MASK, "no window scale is 0xf");
        assert_eq!(PackedOptions::pack(&o).unpack(), o);
        assert_eq!(
            PackedOptions::pack(&SynOptions::default()).unpack(),
            SynOptions::default()
        );
    }

    #[test]
    fn the_synack_answers_the_syn_and_its_checksums_verify() {
        let syn = SynFacts {
            sport: 40000,
            dport: 443,
            seq: u32::MAX,
            ecn: false,
            options: SynOptions {
                wscale: Some(7),
                sack: false,
                tsval: Some(99),
            },
        };
        let (client, server) = (
            u32::from_ne_bytes([192, 0, 2, 1]),
            u32::from_ne_bytes([198, 51, 100, 1]),
        );
        let mut seg = synack_segment(&syn, 0xdead_beef, 1460, 9, 1000);
        assert_eq!(seg.len, 40);
        assert_eq!(&seg.bytes[0..4], &[1, 187, 0x9c, 0x40], "ports swapped");
        assert_eq!(&seg.bytes[4..8], &0xdead_beef_u32.to_be_bytes());
        assert_eq!(&seg.bytes[8..12], &[0, 0, 0, 0], "ack = seq + 1, wrapping");
        assert_eq!(seg.bytes[12] >> 4, 10);
        assert_eq!(seg.bytes[13], FLAG_SYN | FLAG_ACK);
        assert_eq!(&seg.bytes[24..28], &[OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10]);
        assert_eq!(&seg.bytes[36..40], &[OPT_NOP, OPT_WSCALE, 3, 9]);
        seal(&mut seg, &[server], &[client]);
        // A segment with its checksum sums to all ones.
        let pseudo = addr_sum(&[server]) + addr_sum(&[client]) + 6 + seg.len as u32;
        assert_eq!(csum_fold(csum_add(pseudo, &seg.bytes, seg.len)), 0);
        let ip = ipv4_header(server, client, seg.len, 64);
        let mut sum = 0u32;
        for w in 0..10 {
            sum += u16::from_be_bytes([ip[w * 2], ip[w * 2 + 1]]) as u32;
        }
        assert_eq!(csum_fold(sum), 0);
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 60);

        let bare = synack_segment(&SynFacts::default(), 1, 1460, 7, 0);
        assert_eq!(bare.len, 24, "without timestamps only the MSS is sent");
        let ecn = SynFacts {
            ecn: true,
            ..SynFacts::default()
        };
        assert_eq!(
            synack_segment(&ecn, 1, 1460, 7, 0).bytes[13],
            FLAG_SYN | FLAG_ACK,
            "no ECN without a timestamp to carry it"
        );
        let ecn_ts = SynFacts {
            options: SynOptions {
                tsval: Some(1),
                ..SynOptions::default()
            },
            ..ecn
        };
        assert_eq!(
            synack_segment(&ecn_ts, 1, 1460, 7, 0).bytes[13],
            FLAG_SYN | FLAG_ACK | FLAG_ECE
        );
    }
}
