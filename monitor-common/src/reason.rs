//! Why the program returned what it did. Declared once, here; the kernel
//! indexes its counters with these numbers and the daemon names them.

/// The verdict-deciding reason for one packet. Every packet gets exactly
/// one, so the counters indexed by reason add up to all traffic.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Within its limit (a `limit` rule or the default limit).
    Pass = 0,
    /// Matched an `allow` rule: never limited or banned.
    Allow = 1,
    /// Matched a `deny` rule.
    Deny = 2,
    /// Over its packet-rate bucket.
    RateLimitedPackets = 3,
    /// Over its byte-rate bucket.
    RateLimitedBytes = 4,
    /// The source is banned and the ban has not expired.
    Banned = 5,
    /// A header could not be read; the configured malformed verdict applies
    /// (after source limits, where the source address was read).
    Malformed = 6,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): always passed.
    NonIp = 7,
    /// Passed without per-source state because the source table took
    /// nothing for a new source this time (two CPUs claiming at the same
    /// instant, or a full index; `source_event::INSERT_FAILED`), or, during
    /// a spoofed-source storm, because it was the source's first packet
    /// (`source_event::PROBATION`). Its ban and a deny rule still applied;
    /// the next packet claims again.
    Untracked = 8,
    /// A TCP SYN over the host-wide SYN limit the daemon sets while it sees
    /// a SYN flood from spoofed sources (which per-source bans cannot stop).
    SynLimited = 9,
    /// A SYN to a port with SYN cookies on, from a source not yet
    /// verified: answered from XDP with a cookie SYN-ACK (verdict `Tx`),
    /// so it never reaches the socket or claims a source slot.
    SynCookie = 10,
    /// A TCP ACK to a port with SYN cookies on, from a source not yet
    /// verified, whose cookie the kernel refused: a forged or stale
    /// handshake.
    CookieInvalid = 11,
    /// Within its source's own limits, but over its prefix's budget (what
    /// the sources of one prefix pass together; during a storm, what its
    /// unproven sources pass together: `prefix`).
    PrefixLimited = 12,
}

impl Reason {
    pub const COUNT: usize = 13;
    pub const ALL: [Reason; Self::COUNT] = [
        Reason::Pass,
        Reason::Allow,
        Reason::Deny,
        Reason::RateLimitedPackets,
        Reason::RateLimitedBytes,
        Reason::Banned,
        Reason::Malformed,
        Reason::NonIp,
        Reason::Untracked,
        Reason::SynLimited,
        Reason::SynCookie,
        Reason::CookieInvalid,
        Reason::PrefixLimited,
    ];

    /// The label used in metrics, logs and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Pass => "pass",
            Reason::Allow => "allow",
            Reason::Deny => "deny",
            Reason::RateLimitedPackets => "rate_limited_packets",
            Reason::RateLimitedBytes => "rate_limited_bytes",
            Reason::Banned => "banned",
            Reason::Malformed => "malformed",
            Reason::NonIp => "non_ip",
            Reason::Untracked => "untracked",
            Reason::SynLimited => "syn_limited",
            Reason::SynCookie => "syn_cookie",
            Reason::CookieInvalid => "cookie_invalid",
            Reason::PrefixLimited => "prefix_limited",
        }
    }

    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
}

/// What the program did. The counters are indexed by reason *and*
/// verdict, because the malformed verdict is configurable at run time and
/// a rule in monitor mode passes what it would have dropped.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Pass = 0,
    Drop = 1,
    /// Would have been dropped for its reason, but the rule (or the
    /// default limit) is in monitor mode: passed, and counted as such.
    Monitor = 2,
    /// Answered from XDP (a SYN cookie's SYN-ACK sent back out of the
    /// interface it came in on).
    Tx = 3,
}

impl Verdict {
    pub const COUNT: usize = 4;
    pub const ALL: [Verdict; Self::COUNT] =
        [Verdict::Pass, Verdict::Drop, Verdict::Monitor, Verdict::Tx];

    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }

    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
            Verdict::Monitor => "monitor",
            Verdict::Tx => "tx",
        }
    }

    /// The XDP action for this verdict.
    pub const fn xdp_action(self) -> u32 {
        match self {
            Verdict::Pass | Verdict::Monitor => 2, // XDP_PASS
            Verdict::Drop => 1,                    // XDP_DROP
            Verdict::Tx => 3,                      // XDP_TX
        }
    }
}

/// Interface slots the counters are kept for; slot 0 is "not attached by
/// us" (test runs, interfaces without a slot).
pub const MAX_IFACES: usize = 16;

/// Index into the global counter array: by interface slot, reason and
/// verdict.
#[inline(always)]
pub const fn counter_index(iface_slot: u32, reason: Reason, verdict: Verdict) -> u32 {
    (iface_slot * Reason::COUNT as u32 + reason as u32) * Verdict::COUNT as u32 + verdict as u32
}

/// Size of the global counter array.
pub const COUNTER_SLOTS: u32 = (MAX_IFACES * Reason::COUNT * Verdict::COUNT) as u32;

/// Which header could not be read, for malformed packets. Kept apart from
/// [`Reason`] so the reason set stays small; counted in its own array.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Malformed {
    None = 0,
    /// Shorter than an Ethernet header.
    Ethernet = 1,
    /// A VLAN tag cut short.
    Vlan = 2,
    /// More VLAN tags than `VLAN_MAX_DEPTH`.
    VlanDepth = 3,
    /// IPv4 header cut short, wrong version, IHL < 5, options past the end,
    /// or a total length shorter than the header (all but the options
    /// past the end leave no source: not an IPv4 header, as tshark reads
    /// it).
    Ipv4 = 4,
    /// IPv6 fixed header cut short or wrong version.
    Ipv6 = 5,
    /// An IPv6 extension header cut short (by the frame or by the payload
    /// length), or a segment routing header with more segments than it
    /// holds.
    Ipv6Ext = 6,
    /// More IPv6 extension headers than `IPV6_EXT_MAX_CHAIN`.
    Ipv6ExtChain = 7,
    /// TCP header cut short (the ports may have been read) or data
    /// offset < 5: no flags read.
    Tcp = 8,
    /// UDP header cut short.
    Udp = 9,
    /// ICMP or ICMPv6 header cut short.
    Icmp = 10,
    /// TCP options past the end of the packet: the fixed header, flags
    /// included, was read.
    TcpOptions = 11,
}

impl Malformed {
    pub const COUNT: usize = 12;
    pub const ALL: [Malformed; Self::COUNT] = [
        Malformed::None,
        Malformed::Ethernet,
        Malformed::Vlan,
        Malformed::VlanDepth,
        Malformed::Ipv4,
        Malformed::Ipv6,
        Malformed::Ipv6Ext,
        Malformed::Ipv6ExtChain,
        Malformed::Tcp,
        Malformed::Udp,
        Malformed::Icmp,
        Malformed::TcpOptions,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Malformed::None => "none",
            Malformed::Ethernet => "ethernet",
            Malformed::Vlan => "vlan",
            Malformed::VlanDepth => "vlan_depth",
            Malformed::Ipv4 => "ipv4",
            Malformed::Ipv6 => "ipv6",
            Malformed::Ipv6Ext => "ipv6_ext",
            Malformed::Ipv6ExtChain => "ipv6_ext_chain",
            Malformed::Tcp => "tcp",
            Malformed::Udp => "udp",
            Malformed::Icmp => "icmp",
            Malformed::TcpOptions => "tcp_options",
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_in_discriminant_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(Reason::from_u32(i as u32), Some(*r));
        }
        for (i, m) in Malformed::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
        }
        assert_eq!(Reason::from_u32(Reason::COUNT as u32), None);
    }

    #[test]
    fn counter_indices_are_dense_and_distinct() {
        let mut seen = [false; COUNTER_SLOTS as usize];
        for slot in 0..MAX_IFACES as u32 {
            for r in Reason::ALL {
                for v in Verdict::ALL {
                    let i = counter_index(slot, r, v) as usize;
                    assert!(!seen[i]);
                    seen[i] = true;
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
    }
}
