//! The management guard: the operator's own networks (`management.cidrs`)
//! can never be denied, limited or banned, whoever asks (the config, the
//! CLI, a detector, the state file), so no mistake locks them out.

use ipnet::IpNet;

use super::{Action, Rule};

/// Refuses a rule that would deny or limit (part of) a management CIDR.
pub fn guard_rule(management: &[IpNet], rule: &Rule) -> Result<(), String> {
    let verb = match rule.action {
        Action::Allow => return Ok(()),
        Action::Deny => "deny",
        Action::Limit(_) => "limit",
    };
    for m in management {
        if m.contains(&rule.net) {
            return Err(format!(
                "{} is inside the management network {m} (the operator's own access), which is always allowed, so a rule cannot {verb} it; to {verb} {}, take it out of [management] in the config first",
                rule.net, rule.net
            ));
        }
        if rule.net.contains(m) {
            return Err(format!(
                "{} would {verb} the management network {m} (the operator's own access); management CIDRs are always allowed, so narrow the rule to leave {m} out",
                rule.net
            ));
        }
    }
    Ok(())
}

/// Refuses a ban that covers (part of) a management CIDR.
pub fn guard_ban(management: &[IpNet], net: &IpNet) -> Result<(), String> {
    for m in management {
        if m.contains(net) {
            return Err(format!(
                "{net} is inside the management network {m} (the operator's own access), which is never banned; if {net} must be banned, take it out of [management] in the config first"
            ));
        }
        if net.contains(m) {
            return Err(format!(
                "a ban on {net} would cover the management network {m} (the operator's own access); ban a narrower prefix that leaves {m} out"
            ));
        }
    }
    Ok(())
}

/// Refuses a deny or ban on a catch-all prefix (`0.0.0.0/0`, `::/0`)
/// unless `force`d: one mistyped prefix length would drop a whole
/// family's traffic.
pub fn guard_catch_all(net: &IpNet, what: &str, force: bool) -> Result<(), String> {
    if net.prefix_len() > 0 || force {
        return Ok(());
    }
    let family = if net.addr().is_ipv4() { "IPv4" } else { "IPv6" };
    Err(format!(
        "{what} on {net} would drop every {family} packet (management networks aside); pass --force if that is meant, or give the prefix length intended"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_networks_are_never_denied_limited_or_banned() {
        let m: Vec<IpNet> = vec!["203.0.113.0/24".parse().unwrap()];
        assert!(guard_ban(&m, &"203.0.113.7/32".parse().unwrap()).is_err());
        assert!(guard_ban(&m, &"0.0.0.0/0".parse().unwrap()).is_err());
        assert!(guard_ban(&m, &"198.51.100.0/24".parse().unwrap()).is_ok());
        let deny = Rule::new("203.0.113.128/25".parse().unwrap(), Action::Deny);
        assert!(
            guard_rule(&m, &deny)
                .unwrap_err()
                .contains("is inside the management network")
        );
        let wide = Rule::new("203.0.0.0/16".parse().unwrap(), Action::Deny);
        assert!(
            guard_rule(&m, &wide)
                .unwrap_err()
                .contains("would deny the management network")
        );
        let allow = Rule::new("203.0.113.128/25".parse().unwrap(), Action::Allow);
        assert_eq!(guard_rule(&m, &allow), Ok(()));
    }

    #[test]
    fn the_advice_fits_a_prefix_inside_or_around_a_management_network() {
        let m: Vec<IpNet> = vec!["203.0.113.0/24".parse().unwrap()];
        let inside = guard_ban(&m, &"203.0.113.7/32".parse().unwrap()).unwrap_err();
        assert!(
            inside.contains("is inside the management network 203.0.113.0/24"),
            "{inside}"
        );
        assert!(inside.contains("take it out of [management]"), "{inside}");
        assert!(!inside.contains("narrower"), "{inside}");
        let around = guard_ban(&m, &"203.0.0.0/16".parse().unwrap()).unwrap_err();
        assert!(
            around.contains("ban a narrower prefix that leaves 203.0.113.0/24 out"),
            "{around}"
        );
        let deny = Rule::new("203.0.113.7/32".parse().unwrap(), Action::Deny);
        let inside = guard_rule(&m, &deny).unwrap_err();
        assert!(inside.contains("a rule cannot deny it"), "{inside}");
    }

    #[test]
    fn a_catch_all_is_refused_unless_forced() {
        for net in ["0.0.0.0/0", "::/0"] {
            let net: IpNet = net.parse().unwrap();
            let e = guard_catch_all(&net, "a ban", false).unwrap_err();
            assert!(e.contains("pass --force"), "{e}");
            assert!(guard_catch_all(&net, "a ban", true).is_ok());
        }
        assert!(guard_catch_all(&"0.0.0.0/1".parse().unwrap(), "a ban", false).is_ok());
    }
}
