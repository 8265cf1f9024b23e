//! Starting and stopping: the pin directory opened and locked, the
//! programs loaded (adopting pinned maps, or starting them fresh when the
//! layout or capacity changed), the state file's rules and bans restored,
//! the policy applied, the interfaces attached (adopting pinned links so
//! enforcement never pauses), and what a clean stop leaves behind.

use std::time::Instant;

use anyhow::Context as _;

use super::{Daemon, bans::BanBook, detect::Detection, respond::Responder, rules::RuleBook};
use crate::{
    config::Config,
    events::EventLog,
    loader::{LoadError, LoadOptions, Tollgate},
    pins::{OnExit, PinDir},
    redact::Redactor,
    state::State,
};

/// Opens the pin directory and loads the programs into it: pinned maps
/// are adopted, unless their capacity no longer matches the config (then
/// they start fresh, with a log line).
fn load_pinned(config: &Config) -> anyhow::Result<(Tollgate, PinDir)> {
    let mut pins = PinDir::open(&config.pin_dir)?;
    let older = pins.other_versions();
    if !pins.adopted() && !older.is_empty() {
        tracing::warn!(
            event = "layout_changed",
            "pinned maps of layout {} found under {}; this build uses layout v{}: its maps start fresh (bans and runtime rules come back from the state file; counters and bucket state restart). The running program keeps enforcing until ours replaces it.",
            older
                .iter()
                .map(|(v, _)| format!("v{v}"))
                .collect::<Vec<_>>()
                .join(", "),
            config.pin_dir.display(),
            monitor_common::maps::LAYOUT_VERSION
        );
    }
    let load = |pins: &PinDir| {
        Tollgate::load(&LoadOptions {
            max_sources: config.max_sources,
            pin_dir: Some(pins.dir().to_owned()),
            multi_buffer: true,
            ..LoadOptions::default()
        })
    };
    let tg = match load(&pins) {
        Err(e @ LoadError::PinnedCapacity { .. }) => {
            tracing::warn!(
                event = "pins_restarted",
                "{e}: the maps start fresh (bans and runtime rules come back from the state file; counters and bucket state restart)"
            );
            pins.clear_maps()?;
            load(&pins)
        }
        r => r,
    }
    .context("loading Tollgate's XDP programs")?;
    if pins.adopted() {
        tracing::info!(
            event = "pins_adopted",
            dir = %pins.dir().display(),
            "adopted the pinned maps: buckets, flow records, bans and counters continue"
        );
    }
    Ok((tg, pins))
}

/// The event history, beside the state file.
pub fn events_path(config: &Config) -> std::path::PathBuf {
    config.state_file.with_file_name("events.jsonl")
}

impl Daemon {
    /// Loads the programs, restores runtime rules and bans from the state
    /// file, applies the policy. Does not attach yet. A start that fails
    /// after creating fresh pins removes them, so nothing half-made is
    /// left for the next start to adopt.
    pub fn new(config: Config, redact: Redactor) -> anyhow::Result<Self> {
        let (state, note) = State::load(&config.state_file)?;
        if let Some(note) = note {
            tracing::warn!(event = "state_unreadable", "{note}");
        }
        let (events, note) = EventLog::open(&events_path(&config), config.log.format);
        if let Some(note) = note {
            tracing::warn!(event = "event_history_unreadable", "{note}");
        }
        let (overrides, notes) = super::thresholds::Overrides::restore(&state.thresholds);
        for n in notes {
            tracing::warn!(event = "state_threshold_dropped", "{n}");
        }
        let (tg, pins) = load_pinned(&config)?;
        let adopted = pins.adopted();
        let mut daemon = Self {
            tg,
            pins: Some(pins),
            rules: RuleBook::restore(&state),
            bans: BanBook::with_counts(state.bans_by_reason.clone()),
            detect: Detection::default(),
            overrides,
            respond: Responder::with_counts(&state.detections),
            cookies: Default::default(),
            crowdsec: Default::default(),
            events,
            redact,
            started: Instant::now(),
            config,
        };
        match daemon.restore(&state, adopted) {
            Ok(()) => Ok(daemon),
            Err(e) if !adopted => Err(daemon.remove_fresh_pins(e)),
            Err(e) => Err(e),
        }
    }

    /// Everything after the load: bogons, policy, bans, and what a
    /// previous daemon left in adopted maps.
    fn restore(&mut self, state: &State, adopted: bool) -> anyhow::Result<()> {
        self.tg
            .maps
            .set_bogons(&self.config.detect.bogons)
            .context("writing the bogon ranges")?;
        // Adopted maps keep their bucket clock: the buckets are relative
        // to it.
        if adopted {
            self.apply(None)
        } else {
            self.apply_fresh()
        }
        .map_err(|e| anyhow::anyhow!("applying the configured policy: {e}"))?;
        self.bans.restore(&mut self.tg.maps, &state.bans)?;
        self.start_cookies()?;
        if adopted {
            // A SYN limit or a probation the previous daemon set has no
            // end here (its timer went with it): lift it; a flood still
            // going on gets it again within an interval.
            if self.tg.maps.runtime_config()?.syn_limit.is_limited() {
                self.lift_syn_limit("lifted at start: the daemon that set it is gone");
            }
            if self.tg.maps.runtime_config()?.storm_since_ns != 0 {
                self.tg.maps.set_storm(false)?;
            }
            self.bans.adopt_kernel_bans(&mut self.tg.maps)?;
        }
        if !state.bans.is_empty() || !state.rules.is_empty() {
            tracing::info!(
                event = "state_restored",
                rules = self.rules.runtime.len(),
                bans = self.bans.len(),
                "runtime rules and bans restored from {}",
                self.config.state_file.display()
            );
        }
        Ok(())
    }

    /// After a failed start on fresh pins: unpins what this start created
    /// (a running program of an older layout is not touched), and returns
    /// the error.
    fn remove_fresh_pins(&mut self, e: anyhow::Error) -> anyhow::Error {
        if let Some(p) = self.pins.as_mut()
            && let Err(clean) = p.discard_fresh()
        {
            tracing::warn!(event = "pins_left", "{clean:#}");
        }
        e
    }

    /// Attaches on every configured interface through pinned links,
    /// adopting those a previous daemon left (its program is replaced in
    /// one atomic update), and detaches from interfaces no longer
    /// configured. A failure on a fresh start removes the fresh pins.
    pub fn attach_all(&mut self) -> anyhow::Result<()> {
        let fresh = !self.pins.as_ref().is_some_and(PinDir::adopted);
        match self.attach_configured() {
            Err(e) if fresh => {
                let _ = self.tg.detach_all();
                Err(self.remove_fresh_pins(e))
            }
            r => r,
        }
    }

    fn attach_configured(&mut self) -> anyhow::Result<()> {
        let pins = self
            .pins
            .as_ref()
            .context("the pin directory is not open")?;
        for iface in self.config.interfaces.clone() {
            let (adopted, program) = self.tg.attach_pinned(
                &iface,
                self.config.attach_mode,
                &pins.link(&iface),
                &pins.older_links(&iface),
            )?;
            if adopted {
                tracing::info!(event = "attached", iface = %iface, program, "adopted the pinned XDP link: enforcement never paused");
            } else {
                tracing::info!(event = "attached", iface = %iface, mode = %self.config.attach_mode, program, "attached");
            }
        }
        for stale in pins.stale_links(&self.config.interfaces) {
            match std::fs::remove_file(&stale) {
                Ok(()) => {
                    tracing::info!(event = "detached", pin = %stale.display(), "detached from an interface no longer configured")
                }
                Err(e) => tracing::warn!(event = "detach_failed", pin = %stale.display(), "{e}"),
            }
        }
        for (v, dir) in pins.other_versions() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    tracing::info!(event = "old_pins_removed", layout = v, dir = %dir.display(), "removed the pins of layout v{v}")
                }
                Err(e) => {
                    tracing::warn!(event = "old_pins_removal_failed", dir = %dir.display(), "{e}")
                }
            }
        }
        Ok(())
    }

    /// Puts the multi-buffer program in where an interface's MTU grew
    /// under the single-buffer one (`Tollgate::refit`), and says so.
    pub fn refit_programs(&mut self) {
        for c in self.tg.refit() {
            let (iface, was, now) = (&c.iface, c.was, c.now);
            match c.swapped {
                Ok(()) => tracing::info!(
                    event = "multi_buffer",
                    iface = %iface,
                    was,
                    now,
                    "the MTU of `{iface}` grew from {was} to {now}: the multi-buffer program took the single-buffer one's place in its link, so frames past one buffer are judged and counted whole"
                ),
                Err(e) => tracing::warn!(
                    event = "refit_failed",
                    iface = %iface,
                    was,
                    now,
                    "the MTU of `{iface}` grew from {was} to {now}, and the multi-buffer program could not take the single-buffer one's place: {e:#}; some drivers then drop frames past one buffer before Tollgate sees them: restart tollgate to attach afresh"
                ),
            }
        }
    }

    /// What a clean stop leaves behind, per `state.on_exit`.
    pub fn exit(&mut self) -> anyhow::Result<()> {
        match self.config.on_exit {
            OnExit::Keep => {
                tracing::info!(
                    event = "kept",
                    "leaving XDP attached on {} with the maps pinned in {} (state.on_exit = \"keep\"): the kernel keeps enforcing the last policy and bans (and answering SYN cookies, with the SYNPROXY table left in place) until the next daemon adopts them",
                    self.config.interfaces.join(", "),
                    self.config.pin_dir.display()
                );
            }
            OnExit::Detach => {
                self.tg.detach_all()?;
                self.detach_cookies();
                if let Some(p) = self.pins.take() {
                    p.remove()?;
                }
                tracing::info!(
                    event = "detached",
                    "detached and removed the pins (state.on_exit = \"detach\")"
                );
            }
        }
        Ok(())
    }
}
