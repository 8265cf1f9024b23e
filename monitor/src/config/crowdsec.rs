//! `[crowdsec]`: Tollgate as a bouncer of a CrowdSec Local API (bans
//! shared across a fleet) and, with machine credentials, as a signal
//! source reporting its detectors' bans. The section as written, its
//! checks, and the checked `CrowdSec`. An absent section turns both off.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use super::located::{Checker, ConfigError};

/// `[crowdsec]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CrowdSecFile {
    url: Spanned<String>,
    bouncer_key_file: Spanned<PathBuf>,
    poll_interval: Option<Spanned<String>>,
    resync_interval: Option<Spanned<String>>,
    origins: Option<Vec<String>>,
    scenarios: Option<Vec<String>>,
    machine_id: Option<Spanned<String>>,
    machine_password_file: Option<Spanned<PathBuf>>,
}

/// The Local API and how to use it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrowdSec {
    /// The Local API's base URL, without a trailing slash.
    pub url: String,
    /// A file holding this host's bouncer key (`cscli bouncers add`): one
    /// key per host, as the LAPI keeps one pull cursor per key.
    pub bouncer_key_file: PathBuf,
    pub poll_interval: Duration,
    /// How often the whole list is pulled again (`crowdsec::Pull`): the
    /// longest a decision the delta stream skipped waits.
    pub resync_interval: Duration,
    /// Only decisions of these origins (`crowdsec`, `cscli`, `CAPI`,
    /// `lists`...); empty: all.
    pub origins: Vec<String>,
    /// Only decisions whose scenario contains one of these; empty: all.
    pub scenarios: Vec<String>,
    /// Report the detectors' bans as alerts, logged in as this machine
    /// (`cscli machines add`).
    pub machine: Option<(String, PathBuf)>,
}

/// Poll bounds: faster than a second adds load for nothing the kernel
/// would see sooner; slower than ten minutes is not sharing.
const POLL: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(600));
/// Resync bounds: never faster than the polls it replaces; an hour at
/// most, as a skipped ban waits that long.
const RESYNC_MAX: Duration = Duration::from_secs(3600);
/// A whole list a minute: a skipped decision waits a minute at most, and a
/// community blocklist of tens of thousands is pulled 60 times an hour.
const RESYNC_DEFAULT: Duration = Duration::from_secs(60);

pub(super) fn crowdsec(
    c: &Checker,
    f: Option<&Spanned<CrowdSecFile>>,
) -> Result<Option<CrowdSec>, ConfigError> {
    let Some(f) = f else { return Ok(None) };
    let s = f.get_ref();
    let url = s.url.get_ref().trim().trim_end_matches('/').to_owned();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return Err(c.err(
            s.url.span(),
            "crowdsec.url",
            format!("{url:?} is not a Local API URL; write e.g. \"http://127.0.0.1:8080\""),
        ));
    }
    let poll_interval = c.duration(
        s.poll_interval.as_ref(),
        "crowdsec.poll_interval",
        POLL,
        "between 200ms and 10m",
        Duration::from_secs(2),
    )?;
    let resync_interval = c.duration(
        s.resync_interval.as_ref(),
        "crowdsec.resync_interval",
        (poll_interval, RESYNC_MAX),
        &format!(
            "between poll_interval ({}) and 1h: the whole list comes instead of a poll",
            humantime::format_duration(poll_interval)
        ),
        RESYNC_DEFAULT.max(poll_interval),
    )?;
    let machine = match (&s.machine_id, &s.machine_password_file) {
        (None, None) => None,
        (Some(id), Some(file)) => Some((id.get_ref().clone(), file.get_ref().clone())),
        (Some(id), None) => {
            return Err(c.err(
                id.span(),
                "crowdsec.machine_id",
                "reporting alerts needs machine_password_file too (the password `cscli machines add` set)",
            ));
        }
        (None, Some(file)) => {
            return Err(c.err(
                file.span(),
                "crowdsec.machine_password_file",
                "reporting alerts needs machine_id too (the name `cscli machines add` was given)",
            ));
        }
    };
    Ok(Some(CrowdSec {
        url,
        bouncer_key_file: s.bouncer_key_file.get_ref().clone(),
        poll_interval,
        resync_interval,
        origins: s.origins.clone().unwrap_or_default(),
        scenarios: s.scenarios.clone().unwrap_or_default(),
        machine,
    }))
}
