//! The runtime rules: rules added, removed or changed through the CLI,
//! and the runtime override of the default limit. Every change goes
//! through `Daemon::change_rules`: mutate, apply to the kernel (one
//! atomic policy swap), roll back if the kernel refuses, then save, so a
//! refused change leaves nothing behind and an accepted one survives a
//! restart.

use std::collections::HashSet;

use ipnet::IpNet;

use super::Daemon;
use crate::{
    clock::{coarse_tick_ns, monotonic_ns},
    config::{Config, RuleEntry},
    policy::{Action, Limit, LimitSpec, Origin, Policy, Rule, parse_rule},
    state::{SavedRule, State},
};

#[derive(Clone, Debug, Default)]
pub struct RuleBook {
    /// Rules added or changed at run time; one on a configured rule's CIDR
    /// shadows it.
    pub runtime: Vec<RuleEntry>,
    /// The default limit and mode set at run time, over the config's.
    pub default_override: Option<(Limit, bool)>,
}

impl RuleBook {
    /// The runtime rules and default limit kept in the state file; those
    /// that no longer parse are skipped with a warning.
    pub fn restore(state: &State) -> Self {
        let mut book = Self::default();
        for r in &state.rules {
            match parse_rule(&r.cidr, &r.action, &r.limit_spec(), r.monitor) {
                Ok(rule) => book.runtime.push(RuleEntry {
                    rule,
                    comment: r.comment.clone(),
                    origin: Origin::Runtime,
                }),
                Err(e) => {
                    tracing::warn!(event = "state_rule_skipped", cidr = %r.cidr, "runtime rule not restored: {e}")
                }
            }
        }
        if let Some(d) = &state.default_limit {
            match d.limit_spec().parse() {
                Ok(l) => book.default_override = Some((l, d.monitor)),
                Err(e) => tracing::warn!(
                    event = "state_limit_skipped",
                    "default limit override not restored: {e}"
                ),
            }
        }
        book
    }

    /// The policy in force: the config's, with the runtime rules and the
    /// default override over it.
    pub fn policy(&self, config: &Config) -> Policy {
        let mut p = config.policy(&self.runtime);
        if let Some((l, monitor)) = self.default_override {
            p.default = l;
            p.default_monitor = monitor;
        }
        p
    }

    /// Every rule in force with where it comes from: management networks,
    /// the config's rules (but those a runtime rule shadows), the runtime
    /// rules.
    pub fn all(&self, config: &Config) -> Vec<(RuleEntry, Origin)> {
        let shadowed: HashSet<IpNet> = self.runtime.iter().map(|e| e.rule.net).collect();
        let mut out: Vec<(RuleEntry, Origin)> = config
            .management
            .iter()
            .map(|m| {
                (
                    RuleEntry {
                        rule: Rule::new(*m, Action::Allow),
                        comment: Some("management".into()),
                        origin: Origin::Config,
                    },
                    Origin::Management,
                )
            })
            .collect();
        out.extend(
            config
                .rules
                .iter()
                .filter(|e| !shadowed.contains(&e.rule.net))
                .map(|e| (e.clone(), Origin::Config)),
        );
        out.extend(self.runtime.iter().map(|e| (e.clone(), Origin::Runtime)));
        out
    }

    /// The rule in force on exactly `net`.
    pub fn find(&self, config: &Config, net: IpNet) -> Option<(RuleEntry, Origin)> {
        self.all(config)
            .into_iter()
            .find(|(e, _)| e.rule.net == net)
    }

    /// The runtime rules and default override as the state file keeps them.
    pub fn saved(&self) -> (Vec<SavedRule>, Option<SavedRule>) {
        let rules = self
            .runtime
            .iter()
            .map(|e| SavedRule::new(&e.rule, e.comment.clone()))
            .collect();
        let default = self.default_override.map(|(l, monitor)| SavedRule {
            cidr: String::new(),
            action: "limit".into(),
            limit: LimitSpec::from_limit(&l),
            monitor,
            comment: None,
        });
        (rules, default)
    }
}

impl Daemon {
    /// The policy in force.
    pub(super) fn policy(&self) -> Policy {
        self.rules.policy(&self.config)
    }

    /// Checks and applies the current policy (atomically in the kernel).
    /// `clock_base` restarts the bucket clock (a fresh start); adopted
    /// maps keep theirs.
    pub(super) fn apply(&mut self, clock_base: Option<u64>) -> Result<(), String> {
        let p = self.policy();
        p.compile().map_err(|e| e.to_string())?;
        p.check_bursts(coarse_tick_ns())
            .map_err(|e| e.to_string())?;
        self.tg
            .maps
            .apply_policy(&p, clock_base)
            .map_err(|e| format!("{e:#}"))
    }

    /// Applies the policy with a fresh bucket clock (a start without
    /// adopted maps).
    pub(super) fn apply_fresh(&mut self) -> Result<(), String> {
        self.apply(Some(monotonic_ns()))
    }

    /// The one path for a rule change: `change` mutates the rule book,
    /// the policy is applied, and if the kernel refuses, the book is put
    /// back as it was; an applied change is saved.
    pub(super) fn change_rules<T>(
        &mut self,
        change: impl FnOnce(&mut RuleBook) -> Result<T, String>,
    ) -> Result<T, String> {
        let before = self.rules.clone();
        let out = match change(&mut self.rules) {
            Ok(out) => out,
            Err(e) => {
                self.rules = before;
                return Err(e);
            }
        };
        if let Err(e) = self.apply(None) {
            self.rules = before;
            return Err(e);
        }
        self.save()?;
        Ok(out)
    }
}
