//! What the daemon must not forget across restarts and reboots: rules and
//! limits changed at run time, and bans with their wall-clock expiry (the
//! kernel's clock restarts at boot, so bans are stored in Unix time and
//! converted back on load). Written atomically: a temporary file, fsync,
//! rename.

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub use crate::clock::unix_ms;
use crate::policy::{Action, LimitSpec, Rule, action_name};

pub const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedRule {
    pub cidr: String,
    pub action: String,
    #[serde(default)]
    pub limit: LimitSpec,
    #[serde(default)]
    pub monitor: bool,
    #[serde(default)]
    pub comment: Option<String>,
}

impl SavedRule {
    /// The state file's form of a runtime rule.
    pub fn new(rule: &Rule, comment: Option<String>) -> Self {
        Self {
            cidr: rule.net.to_string(),
            action: action_name(&rule.action).into(),
            limit: match &rule.action {
                Action::Limit(l) => LimitSpec::from_limit(l),
                _ => LimitSpec::default(),
            },
            monitor: rule.monitor,
            comment,
        }
    }

    /// The saved limit, read as written. Daemons before the byte rate
    /// needed a unit wrote bytes as bare numbers: those are bytes.
    pub fn limit_spec(&self) -> LimitSpec {
        let bytes = |v: &Option<String>| {
            v.as_ref().map(|t| {
                if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
                    format!("{t}B")
                } else {
                    t.clone()
                }
            })
        };
        LimitSpec {
            bytes_per_second: bytes(&self.limit.bytes_per_second),
            burst_bytes: bytes(&self.limit.burst_bytes),
            ..self.limit.clone()
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedBan {
    pub cidr: String,
    /// Unix time in ms.
    pub until_unix_ms: u64,
    #[serde(default)]
    pub reason: Option<String>,
    /// Who placed it (`cli`, `detector`, `crowdsec`); older files: unknown.
    #[serde(default = "unknown")]
    pub origin: String,
    #[serde(default)]
    pub scenario: Option<String>,
}

fn unknown() -> String {
    "unknown".into()
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub rules: Vec<SavedRule>,
    /// Runtime overrides of the default limit.
    #[serde(default)]
    pub default_limit: Option<SavedRule>,
    #[serde(default)]
    pub bans: Vec<SavedBan>,
    /// The daemon's own Prometheus counters (detections by detector, bans
    /// by reason), so they do not reset across restarts either.
    #[serde(default)]
    pub detections: std::collections::BTreeMap<String, u64>,
    #[serde(default)]
    pub bans_by_reason: std::collections::BTreeMap<String, u64>,
    /// Detector thresholds changed at run time, by `[detect]` key.
    #[serde(default)]
    pub thresholds: std::collections::BTreeMap<String, f64>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            version: VERSION,
            rules: Vec::new(),
            default_limit: None,
            bans: Vec::new(),
            detections: Default::default(),
            bans_by_reason: Default::default(),
            thresholds: Default::default(),
        }
    }
}

impl State {
    /// Reads the state file; a missing file is an empty state. A file this
    /// version cannot read is moved aside (never silently mis-read) and
    /// reported.
    pub fn load(path: &Path) -> anyhow::Result<(Self, Option<String>)> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Self::default(), None));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading the state file {}", path.display()));
            }
        };
        match serde_json::from_str::<State>(&text) {
            Ok(s) if s.version == VERSION => Ok((s, None)),
            Ok(s) => Ok((
                Self::default(),
                Some(set_aside(
                    path,
                    &format!("it has version {}, this daemon reads {VERSION}", s.version),
                )?),
            )),
            Err(e) => Ok((
                Self::default(),
                Some(set_aside(path, &format!("it is not valid: {e}"))?),
            )),
        }
    }

    /// Writes the state atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the state directory {}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(self)?;
        // 0600: bans and rules name addresses the operator may want kept
        // private; the daemon (root) is its only reader.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing the state file {}", tmp.display()))?;
        // An older file made with a wider mode keeps it through
        // truncation: narrow it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("replacing the state file {}", path.display()))?;
        Ok(())
    }
}

fn set_aside(path: &Path, why: &str) -> anyhow::Result<String> {
    let aside = PathBuf::from(format!("{}.unreadable-{}", path.display(), unix_ms()));
    std::fs::rename(path, &aside)
        .with_context(|| format!("moving the unreadable state file {} aside", path.display()))?;
    Ok(format!(
        "the state file {} was not used because {why}; it was moved to {} and the daemon starts without runtime rules and bans",
        path.display(),
        aside.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("tg-state-{}", std::process::id()));
        let path = dir.join("state.json");
        let s = State {
            bans: vec![SavedBan {
                cidr: "192.0.2.7/32".into(),
                until_unix_ms: 123,
                reason: Some("test".into()),
                origin: "cli".into(),
                scenario: None,
            }],
            ..State::default()
        };
        s.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the daemon reads it");
        assert_eq!(State::load(&path).unwrap(), (s, None));
        std::fs::write(&path, "{ not json").unwrap();
        let (empty, note) = State::load(&path).unwrap();
        assert_eq!(empty, State::default());
        assert!(note.unwrap().contains("moved to"));
        assert!(
            !path.exists(),
            "the bad file was moved aside, not overwritten"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A byte rate saved as a bare number by an earlier daemon still
    /// restores, as bytes.
    #[test]
    fn bare_byte_numbers_of_older_state_files_are_bytes() {
        let old: SavedRule = serde_json::from_str(
            r#"{"cidr":"192.0.2.0/24","action":"limit","limit":{"bytes_per_second":"10000000","burst_bytes":"2000000"}}"#,
        )
        .unwrap();
        let l = old.limit_spec().parse().unwrap();
        assert_eq!(
            l.bytes.map(|r| (r.per_sec, r.burst)),
            Some((10_000_000, 2_000_000))
        );
    }
}
