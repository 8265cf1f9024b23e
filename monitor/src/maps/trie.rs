//! The LPM tries (policy sets, bans, bogons) from user space: their keys,
//! and reading or emptying one whole.

use aya::maps::{
    MapData,
    lpm_trie::{Key, LpmTrie},
};
use ipnet::IpNet;

use super::{MapError, op};

/// The address an LPM trie is keyed by (4 or 16 bytes).
pub(super) trait LpmAddr: aya::Pod {
    fn net(self, prefix_len: u32) -> Option<IpNet>;
}

impl LpmAddr for [u8; 4] {
    fn net(self, prefix_len: u32) -> Option<IpNet> {
        ipnet::Ipv4Net::new(self.into(), prefix_len as u8)
            .ok()
            .map(IpNet::V4)
    }
}

impl LpmAddr for [u8; 16] {
    fn net(self, prefix_len: u32) -> Option<IpNet> {
        ipnet::Ipv6Net::new(self.into(), prefix_len as u8)
            .ok()
            .map(IpNet::V6)
    }
}

/// Every prefix of `trie` (named `map` in errors) with its value.
pub(super) fn trie_entries<K: LpmAddr, V: aya::Pod>(
    trie: &LpmTrie<MapData, K, V>,
    map: &'static str,
) -> Result<Vec<(IpNet, V)>, MapError> {
    let mut out = Vec::new();
    for kv in trie.iter() {
        let (k, v) = kv.map_err(op(map, "iterating"))?;
        if let Some(net) = k.data().net(k.prefix_len()) {
            out.push((net, v));
        }
    }
    Ok(out)
}

/// Whether `trie` (named `map` in errors) holds no prefix.
pub(super) fn trie_is_empty<K: aya::Pod, V: aya::Pod>(
    trie: &LpmTrie<MapData, K, V>,
    map: &'static str,
) -> Result<bool, MapError> {
    match trie.keys().next() {
        None => Ok(true),
        Some(Ok(_)) => Ok(false),
        Some(Err(e)) => Err(op(map, "looking for a first key")(e)),
    }
}

/// Removes every prefix of `trie` (named `map` in errors).
pub(super) fn clear_trie<K: aya::Pod, V: aya::Pod>(
    trie: &mut LpmTrie<MapData, K, V>,
    map: &'static str,
) -> Result<(), MapError> {
    let keys: Vec<_> = trie.keys().filter_map(Result::ok).collect();
    for k in keys {
        trie.remove(&k).map_err(op(map, "clearing"))?;
    }
    Ok(())
}

pub(super) fn lpm_v4(net: &ipnet::Ipv4Net) -> Key<[u8; 4]> {
    Key::new(net.prefix_len() as u32, net.network().octets())
}

pub(super) fn lpm_v6(net: &ipnet::Ipv6Net) -> Key<[u8; 16]> {
    Key::new(net.prefix_len() as u32, net.network().octets())
}
