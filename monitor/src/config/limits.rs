//! The policy part of the file: `[default_limit]`, `[[rule]]` and
//! `[management]`. Each value goes through the shared parser (via
//! `Checker`); what is checked here is what only a file has: one rule per
//! CIDR, rates and bursts only on `limit` rules, the management guard on
//! the file's own rules, and that the whole policy fits the kernel.

use std::collections::HashMap;

use ipnet::IpNet;

use super::{
    Config, Mode, Origin, RuleEntry,
    located::{Checker, ConfigError},
    schema::{LimitFile, ManagementFile, RuleAction, RuleFile},
};
use crate::policy::{Action, Limit, PolicyError, RATES_ONLY_FOR_LIMIT, Rule, guard_rule};

/// `[default_limit]`: the limit and whether it only monitors. Without
/// numbers, the built-in default (`Limit::DEFAULT`).
pub(super) fn default_limit(c: &Checker, l: &LimitFile) -> Result<(Limit, bool), ConfigError> {
    let limit = if l.is_empty() {
        Limit::DEFAULT
    } else {
        c.limit(l, "default_limit", 0..0)?
    };
    Ok((limit, l.mode == Some(Mode::Monitor)))
}

/// The `[[rule]]` tables, in order.
pub(super) fn rules(c: &Checker, rules: &[RuleFile]) -> Result<Vec<RuleEntry>, ConfigError> {
    let mut out = Vec::with_capacity(rules.len());
    // Each CIDR and the line of its rule, to name the first one when a
    // CIDR comes back.
    let mut first_at: HashMap<IpNet, usize> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        let at = format!("rule[{}]", i + 1);
        let net = c.cidr(&r.cidr, &format!("{at}.cidr"))?;
        if let Some(line) = first_at.get(&net) {
            return Err(c.err(
                r.cidr.span(),
                format!("{at}.cidr"),
                format!("{net} already has a rule (line {line}); merge the two"),
            ));
        }
        first_at.insert(net, c.line(&r.cidr.span()));
        let limit = r.limit();
        let action = match r.action {
            RuleAction::Allow | RuleAction::Deny if !limit.is_empty() => {
                return Err(c.err(r.cidr.span(), &at, RATES_ONLY_FOR_LIMIT));
            }
            RuleAction::Allow => Action::Allow,
            RuleAction::Deny => Action::Deny,
            RuleAction::Limit => Action::Limit(c.limit(&limit, &at, r.cidr.span())?),
        };
        out.push(RuleEntry {
            rule: Rule {
                net,
                action,
                monitor: r.mode == Some(Mode::Monitor),
            },
            comment: r.comment.clone(),
            origin: Origin::Config,
        });
    }
    Ok(out)
}

/// `[management]`, and the lockout guard on the file's own rules (`rules`
/// as written, `entries` as parsed from them).
pub(super) fn management(
    c: &Checker,
    m: &ManagementFile,
    rules: &[RuleFile],
    entries: &[RuleEntry],
) -> Result<Vec<IpNet>, ConfigError> {
    let mut management = Vec::with_capacity(m.cidrs.len());
    for (i, s) in m.cidrs.iter().enumerate() {
        management.push(c.cidr(s, &format!("management.cidrs[{}]", i + 1))?);
    }
    for (i, (r, e)) in rules.iter().zip(entries).enumerate() {
        guard_rule(&management, &e.rule)
            .map_err(|m| c.err(r.cidr.span(), format!("rule[{}].cidr", i + 1), m))?;
    }
    Ok(management)
}

/// Whether the policy `config` makes (management and rules together) is
/// one the kernel takes: the check `run` and `reload` make, here so that
/// `check-config` refuses the same files. Values were checked one by one
/// already; what is left is the number of rules per family, reported at
/// the first rule that does not fit.
pub(super) fn fits_the_kernel(
    c: &Checker,
    config: &Config,
    m: &ManagementFile,
    rules: &[RuleFile],
) -> Result<(), ConfigError> {
    let p = config.policy(&[]);
    let Err(e) = p.compile() else { return Ok(()) };
    let PolicyError::TooMany { family, max, .. } = e else {
        return Err(c.whole(e.to_string()));
    };
    let v4 = family == "IPv4";
    let Some(net) = p
        .rules
        .iter()
        .filter(|r| matches!(r.net, IpNet::V4(_)) == v4)
        .nth(max as usize)
        .map(|r| r.net)
    else {
        return Err(c.whole(e.to_string()));
    };
    if let Some(i) = config.rules.iter().position(|r| r.rule.net == net) {
        return Err(c.err(
            rules[i].cidr.span(),
            format!("rule[{}].cidr", i + 1),
            e.to_string(),
        ));
    }
    match config.management.iter().position(|n| *n == net) {
        Some(i) => Err(c.err(
            m.cidrs[i].span(),
            format!("management.cidrs[{}]", i + 1),
            e.to_string(),
        )),
        None => Err(c.whole(e.to_string())),
    }
}
