//! The control protocol: newline-framed JSON, one request per line, one
//! response per line, versioned. A request is an `Envelope` around one
//! `Request`; a successful response carries that request's typed reply
//! (`replies`) as its `result`.

use serde::{Deserialize, Serialize};

use crate::policy::LimitSpec;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// Longest request line the daemon reads; a longer one is refused and the
/// connection closed (a rule or ban is a few hundred bytes).
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    Top {
        n: usize,
        /// `packets`, `bytes` or `drops`.
        by: String,
    },
    RulesList,
    RulesAdd {
        cidr: String,
        /// `allow`, `deny` or `limit`.
        action: String,
        #[serde(default)]
        limit: LimitSpec,
        #[serde(default)]
        monitor: bool,
        #[serde(default)]
        comment: Option<String>,
        /// Take a catch-all deny (`0.0.0.0/0`, `::/0`).
        #[serde(default)]
        force: bool,
    },
    RulesRemove {
        cidr: String,
    },
    LimitShow,
    /// Changes the default limit (no `cidr`) or a limit rule's numbers:
    /// the numbers given and the mode if given; the others stay.
    LimitSet {
        #[serde(default)]
        cidr: Option<String>,
        #[serde(default)]
        limit: LimitSpec,
        #[serde(default)]
        monitor: Option<bool>,
    },
    /// Drops the runtime change of the default limit (no `cidr`) or of a
    /// configured rule, so the config's value applies again.
    LimitReset {
        #[serde(default)]
        cidr: Option<String>,
    },
    BanAdd {
        cidr: String,
        /// A duration such as `10m`.
        ttl: String,
        #[serde(default)]
        reason: Option<String>,
        /// Take a catch-all ban (`0.0.0.0/0`, `::/0`).
        #[serde(default)]
        force: bool,
    },
    BanList,
    BanRemove {
        cidr: String,
    },
    Reload,
    /// The detectors: modes, thresholds, baselines, readings.
    DetectShow,
    /// Changes one threshold (a `[detect]` key) at run time.
    DetectSet {
        key: String,
        value: String,
    },
    /// Back to the config's value of `key`, or of every threshold.
    DetectReset {
        #[serde(default)]
        key: Option<String>,
    },
    /// What applies to one address now and what its next packet would get.
    Explain {
        addr: String,
    },
    /// Events after sequence number `since` (0: all that are kept).
    Events {
        #[serde(default)]
        since: u64,
    },
}

/// What goes on the wire: the protocol version and the request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    pub command: Request,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(result: serde_json::Value) -> Self {
        Self {
            version: VERSION,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            version: VERSION,
            ok: false,
            result: None,
            error: Some(message.into()),
        }
    }
}

/// Parses one request line; the error is what the client is told.
pub fn parse_request(line: &str) -> Result<Envelope, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        format!("the request is not JSON ({e}); send one JSON object per line, e.g. {{\"version\":1,\"command\":{{\"type\":\"status\"}}}}")
    })?;
    match v.get("version").and_then(|v| v.as_u64()) {
        Some(n) if n == VERSION as u64 => {}
        Some(n) => {
            return Err(format!(
                "protocol version {n} is not supported: this daemon speaks version {VERSION}; use the `tollgate` CLI of the same release"
            ));
        }
        None => {
            return Err(format!(
                "the request has no \"version\"; this daemon speaks version {VERSION}"
            ));
        }
    }
    serde_json::from_value(v).map_err(|e| format!("malformed request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_say_why() {
        let r = parse_request(
            r#"{"version":1,"command":{"type":"ban_add","cidr":"192.0.2.7/32","ttl":"10m"}}"#,
        )
        .unwrap();
        assert_eq!(
            r.command,
            Request::BanAdd {
                cidr: "192.0.2.7/32".into(),
                ttl: "10m".into(),
                reason: None,
                force: false,
            }
        );
        assert!(
            parse_request("hello")
                .unwrap_err()
                .starts_with("the request is not JSON")
        );
        assert_eq!(
            parse_request(r#"{"version":2,"command":{"type":"status"}}"#).unwrap_err(),
            "protocol version 2 is not supported: this daemon speaks version 1; use the `tollgate` CLI of the same release"
        );
        assert!(
            parse_request(r#"{"version":1,"command":{"type":"explode"}}"#)
                .unwrap_err()
                .starts_with("malformed request: unknown variant `explode`")
        );
        assert!(
            parse_request(r#"{"command":{"type":"status"}}"#)
                .unwrap_err()
                .contains("no \"version\"")
        );
    }
}
