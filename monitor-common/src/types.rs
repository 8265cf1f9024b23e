//! The `#[repr(C)]` values that cross the kernel/user boundary. No `bool`,
//! no implicit padding (explicit `_pad` fields), and a size assertion per
//! type so layout drift breaks the build rather than the verifier.
//!
//! Byte order: addresses are kept as they are on the wire (network order)
//! in `u32` words, so masking and comparing need no conversion; ports, VLAN
//! IDs and TCP flags are converted to host order by the parser.

use crate::bucket::BucketParams;

/// Address family tags, as stored in [`SourceKey::family`] and
/// [`PacketInfo::family`].
pub mod family {
    /// Not an IP packet (ARP, LLDP, ...).
    pub const OTHER: u8 = 0;
    pub const IPV4: u8 = 4;
    pub const IPV6: u8 = 6;
    /// An IP ethertype whose IP header could not be read.
    pub const MALFORMED: u8 = 0xff;
}

/// Fragment kinds, in [`PacketInfo::frag`].
pub mod frag {
    pub const NONE: u8 = 0;
    /// Offset 0, more fragments follow: L4 header present.
    pub const FIRST: u8 = 1;
    /// Offset > 0: no L4 header, counted and limited by source only.
    pub const LATER: u8 = 2;
    /// IPv6 fragment header with offset 0 and no more fragments (RFC 6946).
    pub const ATOMIC: u8 = 3;
}

/// Which upper-layer header the parser read, in [`PacketInfo::l4`].
pub mod l4 {
    pub const NONE: u8 = 0;
    pub const TCP: u8 = 1;
    pub const UDP: u8 = 2;
    pub const ICMP: u8 = 3;
    pub const ICMPV6: u8 = 4;
}

/// TCP flag bits in [`PacketInfo::tcp_flags`] (host order, 12-bit field).
pub mod tcp_flag {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const ACK: u16 = 0x010;
}

/// Rule flags, in [`RuleParams::flags`].
pub mod rule_flag {
    /// Count what would be dropped (verdict `Monitor`) and pass it.
    pub const MONITOR: u32 = 1;
}

/// Rule actions, in [`RuleParams::action`].
pub mod action {
    /// Never limited or banned.
    pub const ALLOW: u32 = 0;
    /// Always dropped.
    pub const DENY: u32 = 1;
    /// Limited by the rule's own buckets.
    pub const LIMIT: u32 = 2;
}

/// Key of the per-source map: the source address masked to the configured
/// prefix (an IPv6 client owns a whole /64, so /64 is the default there).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceKey {
    /// Network order; IPv4 uses `addr[0]` and leaves the rest zero.
    pub addr: [u32; 4],
    /// `family::IPV4` or `family::IPV6`.
    pub family: u32,
}
const _: () = assert!(core::mem::size_of::<SourceKey>() == 20);

impl SourceKey {
    /// Equality word by word: the kernel's comparison (a derived `==` on
    /// arrays may become a `memcmp` call, which BPF does not have).
    #[inline(always)]
    pub fn same(&self, other: &SourceKey) -> bool {
        self.family == other.family
            && self.addr[0] == other.addr[0]
            && self.addr[1] == other.addr[1]
            && self.addr[2] == other.addr[2]
            && self.addr[3] == other.addr[3]
    }

    /// An index of `bits` bits for this key, for the kernel's hashed
    /// arrays (`maps::probation_slot`, `prefix::slot_of`): Fibonacci
    /// hashing of its folded words, mixed with `seed` (0: unseeded).
    #[inline(always)]
    pub fn slot(&self, seed: u32, bits: u32) -> u32 {
        let folded = self.addr[0].rotate_left(3)
            ^ self.addr[1].rotate_left(11)
            ^ self.addr[2].rotate_left(17)
            ^ self.addr[3].rotate_left(23)
            ^ self.family
            ^ seed;
        ((folded as u64 ^ ((seed as u64) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits))
            as u32
    }

    #[inline(always)]
    pub fn v4(addr: u32, mask: u32) -> Self {
        Self {
            addr: [addr & mask, 0, 0, 0],
            family: family::IPV4 as u32,
        }
    }

    #[inline(always)]
    pub fn v6(addr: &[u32; 4], mask: &[u32; 4]) -> Self {
        Self {
            addr: [
                addr[0] & mask[0],
                addr[1] & mask[1],
                addr[2] & mask[2],
                addr[3] & mask[3],
            ],
            family: family::IPV6 as u32,
        }
    }
}

/// A source's whole record as user space sees it: two GCRA buckets, the
/// cached policy decision, and the flow record. The kernel keeps it in two
/// parts, `SourceFlow` (what the daemon sweeps) and `SourceControl`, in
/// the same slot of two arrays; written by the kernel (atomically where
/// CPUs race), read by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceState {
    /// Packet bucket's theoretical arrival time, in ticks (see `bucket`).
    pub pkt_tat: u64,
    /// Byte bucket's theoretical arrival time, in ticks.
    pub byte_tat: u64,
    /// Packets seen from this source, whatever the verdict.
    pub packets: u64,
    /// Bytes seen (frame length from the Ethernet header on).
    pub bytes: u64,
    /// Packets dropped (deny, limit, ban, malformed-drop).
    pub dropped: u64,
    /// TCP segments with SYN set and ACK clear.
    pub syns: u64,
    /// TCP segments with ACK set and SYN clear: completed handshakes and
    /// the data after them. A plain add: exact without contention, may
    /// lose a count when CPUs race (it only feeds the SYN/ACK ratio).
    pub acks: u64,
    /// Destination-port sketch of the current window: bit
    /// `hash(port) % 64` per TCP/UDP port seen (see `detect::ports_from_sketch`).
    pub port_sketch: u64,
    /// `CLOCK_MONOTONIC` ns (tick-grained) of the first and latest packet.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Cached from the ban map at the last resolve: banned while
    /// `now < ban_until_ns`; 0 when not banned.
    pub ban_until_ns: u64,
    /// Policy generation the cached decision was resolved at; when the
    /// daemon bumps `RuntimeConfig::generation`, the next packet re-resolves.
    pub generation: u32,
    /// Index into the rules array of the rule that applies (0 = default).
    pub rule_slot: u32,
    /// `RuntimeConfig::port_window` the sketch belongs to.
    pub port_window: u32,
    /// `RuntimeConfig::hot_window` in which this source was last reported
    /// to the daemon as dropping (one report per window, not per packet).
    pub hot_window: u32,
}
const _: () = assert!(core::mem::size_of::<SourceState>() == 104);

/// The part of a source's record the daemon sweeps (`maps::SOURCE_FLOWS`,
/// mmap-ed, one cache line per source): who it is and its flow counters.
/// `key.family == 0` marks a free slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceFlow {
    pub key: SourceKey,
    /// `RuntimeConfig::port_window` the sketch belongs to.
    pub port_window: u32,
    /// Packets seen from this source, whatever the verdict.
    pub packets: u64,
    /// Bytes seen (frame length from the Ethernet header on).
    pub bytes: u64,
    /// Packets dropped (deny, limit, ban, malformed-drop).
    pub dropped: u64,
    /// TCP segments with SYN set and ACK clear.
    pub syns: u64,
    /// Destination-port sketch of the current window: bit
    /// `hash(port) % 64` per TCP/UDP port seen (see `detect::ports_from_sketch`).
    pub port_sketch: u64,
}
const _: () = assert!(core::mem::size_of::<SourceFlow>() == 64);

impl SourceFlow {
    /// Whether the slot holds a source.
    #[inline(always)]
    pub fn in_use(&self) -> bool {
        self.key.family != 0
    }
}

/// The rest of a source's record (`maps::SOURCE_CONTROL`, same slot):
/// its buckets, cached policy decision and times. Read on every packet by
/// the kernel; by the daemon only for single sources.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceControl {
    pub pkt_tat: u64,
    pub byte_tat: u64,
    pub acks: u64,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub ban_until_ns: u64,
    pub generation: u32,
    pub rule_slot: u32,
    pub hot_window: u32,
    /// `slot_flag::*`.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<SourceControl>() == 64);

impl SourceState {
    /// The whole record of one source from its two parts.
    pub fn from_parts(flow: &SourceFlow, ctl: &SourceControl) -> Self {
        Self {
            pkt_tat: ctl.pkt_tat,
            byte_tat: ctl.byte_tat,
            packets: flow.packets,
            bytes: flow.bytes,
            dropped: flow.dropped,
            syns: flow.syns,
            acks: ctl.acks,
            port_sketch: flow.port_sketch,
            first_seen_ns: ctl.first_seen_ns,
            last_seen_ns: ctl.last_seen_ns,
            ban_until_ns: ctl.ban_until_ns,
            generation: ctl.generation,
            rule_slot: ctl.rule_slot,
            port_window: flow.port_window,
            hot_window: ctl.hot_window,
        }
    }

    /// The two parts of `key`'s record holding this state (flags clear).
    pub fn into_parts(self, key: SourceKey) -> (SourceFlow, SourceControl) {
        (
            SourceFlow {
                key,
                port_window: self.port_window,
                packets: self.packets,
                bytes: self.bytes,
                dropped: self.dropped,
                syns: self.syns,
                port_sketch: self.port_sketch,
            },
            SourceControl {
                pkt_tat: self.pkt_tat,
                byte_tat: self.byte_tat,
                acks: self.acks,
                first_seen_ns: self.first_seen_ns,
                last_seen_ns: self.last_seen_ns,
                ban_until_ns: self.ban_until_ns,
                generation: self.generation,
                rule_slot: self.rule_slot,
                hot_window: self.hot_window,
                flags: 0,
            },
        )
    }
}

/// Bits of `SourceControl::flags`.
pub mod slot_flag {
    /// Set by every packet of the slot's source, cleared as the clock hand
    /// passes: a source referenced since the last pass keeps its slot.
    pub const REFERENCED: u32 = 1;
}

/// The source table's clock (`maps::SOURCE_CLOCK`): where the hand is and
/// how many slots it sweeps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotClock {
    /// Slots the hand has passed; the next claim looks from
    /// `hand % capacity` on. A claim moves it past the slot it takes with
    /// one compare-and-swap (so it never goes back, and a slot at or past
    /// it has not been claimed since the table was created, until its
    /// first lap ends).
    pub hand: u64,
    /// Slots in the source table, written by the loader; 0 (not yet set)
    /// means no source is tracked.
    pub capacity: u64,
}
const _: () = assert!(core::mem::size_of::<SlotClock>() == 16);

/// One rule's decision and buckets; slot 0 of the rules array is the
/// default limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleParams {
    /// One of `action::*`.
    pub action: u32,
    /// `rule_flag::*`.
    pub flags: u32,
    pub pkt: BucketParams,
    pub byte: BucketParams,
}
const _: () = assert!(core::mem::size_of::<RuleParams>() == 40);

impl RuleParams {
    /// What a packet the rule's checks refuse gets: `Drop`, or `Monitor`
    /// while the rule only watches (it counts and passes).
    #[inline(always)]
    pub fn refusal(&self) -> crate::reason::Verdict {
        if self.flags & rule_flag::MONITOR != 0 {
            crate::reason::Verdict::Monitor
        } else {
            crate::reason::Verdict::Drop
        }
    }
}

/// The one-slot runtime settings array, written only by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Changed by the daemon after every change to rules or bans; sources
    /// whose cached generation differs re-resolve their rule and ban. The
    /// low bit selects the active policy set (see `maps::POLICY_V4`): a
    /// policy swap adds 1, a ban change adds 2.
    pub generation: u32,
    /// XDP action for malformed packets that survived the source limits:
    /// `Verdict::Pass as u32` or `Verdict::Drop as u32`.
    pub malformed_verdict: u32,
    /// Mask applied to IPv4 sources to form the source key (network order).
    pub v4_mask: u32,
    /// The daemon's scan window number: a source's destination-port
    /// sketch starts over when its recorded window differs.
    pub port_window: u32,
    /// Mask applied to IPv6 sources (network order, four words).
    pub v6_mask: [u32; 4],
    /// `CLOCK_MONOTONIC` ns the bucket clock counts from (see
    /// `bucket`): set when the maps are created.
    pub clock_base_ns: u64,
    /// The daemon's detection interval number: a source over its limit is
    /// put in the hot list once per window.
    pub hot_window: u32,
    /// While the SYN limit is in force: sources first seen before this
    /// many seconds after `clock_base_ns` that have completed a handshake
    /// (sent a bare ACK) are exempt from it, so clients known before a
    /// spoofed flood began keep connecting. 0: nobody is exempt (and what
    /// an older daemon's maps hold, which was padding).
    pub syn_known_before_s: u32,
    /// Host-wide limit on new TCP connections (SYN without ACK), set by
    /// the daemon during a SYN flood from spoofed sources; unlimited
    /// (interval 0) otherwise. Its state is the one word in `SYN_BUCKET`.
    pub syn_limit: BucketParams,
    /// SYN cookies answered from XDP (`syncookie`); mode `OFF` unless
    /// `[syn_cookies]` is configured.
    pub cookie: crate::syncookie::CookieParams,
    /// Coarse-clock ns the storm the daemon sees began, 0 when there is
    /// none. During a storm a never-seen source's first packet claims no
    /// slot (`maps::PROBATION`), and sources first seen since it began that
    /// are not verified share their prefix's `unproven` budget (`prefix`).
    pub storm_since_ns: u64,
    /// The prefix budgets (`prefix`).
    pub prefix: crate::prefix::PrefixParams,
    /// The CIDR tries the daemon knows to be empty (`tries`): a packet
    /// judged without a slot skips their lookups. 0: none known.
    pub empty_tries: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<RuntimeConfig>() == 224);

/// The sketch bit of destination port `port`: Fibonacci hashing spreads
/// neighbouring ports (a sequential scan) over the 64 bits.
#[inline(always)]
pub const fn port_bit(port: u16) -> u64 {
    1u64 << ((port as u32).wrapping_mul(0x9E37_79B1) >> 26)
}

/// Network-order mask of `prefix_len` bits over `N` 32-bit words, as it sits
/// in memory (so `addr & mask` works whatever the host's byte order).
pub fn prefix_mask<const N: usize>(prefix_len: u8) -> [u32; N] {
    let mut out = [0u32; N];
    let mut left = prefix_len as u32;
    for w in out.iter_mut() {
        let bits = left.min(32);
        let host = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        *w = u32::from_ne_bytes(host.to_be_bytes());
        left -= bits;
    }
    out
}

impl RuntimeConfig {
    /// Settings for the given generation, source prefixes and malformed
    /// verdict. Prefix lengths are clamped to the family's width.
    pub fn new(
        generation: u32,
        v4_prefix: u8,
        v6_prefix: u8,
        malformed_verdict: u32,
        clock_base_ns: u64,
    ) -> Self {
        Self {
            clock_base_ns,
            generation,
            malformed_verdict,
            v4_mask: prefix_mask::<1>(v4_prefix.min(32))[0],
            port_window: 0,
            v6_mask: prefix_mask::<4>(v6_prefix.min(128)),
            hot_window: 0,
            syn_known_before_s: 0,
            syn_limit: BucketParams::UNLIMITED,
            cookie: crate::syncookie::CookieParams::default(),
            storm_since_ns: 0,
            prefix: crate::prefix::PrefixParams::default(),
            empty_tries: 0,
            _pad: 0,
        }
    }
}

/// A packet and byte count.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counter>() == 16);

/// What the parser read from one packet (katran's `packet_description`).
/// The parser fills it and does no map lookups.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// Source and destination, network order; IPv4 in word 0.
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// VLAN IDs (low 12 bits of the TCI), outer first, host order.
    pub vlan: [u16; 2],
    /// Host order; valid when `l4` is TCP or UDP.
    pub sport: u16,
    pub dport: u16,
    /// The TCP header's 12-bit flags field, host order; valid for TCP.
    pub tcp_flags: u16,
    pub vlan_count: u8,
    /// One of `family::*`.
    pub family: u8,
    /// Upper-layer protocol number (after IPv6 extension headers).
    pub proto: u8,
    /// One of `frag::*`.
    pub frag: u8,
    /// One of `l4::*`: the upper-layer header that was read.
    pub l4: u8,
    /// `reason::Malformed` as u8; 0 when the packet parsed fully.
    pub malformed: u8,
    /// Offsets of the IP header and of the upper-layer header from the
    /// start of the frame (valid as far as the parse got): the SYN-cookie
    /// path reads the headers again from there.
    pub l3_off: u16,
    pub l4_off: u16,
}
const _: () = assert!(core::mem::size_of::<PacketInfo>() == 52);

impl PacketInfo {
    /// Whether the source address was read (so the packet can be limited
    /// by its source even if a later header is malformed).
    #[inline(always)]
    pub fn has_source(&self) -> bool {
        self.family == family::IPV4 || self.family == family::IPV6
    }
}

/// What the replay program records for the packet it just judged.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayRecord {
    pub info: PacketInfo,
    /// `Verdict` as u32.
    pub verdict: u32,
    /// `Reason` as u32.
    pub reason: u32,
    /// Frame length the program saw.
    pub len: u32,
    /// 1 once the program wrote this record (lets the reader tell a record
    /// from an untouched slot).
    pub written: u32,
}
const _: () = assert!(core::mem::size_of::<ReplayRecord>() == 68);

#[cfg(test)]
mod tests {
    use super::*;

    fn be(words: &[u32]) -> std::vec::Vec<u8> {
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    /// Every field of a source's state lands in one of its two records and
    /// comes back from them.
    #[test]
    fn source_state_splits_and_joins_losslessly() {
        let state = SourceState {
            pkt_tat: 1,
            byte_tat: 2,
            packets: 3,
            bytes: 4,
            dropped: 5,
            syns: 6,
            acks: 7,
            port_sketch: 8,
            first_seen_ns: 9,
            last_seen_ns: 10,
            ban_until_ns: 11,
            generation: 12,
            rule_slot: 13,
            port_window: 14,
            hot_window: 15,
        };
        let key = SourceKey::v4(0x0200_00c0, u32::MAX);
        let (flow, ctl) = state.into_parts(key);
        assert_eq!(flow.key, key);
        assert!(flow.in_use());
        assert_eq!(ctl.flags, 0);
        assert_eq!(SourceState::from_parts(&flow, &ctl), state);
    }

    #[test]
    fn masks_are_network_order_prefixes() {
        assert_eq!(be(&prefix_mask::<1>(24)), [255, 255, 255, 0]);
        assert_eq!(be(&prefix_mask::<1>(0)), [0, 0, 0, 0]);
        assert_eq!(be(&prefix_mask::<1>(32)), [255; 4]);
        assert_eq!(be(&prefix_mask::<1>(9)), [255, 128, 0, 0]);
        let m = be(&prefix_mask::<4>(64));
        assert_eq!(&m[..8], &[255; 8]);
        assert_eq!(&m[8..], &[0; 8]);
        assert_eq!(be(&prefix_mask::<4>(128)), [255; 16]);
        let m = be(&prefix_mask::<4>(33));
        assert_eq!(&m[..5], &[255, 255, 255, 255, 128]);
    }

    #[test]
    fn source_key_masks_the_address() {
        let cfg = RuntimeConfig::new(1, 24, 64, 1, 0);
        let a = u32::from_ne_bytes([192, 0, 2, 77]);
        let k = SourceKey::v4(a, cfg.v4_mask);
        assert_eq!(k.addr[0].to_ne_bytes(), [192, 0, 2, 0]);
        let mut v6 = [0u32; 4];
        let bytes: [u8; 16] = "2001:db8:1:2:aaaa:bbbb:cccc:dddd"
            .parse::<core::net::Ipv6Addr>()
            .unwrap()
            .octets();
        for (i, w) in v6.iter_mut().enumerate() {
            *w = u32::from_ne_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap());
        }
        let k = SourceKey::v6(&v6, &cfg.v6_mask);
        assert_eq!(be(&k.addr)[..8], bytes[..8]);
        assert_eq!(be(&k.addr)[8..], [0; 8]);
    }
}
