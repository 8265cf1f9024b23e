//! The Ethernet header and the 802.1Q/802.1ad VLAN tags after it.

use monitor_common::{
    reason::Malformed,
    types::{PacketInfo, family},
};

use super::{Cursor, malformed};

/// 802.1Q and 802.1ad tags: an outer service tag and an inner customer tag
/// (QinQ) is as deep as real networks go; a third tag is malformed.
pub const VLAN_MAX_DEPTH: usize = 2;

/// Ethertypes, host order (the header carries them in network order).
pub(super) const ETH_P_IP: u16 = 0x0800;
pub(super) const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

#[repr(C)]
struct EthHdr {
    dst: [u8; 6],
    src: [u8; 6],
    /// Network order.
    proto: u16,
}

#[repr(C)]
struct VlanHdr {
    /// PCP(3) DEI(1) VID(12), network order.
    tci: u16,
    /// Encapsulated ethertype, network order.
    proto: u16,
}

/// Ethernet and VLAN tags, up to `VLAN_MAX_DEPTH`; the VLAN IDs go in
/// `info.vlan`. Returns the inner ethertype (host order), or `None` with
/// `info` marked malformed. Non-IP frames set family OTHER (in `parse`).
#[inline(always)]
pub(super) fn parse_ethernet(c: &mut Cursor, info: &mut PacketInfo) -> Option<u16> {
    let Some(eth) = c.take::<EthHdr>() else {
        info.family = family::MALFORMED;
        return malformed(info, Malformed::Ethernet);
    };
    let mut proto = u16::from_be(unsafe { (*eth).proto });
    for i in 0..VLAN_MAX_DEPTH {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let Some(tag) = c.take::<VlanHdr>() else {
            info.family = family::MALFORMED;
            return malformed(info, Malformed::Vlan);
        };
        let tci = u16::from_be(unsafe { (*tag).tci });
        info.vlan[i] = tci & 0x0fff;
        info.vlan_count = (i + 1) as u8;
        proto = u16::from_be(unsafe { (*tag).proto });
    }
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        info.family = family::MALFORMED;
        return malformed(info, Malformed::VlanDepth);
    }
    Some(proto)
}

/// Ethernet and VLAN tags as `parse_ethernet` reads them, recording
/// nothing: the inner ethertype (host order), or `None` where
/// `parse_ethernet` would mark the frame malformed. For the drop cache's
/// fast path (`parse::network_header`).
#[inline(always)]
pub(super) fn skip_ethernet(c: &mut Cursor) -> Option<u16> {
    let eth = c.take::<EthHdr>()?;
    let mut proto = u16::from_be(unsafe { (*eth).proto });
    for _ in 0..VLAN_MAX_DEPTH {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let tag = c.take::<VlanHdr>()?;
        proto = u16::from_be(unsafe { (*tag).proto });
    }
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        return None;
    }
    Some(proto)
}
