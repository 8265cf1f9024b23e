//! The events of the changes the control socket makes: each accepted
//! rule or limit change is one event naming its actor and carrying the
//! numbers it set, so `tollgate events` and the log say who changed what
//! to what. (Bans and reloads record their own, where they happen.)

use super::Daemon;
use crate::{
    control::replies::{LimitChanged, LimitNumbers, RuleChanged},
    events::{Event, event},
    policy::{Action, parse_cidr},
};

impl Daemon {
    /// Records the change `r` made by `actor` with `record`, if it was
    /// made; returns `r` as it was.
    pub(super) fn record<T>(
        &mut self,
        r: Result<T, String>,
        actor: &str,
        record: impl FnOnce(&mut Self, &T, &str),
    ) -> Result<T, String> {
        if let Ok(changed) = &r {
            record(self, changed, actor);
        }
        r
    }

    pub(super) fn rule_changed(&mut self, c: &RuleChanged, actor: &str) {
        let (kind, cidr) = match (&c.added, &c.removed) {
            (Some(a), _) => ("rule_added", a),
            (_, Some(r)) => ("rule_removed", r),
            _ => return,
        };
        let Ok(net) = parse_cidr(cidr) else { return };
        let source = Some(self.redact.net(net));
        let e = if kind == "rule_removed" {
            event(kind, source, "removed", "runtime rule removed".into())
        } else {
            let Some((entry, _)) = self.rules.find(&self.config, net) else {
                return;
            };
            let (action, numbers) = match &entry.rule.action {
                Action::Allow => ("allow", None),
                Action::Deny => ("deny", None),
                Action::Limit(l) => ("limit", Some(LimitNumbers::from(l))),
            };
            let monitor = if entry.rule.monitor { " (monitor)" } else { "" };
            let e = event(
                kind,
                source,
                action,
                format!("runtime {action} rule added{monitor}"),
            );
            with_numbers(e, numbers.as_ref())
        };
        self.events.push(e.by(actor));
    }

    pub(super) fn limit_changed(&mut self, kind: &'static str, c: &LimitChanged, actor: &str) {
        let source = c
            .cidr
            .as_deref()
            .and_then(|n| parse_cidr(n).ok())
            .map(|n| self.redact.net(n));
        let what = if c.cidr.is_some() {
            "the rule's limit"
        } else {
            "the default limit"
        };
        let message = match kind {
            "limit_reset" => format!("{what} is the config file's again"),
            _ => format!("{what} changed at run time"),
        };
        let action = if c.monitor { "monitor" } else { "enforce" };
        let e = with_numbers(event(kind, source, action, message), Some(&c.limit));
        self.events.push(e.by(actor));
    }
}

/// `e` with a limit's numbers as values (those the limit has).
fn with_numbers(mut e: Event, n: Option<&LimitNumbers>) -> Event {
    let Some(n) = n else { return e };
    for (name, v) in [
        ("packets_per_second", n.packets_per_second),
        ("burst_packets", n.burst_packets),
        ("bytes_per_second", n.bytes_per_second),
        ("burst_bytes", n.burst_bytes),
    ] {
        if let Some(v) = v {
            e = e.value(name, v as f64);
        }
    }
    e
}
