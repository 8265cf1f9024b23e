//! The Local API over HTTP (blocking, on the bouncer's own thread): the
//! decision stream with the bouncer key, the machine login and its JWT,
//! alerts, and usage metrics. Each failure says what was asked, of which
//! URL, and what to check.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::Value;

use super::decisions::Stream;
use crate::config::CrowdSec;

/// One request's deadline: a LAPI slower than this is as good as down.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The startup pull's: every decision in force, which from a community
/// blocklist is megabytes a LAPI may take a while to gather.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// A JWT is renewed when it has less than this left.
const RENEW_AHEAD: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum LapiError {
    /// No answer: refused, timed out, reset.
    #[error(
        "the Local API at {url} does not answer ({why}); is crowdsec running and listening there?"
    )]
    Unreachable { url: String, why: String },
    /// An answer, but not the one asked for.
    #[error("{what} at {url}: HTTP {status}: {body}{hint}")]
    Refused {
        what: &'static str,
        url: String,
        status: u16,
        body: String,
        hint: &'static str,
    },
    /// An answer that is not what the API documents.
    #[error("{what} at {url}: the answer cannot be read ({why}): {body}")]
    Garbled {
        what: &'static str,
        url: String,
        why: String,
        body: String,
    },
}

pub struct Lapi {
    agent: ureq::Agent,
    url: String,
    key: String,
    machine: Option<(String, String)>,
    token: Option<(String, SystemTime)>,
    user_agent: String,
    origins: String,
    scenarios: String,
}

/// What a usage-metrics report came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Usage {
    Sent,
    /// This LAPI has no such endpoint (before CrowdSec 1.6.3).
    Unsupported,
}

fn read_secret(path: &std::path::Path, what: &str, how: &str) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the {what} {}: {e}; {how}", path.display()))?;
    let s = s.trim().to_owned();
    if s.is_empty() {
        anyhow::bail!("the {what} {} is empty; {how}", path.display());
    }
    Ok(s)
}

impl Lapi {
    pub fn new(c: &CrowdSec) -> anyhow::Result<Self> {
        let key = read_secret(
            &c.bouncer_key_file,
            "bouncer key file",
            "write the key `cscli bouncers add NAME` printed into it (one key per host)",
        )?;
        let machine = match &c.machine {
            Some((id, file)) => Some((
                id.clone(),
                read_secret(
                    file,
                    "machine password file",
                    "write the password given to `cscli machines add` into it",
                )?,
            )),
            None => None,
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            agent,
            url: c.url.clone(),
            key,
            machine,
            token: None,
            user_agent: format!("tollgate/{}", env!("CARGO_PKG_VERSION")),
            origins: c.origins.join(","),
            scenarios: c.scenarios.join(","),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Decisions since the last pull (`startup`: every decision in force).
    pub fn stream(&self, startup: bool) -> Result<Stream, LapiError> {
        const WHAT: &str = "reading the decision stream";
        let url = format!("{}/v1/decisions/stream", self.url);
        let mut req = self
            .agent
            .get(&url)
            .header("X-Api-Key", &self.key)
            .header("User-Agent", &self.user_agent)
            .query("startup", if startup { "true" } else { "false" });
        if !self.origins.is_empty() {
            req = req.query("origins", &self.origins);
        }
        if !self.scenarios.is_empty() {
            req = req.query("scenarios_containing", &self.scenarios);
        }
        if startup {
            req = req.config().timeout_global(Some(STARTUP_TIMEOUT)).build();
        }
        let (status, body) = answer(req.call(), &url)?;
        if status != 200 {
            let hint = if status == 403 {
                "; the bouncer key is not known to this Local API: `cscli bouncers add NAME -k KEY` there, and the key in crowdsec.bouncer_key_file"
            } else {
                ""
            };
            return Err(refused(WHAT, &url, status, body, hint));
        }
        serde_json::from_str(&body).map_err(|e| garbled(WHAT, &url, e, body))
    }

    /// Posts `alerts` (a JSON array) as the configured machine.
    pub fn alerts(&mut self, alerts: &Value) -> Result<(), LapiError> {
        const WHAT: &str = "posting alerts";
        let url = format!("{}/v1/alerts", self.url);
        let body = alerts.to_string();
        for attempt in 0..2 {
            let token = self.token()?;
            let resp = self
                .agent
                .post(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .header("User-Agent", &self.user_agent)
                .header("Content-Type", "application/json")
                .send(&body);
            let (status, text) = answer(resp, &url)?;
            match status {
                200 | 201 => return Ok(()),
                // The token expired early (a LAPI restart): log in again.
                401 if attempt == 0 => self.token = None,
                _ => return Err(refused(WHAT, &url, status, text, "")),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// A valid JWT for the machine, logging in when there is none or it
    /// nears its end.
    fn token(&mut self) -> Result<String, LapiError> {
        if let Some((t, until)) = &self.token
            && until
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > RENEW_AHEAD)
        {
            return Ok(t.clone());
        }
        const WHAT: &str = "logging in as a machine";
        let url = format!("{}/v1/watchers/login", self.url);
        let Some((id, password)) = &self.machine else {
            return Err(refused(
                WHAT,
                &url,
                0,
                String::new(),
                "; no machine configured",
            ));
        };
        let body = serde_json::json!({
            "machine_id": id,
            "password": password,
            "scenarios": super::alerts::SCENARIOS,
        });
        let resp = self
            .agent
            .post(&url)
            .header("User-Agent", &self.user_agent)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_str());
        let (status, text) = answer(resp, &url)?;
        if status != 200 {
            let hint = if status == 401 || status == 403 {
                "; check crowdsec.machine_id and the password file (`cscli machines add ID --password ...`), and that the machine is validated"
            } else {
                ""
            };
            return Err(refused(WHAT, &url, status, text, hint));
        }
        #[derive(Deserialize)]
        struct Login {
            token: String,
            expire: String,
        }
        let l: Login = serde_json::from_str(&text).map_err(|e| garbled(WHAT, &url, e, text))?;
        let until = humantime::parse_rfc3339_weak(&l.expire)
            .or_else(|_| humantime::parse_rfc3339(&l.expire))
            .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(600));
        self.token = Some((l.token.clone(), until));
        Ok(l.token)
    }

    /// Reports usage (`POST /v1/usage-metrics`, CrowdSec 1.6.3 and later).
    pub fn usage(&self, report: &Value) -> Result<Usage, LapiError> {
        const WHAT: &str = "sending usage metrics";
        let url = format!("{}/v1/usage-metrics", self.url);
        let resp = self
            .agent
            .post(&url)
            .header("X-Api-Key", &self.key)
            .header("User-Agent", &self.user_agent)
            .header("Content-Type", "application/json")
            .send(report.to_string().as_str());
        match answer(resp, &url)? {
            (200 | 201, _) => Ok(Usage::Sent),
            (404 | 405, _) => Ok(Usage::Unsupported),
            (status, text) => Err(refused(WHAT, &url, status, text, "")),
        }
    }
}

/// The status and body of an answer, or why there was none.
fn answer(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    url: &str,
) -> Result<(u16, String), LapiError> {
    let mut resp = resp.map_err(|e| LapiError::Unreachable {
        url: url.to_owned(),
        why: e.to_string(),
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| LapiError::Unreachable {
            url: url.to_owned(),
            why: format!("reading the answer: {e}"),
        })?;
    Ok((status, body))
}

fn refused(
    what: &'static str,
    url: &str,
    status: u16,
    body: String,
    hint: &'static str,
) -> LapiError {
    LapiError::Refused {
        what,
        url: url.to_owned(),
        status,
        body: clip(body),
        hint,
    }
}

fn garbled(what: &'static str, url: &str, e: serde_json::Error, body: String) -> LapiError {
    LapiError::Garbled {
        what,
        url: url.to_owned(),
        why: e.to_string(),
        body: clip(body),
    }
}

/// A body short enough for a log line.
fn clip(mut s: String) -> String {
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s.trim().to_owned()
}
