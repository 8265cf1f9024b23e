//! `limit set` and `limit reset`: changing the numbers of the default
//! limit or of one limit rule at run time, and going back to the config's.
//! Only the numbers given change; the others stay as they are.

use super::Daemon;
use crate::{
    config::RuleEntry,
    control::replies::LimitChanged,
    policy::{Action, LimitSpec, Origin, Rule, action_name, guard_rule, parse_cidr},
};

impl Daemon {
    pub(super) fn limit_set(
        &mut self,
        cidr: Option<&str>,
        spec: &LimitSpec,
        monitor: Option<bool>,
    ) -> Result<LimitChanged, String> {
        if spec.is_empty() && monitor.is_none() {
            return Err(
                "nothing to change: give the numbers to change (--packets-per-second, --burst-packets, --bytes-per-second, --burst-bytes) and/or --monitor true|false".into(),
            );
        }
        match cidr {
            None => self.set_default_limit(spec, monitor),
            Some(c) => self.set_rule_limit(c, spec, monitor),
        }
    }

    fn set_default_limit(
        &mut self,
        spec: &LimitSpec,
        monitor: Option<bool>,
    ) -> Result<LimitChanged, String> {
        let current = self.policy();
        let limit = spec.over(&current.default).map_err(|e| e.to_string())?;
        let monitor = monitor.unwrap_or(current.default_monitor);
        self.change_rules(|book| {
            book.default_override = Some((limit, monitor));
            Ok(())
        })?;
        Ok(LimitChanged {
            cidr: None,
            limit: (&limit).into(),
            monitor,
            origin: Origin::Runtime,
        })
    }

    fn set_rule_limit(
        &mut self,
        cidr: &str,
        spec: &LimitSpec,
        monitor: Option<bool>,
    ) -> Result<LimitChanged, String> {
        let net = parse_cidr(cidr)?;
        let Some((entry, _)) = self.rules.find(&self.config, net) else {
            return Err(format!(
                "no rule for {net}; add one with `tollgate rules add {net} --action limit ...`"
            ));
        };
        let Action::Limit(current) = entry.rule.action else {
            return Err(format!(
                "the rule for {net} is `{}`, not `limit`",
                action_name(&entry.rule.action)
            ));
        };
        let limit = spec.over(&current).map_err(|e| e.to_string())?;
        let rule = Rule {
            net,
            action: Action::Limit(limit),
            monitor: monitor.unwrap_or(entry.rule.monitor),
        };
        guard_rule(&self.config.management, &rule)?;
        let monitor = rule.monitor;
        self.change_rules(|book| {
            book.runtime.retain(|e| e.rule.net != net);
            book.runtime.push(RuleEntry {
                rule,
                comment: entry.comment,
                origin: Origin::Runtime,
            });
            Ok(())
        })?;
        Ok(LimitChanged {
            cidr: Some(net.to_string()),
            limit: (&limit).into(),
            monitor,
            origin: Origin::Runtime,
        })
    }

    /// Drops the runtime change of the default limit (no `cidr`) or of a
    /// configured limit rule: the config's numbers apply again.
    pub(super) fn limit_reset(&mut self, cidr: Option<&str>) -> Result<LimitChanged, String> {
        let Some(c) = cidr else {
            if self.rules.default_override.is_none() {
                return Err(
                    "the default limit has no runtime change: it is the config's already".into(),
                );
            }
            self.change_rules(|book| {
                book.default_override = None;
                Ok(())
            })?;
            let p = self.policy();
            return Ok(LimitChanged {
                cidr: None,
                limit: (&p.default).into(),
                monitor: p.default_monitor,
                origin: Origin::Config,
            });
        };
        let net = parse_cidr(c)?;
        let Some(configured) = self
            .config
            .rules
            .iter()
            .find(|e| e.rule.net == net)
            .cloned()
        else {
            return Err(if self.rules.runtime.iter().any(|e| e.rule.net == net) {
                format!(
                    "the rule for {net} was added at run time, there is no configured one to go back to; `tollgate rules remove {net}` removes it"
                )
            } else {
                format!("no rule for {net}; `tollgate rules list` shows them")
            });
        };
        if !self.rules.runtime.iter().any(|e| e.rule.net == net) {
            return Err(format!(
                "the rule for {net} has no runtime change: it is the config's already"
            ));
        }
        self.change_rules(|book| {
            book.runtime.retain(|e| e.rule.net != net);
            Ok(())
        })?;
        let limit = match configured.rule.action {
            Action::Limit(l) => (&l).into(),
            _ => Default::default(),
        };
        Ok(LimitChanged {
            cidr: Some(net.to_string()),
            limit,
            monitor: configured.rule.monitor,
            origin: Origin::Config,
        })
    }
}
