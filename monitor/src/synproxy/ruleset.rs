//! The nftables text for the SYNPROXY table, rendered from the config.
//! Checked against `nft` 1.0.6 in a throwaway network namespace.

use crate::config::SynCookies;

/// The table's name (family `inet`: IPv4 and IPv6 in one).
pub const TABLE: &str = "tollgate_synproxy";

/// One `nft -f` transaction that makes the table exactly what `c` asks
/// for: declaring the table first makes the `delete` succeed whether or
/// not it existed, so the old rules go and the new ones come in one
/// atomic step.
///
/// - `input`: the ACKs conntrack finds invalid go to `synproxy`, which
///   checks the ACK's cookie and opens the connection to the socket; what
///   it leaves invalid is dropped. A cookie ACK (the XDP program answered
///   its SYN) is invalid with `nf_conntrack_tcp_loose = 0`: no entry and
///   no mid-stream pickup. The MSS is per family.
///
/// SYNs are tracked as usual and go straight to the socket: while the
/// cookies are on, the only SYNs that reach the stack are verified
/// sources' (the XDP program answers the rest), and they need no proxy.
/// Proxying them too (the usual recipe notracks every SYN) would put every
/// connection through SYNPROXY's sequence and timestamp translation,
/// which on kernel 6.18 loses about 1 handshake in 100 when the
/// millisecond clock ticks mid-handshake (measured: 6-8 of 600 with
/// timestamps on, none without), and would keep conntrack from seeing a
/// new SYN reopen a 4-tuple still in TIME_WAIT.
pub fn install_text(c: &SynCookies) -> String {
    let ports = c
        .ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let w = c.wscale;
    format!(
        "table inet {TABLE}
delete table inet {TABLE}
table inet {TABLE} {{
  chain input {{
    type filter hook input priority filter; policy accept;
    meta nfproto ipv4 tcp dport {{ {ports} }} ct state invalid,untracked synproxy mss {mss4} wscale {w} timestamp sack-perm
    meta nfproto ipv6 tcp dport {{ {ports} }} ct state invalid,untracked synproxy mss {mss6} wscale {w} timestamp sack-perm
    tcp dport {{ {ports} }} ct state invalid drop
  }}
}}
",
        mss4 = c.mss4,
        mss6 = c.mss6,
    )
}

/// One `nft -f` transaction that deletes the table, and succeeds when
/// there is none.
pub fn remove_text() -> String {
    format!("table inet {TABLE}\ndelete table inet {TABLE}\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::CookieMode;

    #[test]
    fn renders_the_ports_and_options_per_family() {
        let c = SynCookies {
            ports: vec![443, 80],
            mode: CookieMode::UnderAttack,
            mss4: 1460,
            mss6: 1440,
            wscale: 7,
            verified_ttl: Duration::from_secs(3600),
            ttl: 64,
        };
        assert_eq!(
            install_text(&c),
            "table inet tollgate_synproxy
delete table inet tollgate_synproxy
table inet tollgate_synproxy {
  chain input {
    type filter hook input priority filter; policy accept;
    meta nfproto ipv4 tcp dport { 443, 80 } ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm
    meta nfproto ipv6 tcp dport { 443, 80 } ct state invalid,untracked synproxy mss 1440 wscale 7 timestamp sack-perm
    tcp dport { 443, 80 } ct state invalid drop
  }
}
"
        );
    }

    #[test]
    fn removal_tolerates_a_missing_table() {
        assert_eq!(
            remove_text(),
            "table inet tollgate_synproxy\ndelete table inet tollgate_synproxy\n"
        );
    }
}
