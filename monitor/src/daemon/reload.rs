//! `tollgate reload` and SIGHUP: the config file read again through the
//! same checks as at start. Nothing changes unless all of it checks out
//! and the kernel takes the new policy; runtime changes that still
//! override the file are said, with the way back.

use super::Daemon;
use crate::{config, control::replies::Reloaded, events::event};

impl Daemon {
    /// Re-reads the config file, for `actor` (a CLI user, or `config`
    /// for SIGHUP). On any error nothing changes.
    pub fn reload(&mut self, actor: &str) -> Result<Reloaded, String> {
        let path = self.config.path.clone();
        let refused = |e: String| format!("reload refused, nothing changed: {e}");
        if let Err(e) = std::fs::metadata(&path) {
            return Err(refused(format!(
                "the daemon's config {} (its --config at start) cannot be read: {e}; put the file back, or restart the daemon with --config FILE",
                path.display()
            )));
        }
        let new = config::load(&path, true).map_err(|e| refused(e.to_string()))?;
        if new.interfaces != self.config.interfaces || new.attach_mode != self.config.attach_mode {
            return Err(refused(format!(
                "{}: the interfaces or attach mode changed; restart the daemon to attach elsewhere",
                path.display()
            )));
        }
        for e in &self.rules.runtime {
            if let Err(m) = crate::policy::guard_rule(&new.management, &e.rule) {
                return Err(refused(format!("runtime rule {}: {m}", e.rule.net)));
            }
        }
        let old = std::mem::replace(&mut self.config, new);
        if let Err(e) = self.apply(None) {
            self.config = old;
            return Err(refused(e));
        }
        if old.detect.bogons != self.config.detect.bogons
            && let Err(e) = self.tg.maps.set_bogons(&self.config.detect.bogons)
        {
            // Back to the old file's bogons and policy as a whole.
            let _ = self.tg.maps.set_bogons(&old.detect.bogons);
            self.config = old;
            let _ = self.apply(None);
            return Err(refused(format!("writing the bogon ranges: {e}")));
        }
        if let Err(e) = self.reload_cookies(old.syn_cookies.as_ref()) {
            // Back to the old file: its policy, and its cookies as far as
            // the failed step changed them (a refused `nft -f` changed
            // nothing: it is one transaction).
            let failed = std::mem::replace(&mut self.config, old);
            let _ = self.apply(None);
            if failed.detect.bogons != self.config.detect.bogons {
                let _ = self.tg.maps.set_bogons(&self.config.detect.bogons);
            }
            if let Err(back) = self.reload_cookies(failed.syn_cookies.as_ref()) {
                tracing::warn!(event = "syn_cookies_failed", "{back:#}");
            }
            return Err(refused(format!("{e:#}")));
        }
        let notes = self.overrides_left(&old);
        for n in &notes {
            tracing::warn!(event = "reload_partial", "{n}");
        }
        self.events.push(
            event(
                "reloaded",
                None,
                "applied",
                format!("config reloaded from {}", path.display()),
            )
            .by(actor)
            .value("rules", self.config.rules.len() as f64)
            .value("management_networks", self.config.management.len() as f64),
        );
        Ok(Reloaded {
            reloaded: path.display().to_string(),
            rules: self.config.rules.len(),
            notes,
        })
    }

    /// What the reload did not change: runtime overrides of the file's
    /// default limit and rules, and settings read only at start.
    fn overrides_left(&self, old: &config::Config) -> Vec<String> {
        let mut notes = Vec::new();
        if self.rules.default_override.is_some() {
            notes.push(
                "the default limit set at run time (`tollgate limit set`) still overrides the file's [default_limit]; `tollgate limit reset` goes back to the file's".to_owned(),
            );
        }
        for e in &self.rules.runtime {
            if self.config.rules.iter().any(|c| c.rule.net == e.rule.net) {
                notes.push(format!(
                    "the rule for {} changed at run time still overrides the file's; `tollgate limit reset --cidr {}` goes back to the file's",
                    e.rule.net, e.rule.net
                ));
            }
        }
        if old.metrics_listen != self.config.metrics_listen || old.socket != self.config.socket {
            notes.push("the metrics address and control socket change only on restart".to_owned());
        }
        if self.crowdsec.running != self.config.crowdsec {
            notes.push(
                "[crowdsec] changes only on restart; `tollgate status` shows the settings in use"
                    .to_owned(),
            );
        }
        notes
    }
}
