//! The management guard: the operator's own networks (`management.cidrs`)
//! can never be denied, limited or banned, whoever asks (the config, the
//! CLI, a detector, the state file), so no mistake locks them out.

use ipnet::IpNet;

use super::{Action, Rule};

/// Refuses a rule that would deny or limit (part of) a management CIDR.
pub fn guard_rule(management: &[IpNet], rule: &Rule) -> Result<(), String> {
    if matches!(rule.action, Action::Allow) {
        return Ok(());
    }
    for m in management {
        if m.contains(&rule.net) || rule.net.contains(m) {
            return Err(format!(
                "{} would {} the management network {m} (the operator's own access); management CIDRs are always allowed, so narrow the rule to leave {m} out",
                rule.net,
                if matches!(rule.action, Action::Deny) {
                    "deny"
                } else {
                    "limit"
                }
            ));
        }
    }
    Ok(())
}

/// Refuses a ban that covers (part of) a management CIDR.
pub fn guard_ban(management: &[IpNet], net: &IpNet) -> Result<(), String> {
    for m in management {
        if m.contains(net) || net.contains(m) {
            return Err(format!(
                "a ban on {net} would cover the management network {m} (the operator's own access); ban a narrower prefix"
            ));
        }
    }
    Ok(())
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
                .contains("would deny the management network")
        );
        let allow = Rule::new("203.0.113.128/25".parse().unwrap(), Action::Allow);
        assert_eq!(guard_rule(&m, &allow), Ok(()));
    }
}
