//! SYN cookies (`[syn_cookies]`): the mode in force and its changes, the
//! SYNPROXY table, and what the kernel is told.
//!
//! The mode follows one rule (`Daemon::wanted_cookie_mode`): `OFF` without
//! the section; `ON` with `mode = "always"`; with `mode = "under_attack"`,
//! `ON` exactly while the host-wide SYN limit the `global_syn_flood`
//! detector sets is in force (`Responder::syn_limited`, renewed and lifted
//! as that limit is) or a storm is answered (`Responder::storm`: sources
//! first seen during it share their prefix's unproven budget until a
//! cookie handshake verifies them), and `WATCH` otherwise.
//! `sync_cookie_mode` is called wherever either is set or lifted, at
//! start and on reload; each change is one `syn_cookies` event.
//!
//! The SYNPROXY table (`synproxy`) is installed at start and replaced on a
//! reload that changes the section; it stays when the daemon stops with
//! `state.on_exit = "keep"` (the XDP program stays attached and keeps
//! answering, SYNPROXY keeps completing the handshakes) and goes with
//! `"detach"` or when the section is removed.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use monitor_common::syncookie::{CookieParams, cookie_mode};

use super::Daemon;
use crate::{
    clock::coarse_ns,
    config::{CookieMode, SynCookies},
    events::event,
    snapshot::CookieStats,
    synproxy::{self, Nft},
};

/// What the daemon keeps about SYN cookies.
#[derive(Debug, Default)]
pub struct Cookies {
    /// The mode last written to the kernel (`cookie_mode::*`).
    mode: u32,
    /// Mode changes since the daemon started.
    changes: u64,
    /// The `nft` to run.
    nft: Nft,
    /// When the verified-source filter was last rewritten (the load wrote
    /// it first).
    filter_refreshed: Option<Instant>,
}

/// How often the verified-source filter is rewritten from the sources
/// verified then: its bits only accumulate in the kernel, and a filter of
/// long-gone sources sends a flood's lookups back to the verified map.
const FILTER_REFRESH: Duration = Duration::from_secs(600);

/// The name of cookie mode `m`, as events, status and metrics say it.
pub fn mode_name(m: u32) -> &'static str {
    match m {
        cookie_mode::ON => "on",
        cookie_mode::WATCH => "watch",
        _ => "off",
    }
}

impl Daemon {
    /// The mode the config and the SYN-flood response call for now.
    fn wanted_cookie_mode(&self) -> u32 {
        match &self.config.syn_cookies {
            None => cookie_mode::OFF,
            Some(c) if c.mode == CookieMode::Always => cookie_mode::ON,
            Some(_) if self.respond.syn_limited() || self.respond.storm() => cookie_mode::ON,
            Some(_) => cookie_mode::WATCH,
        }
    }

    /// Brings the kernel's cookie mode to the wanted one, with a
    /// `syn_cookies` event if it changed (`why` says what changed it).
    pub(super) fn sync_cookie_mode(&mut self, why: &str) {
        let want = self.wanted_cookie_mode();
        if want == self.cookies.mode {
            return;
        }
        let params = match &self.config.syn_cookies {
            Some(c) => c.params(want, self.on_since(want)),
            None => CookieParams::default(),
        };
        match self.tg.maps.set_cookie_params(params) {
            Ok(()) => self.cookie_mode_changed(want, why.to_owned()),
            Err(e) => tracing::warn!(event = "syn_cookies_failed", "{e}"),
        }
    }

    /// When mode `want` turned on: now if it is turning on, kept if it
    /// was on already (a reload, an adopted map), 0 when not on.
    fn on_since(&self, want: u32) -> u64 {
        if want != cookie_mode::ON {
            return 0;
        }
        match self.tg.maps.cookie_params() {
            Ok(p) if p.mode == cookie_mode::ON && p.on_since_ns != 0 => p.on_since_ns,
            _ => crate::clock::coarse_ns(),
        }
    }

    fn cookie_mode_changed(&mut self, mode: u32, why: String) {
        self.cookies.mode = mode;
        self.cookies.changes += 1;
        self.events
            .push(event("syn_cookies", None, mode_name(mode), why));
    }

    /// At start: installs the SYNPROXY table and writes the ports and
    /// settings when `[syn_cookies]` is configured; when it is not but the
    /// adopted maps say a previous daemon had it on, turns it all off.
    /// Connections to protected ports open before the table are dropped
    /// (see `synproxy::install`).
    pub(super) fn start_cookies(&mut self) -> anyhow::Result<()> {
        // What a previous daemon left in adopted maps (fresh maps: OFF).
        self.cookies.mode = self.tg.maps.cookie_params()?.mode;
        match self.config.syn_cookies.clone() {
            Some(c) => self.install_cookies(&c, true, "started"),
            None if self.cookies.mode != cookie_mode::OFF => {
                self.remove_cookies("[syn_cookies] is no longer configured")
            }
            None => Ok(()),
        }
    }

    /// The table (when `table`), the ports and the settings for `c`, then
    /// the mode.
    fn install_cookies(&mut self, c: &SynCookies, table: bool, why: &str) -> anyhow::Result<()> {
        if table {
            let warnings = synproxy::install(&self.cookies.nft, c)
                .context("installing the SYNPROXY table for [syn_cookies]")?;
            for w in warnings {
                tracing::warn!(event = "synproxy_sysctl", "{w}");
            }
        }
        self.tg.maps.set_cookie_ports(&c.ports)?;
        let want = self.wanted_cookie_mode();
        self.tg
            .maps
            .set_cookie_params(c.params(want, self.on_since(want)))?;
        tracing::info!(
            event = "synproxy_installed",
            ports = ?c.ports,
            "SYN cookies for ports {:?}: table inet {} installed",
            c.ports,
            synproxy::TABLE
        );
        if want != self.cookies.mode {
            self.cookie_mode_changed(want, format!("SYN cookies {why} ({:?})", c.mode));
        }
        Ok(())
    }

    /// Turns cookies off: the kernel first (mode OFF, no ports, nobody
    /// verified), then the table.
    fn remove_cookies(&mut self, why: &str) -> anyhow::Result<()> {
        self.tg.maps.set_cookie_params(CookieParams::default())?;
        self.tg.maps.set_cookie_ports(&[])?;
        self.tg.maps.clear_verified()?;
        if self.cookies.mode != cookie_mode::OFF {
            self.cookie_mode_changed(cookie_mode::OFF, why.to_owned());
        }
        synproxy::remove(&self.cookies.nft).context("removing the SYNPROXY table")?;
        tracing::info!(
            event = "synproxy_removed",
            "table inet {} removed",
            synproxy::TABLE
        );
        Ok(())
    }

    /// After a reload swapped the config in: the section added, changed
    /// (the table replaced in one transaction) or removed.
    pub(super) fn reload_cookies(&mut self, old: Option<&SynCookies>) -> anyhow::Result<()> {
        match (old, self.config.syn_cookies.clone()) {
            (None, None) => Ok(()),
            (Some(_), None) => self.remove_cookies("[syn_cookies] removed by a reload"),
            (Some(o), Some(n)) if *o == n => Ok(()),
            // What the table holds is unchanged: it stays as it is.
            (Some(o), Some(n)) => {
                let table =
                    (&o.ports, o.mss4, o.mss6, o.wscale) != (&n.ports, n.mss4, n.mss6, n.wscale);
                self.install_cookies(&n, table, "changed by a reload")
            }
            (None, Some(n)) => self.install_cookies(&n, true, "configured by a reload"),
        }
    }

    /// On a clean stop with `on_exit = "detach"`: the table goes with the
    /// program.
    pub(super) fn detach_cookies(&mut self) {
        if self.config.syn_cookies.is_some()
            && let Err(e) = synproxy::remove(&self.cookies.nft)
        {
            tracing::warn!(event = "synproxy_left", "{e}");
        }
    }

    /// Rewrites the verified-source filter from the sources verified now,
    /// every `FILTER_REFRESH` while cookies are configured.
    pub(super) fn refresh_verified_filter(&mut self) {
        if self.config.syn_cookies.is_none() {
            return;
        }
        let last = *self
            .cookies
            .filter_refreshed
            .get_or_insert_with(Instant::now);
        if last.elapsed() < FILTER_REFRESH {
            return;
        }
        self.cookies.filter_refreshed = Some(Instant::now());
        match self.tg.maps.refresh_verified_filter(coarse_ns(), false) {
            Ok(bits) => {
                tracing::debug!(
                    event = "verified_filter_refreshed",
                    bits,
                    "rewrote the verified-source filter"
                );
            }
            Err(e) => {
                tracing::warn!(
                    event = "verified_filter_failed",
                    "rewriting the verified-source filter: {e:#}"
                );
            }
        }
    }

    /// The cookie part of a snapshot; `verified` is the last count when
    /// this read does not walk (counting reads the whole map).
    pub(super) fn cookie_stats(
        &self,
        walk: bool,
        prev: Option<&CookieStats>,
    ) -> anyhow::Result<CookieStats> {
        let configured = self.config.syn_cookies.as_ref();
        let verified = match (configured, prev) {
            (None, _) => 0,
            (Some(_), Some(p)) if !walk => p.verified,
            (Some(_), _) => self.tg.maps.verified_sources(coarse_ns())?,
        };
        Ok(CookieStats {
            mode: self.cookies.mode,
            configured: configured.map(|c| c.mode),
            ports: configured.map(|c| c.ports.clone()).unwrap_or_default(),
            events: self.tg.maps.cookie_events()?,
            verified,
            mode_changes: self.cookies.changes,
        })
    }
}
