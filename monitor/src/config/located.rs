//! Where a config error is. `ConfigError` prints `file:line: key:
//! message`; `Lines` turns the byte spans TOML gives into line numbers
//! and keys; `Checker` wraps the one parser of each operator value
//! (`policy::values`: CIDRs, limits, ban lengths; `units`: durations) so
//! that its message gets the place in front. The config adds no rule of
//! its own to those values: a limit written here is refused exactly as
//! the CLI or the control socket would refuse it, plus the file and line.

use std::{fmt, ops::Range, path::Path, time::Duration};

use ipnet::IpNet;
use toml::Spanned;

use super::schema::LimitFile;
use crate::{
    policy::{self, Limit, LimitField, Policy, PolicyError},
    units,
};

/// A config error: where it is and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the whole file is at fault.
    pub line: usize,
    /// Dotted key path, e.g. `rule[2].cidr`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.is_empty()) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (l, true) => write!(f, "{}:{l}: {}", self.file, self.message),
            (l, false) => write!(f, "{}:{l}: {}: {}", self.file, self.key, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Offsets of line starts, to turn byte spans into line numbers.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|s| *s <= offset)
    }

    /// The key written on the line of `offset`, qualified by the table
    /// header above it (`sources.ipv4_prefix`). Only for TOML's own
    /// errors, which carry a span but no key.
    fn key_at(&self, offset: usize) -> String {
        let n = self.line(offset);
        let text = |i: usize| {
            let start = self.starts[i - 1];
            let end = self.starts.get(i).copied().unwrap_or(self.text.len());
            self.text[start..end].trim()
        };
        let here = text(n);
        let key = here.split('=').next().unwrap_or("").trim();
        let key = if here.contains('=') { key } else { "" };
        let table = (1..=n)
            .rev()
            .map(text)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
        match (table, key.is_empty()) {
            (Some(t), false) => format!("{t}.{key}"),
            (Some(t), true) => t,
            (None, _) => key.to_owned(),
        }
    }
}

/// Turns spans into errors and runs the shared parsers on spanned values.
pub(super) struct Checker<'a> {
    file: String,
    lines: Lines<'a>,
    /// The kernel clock tick every burst must cover (`clock::coarse_tick_ns`).
    tick_ns: u64,
}

impl<'a> Checker<'a> {
    pub(super) fn new(path: &Path, text: &'a str, tick_ns: u64) -> Self {
        Self {
            file: path.display().to_string(),
            lines: Lines::new(text),
            tick_ns,
        }
    }

    /// An error at the line of `span`.
    pub(super) fn err(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.lines.line(span.start),
            key: key.into(),
            message: message.into(),
        }
    }

    /// An error about the whole file (no line).
    pub(super) fn whole(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: 0,
            key: String::new(),
            message: message.into(),
        }
    }

    /// The line `span` starts on.
    pub(super) fn line(&self, span: &Range<usize>) -> usize {
        self.lines.line(span.start)
    }

    /// A syntax or type error from TOML, with the key of its line.
    pub(super) fn toml(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim().to_owned();
        match e.span() {
            Some(span) => ConfigError {
                file: self.file.clone(),
                line: self.lines.line(span.start),
                key: self.lines.key_at(span.start),
                message,
            },
            None => ConfigError {
                key: self.lines.key_at(0),
                ..self.whole(message)
            },
        }
    }

    /// A number, or `default` when the key is absent; `check` says what is
    /// wrong with a written one.
    pub(super) fn number<T: Copy>(
        &self,
        v: &Option<Spanned<T>>,
        key: &str,
        default: T,
        check: impl FnOnce(T) -> Result<(), String>,
    ) -> Result<T, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => {
                check(*s.get_ref()).map_err(|m| self.err(s.span(), key, m))?;
                Ok(*s.get_ref())
            }
        }
    }

    /// A duration (`units::duration`) within `min..=max`, else
    /// `range_message`; `default` when the key is absent (as `number`).
    pub(super) fn duration(
        &self,
        s: Option<&Spanned<String>>,
        key: &str,
        (min, max): (Duration, Duration),
        range_message: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(s) = s else { return Ok(default) };
        let d = units::duration(s.get_ref()).map_err(|m| self.err(s.span(), key, m))?;
        if d < min || d > max {
            return Err(self.err(s.span(), key, range_message));
        }
        Ok(d)
    }

    /// An address or network (`policy::parse_cidr`).
    pub(super) fn cidr(&self, s: &Spanned<String>, key: &str) -> Result<IpNet, ConfigError> {
        policy::parse_cidr(s.get_ref()).map_err(|m| self.err(s.span(), key, m))
    }

    /// A ban's length (`policy::ban_ttl`).
    pub(super) fn ban_ttl(&self, s: &Spanned<String>, key: &str) -> Result<Duration, ConfigError> {
        policy::ban_ttl(s.get_ref()).map_err(|m| self.err(s.span(), key, m))
    }

    /// The limit under key `at` (`default_limit`, `rule[2]`), checked as
    /// the daemon will apply it: each number by `LimitField::parse`, the
    /// pairs by `limit_from_parts`, the bursts against the clock tick by
    /// `Policy::check_bursts`. `whole` is where to point when no single
    /// number is at fault.
    pub(super) fn limit(
        &self,
        l: &LimitFile,
        at: &str,
        whole: Range<usize>,
    ) -> Result<Limit, ConfigError> {
        let key = |f: LimitField| format!("{at}.{}", f.key());
        let span = |f: LimitField| l.get(f).map(|q| q.span()).unwrap_or(whole.clone());
        let at_field = |e: policy::LimitError| match e.field {
            Some(f) => self.err(span(f), key(f), e.message),
            None => self.err(whole.clone(), at, e.message),
        };
        let numbers = policy::parse_limit_numbers(|f| l.get(f).map(|q| q.get_ref().0.as_str()))
            .map_err(at_field)?;
        let limit = policy::limit_from_parts(numbers).map_err(at_field)?;
        // The same check `run` and `reload` make, on this limit alone so
        // the error can name it; its "default limit: " prefix is replaced
        // by the key.
        let alone = Policy {
            default: limit,
            ..Policy::default()
        };
        match alone.check_bursts(self.tick_ns) {
            Ok(()) => Ok(limit),
            Err(e @ PolicyError::BurstUnderTick { unit, .. }) => {
                let f = match unit {
                    "byte" => LimitField::BurstBytes,
                    _ => LimitField::BurstPackets,
                };
                let text = e.to_string();
                let message = text.strip_prefix("default limit: ").unwrap_or(&text);
                Err(self.err(span(f), key(f), message))
            }
            Err(e) => Err(self.err(whole, at, e.to_string())),
        }
    }
}
