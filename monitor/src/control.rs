//! The control socket: a small versioned protocol of newline-framed JSON,
//! the client the CLI uses, and the server-side framing and credential
//! checks. One request per line, one response per line.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// Longest request line the daemon reads; a longer one is refused and the
/// connection closed (a rule or ban is a few hundred bytes).
pub const MAX_REQUEST: usize = 64 * 1024;

/// A limit as the CLI and the state file write it: units as strings.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_per_second: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_packets: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_bytes: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
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
    },
    RulesRemove {
        cidr: String,
    },
    LimitShow,
    /// Sets the default limit (no `cidr`) or a limit rule's numbers.
    LimitSet {
        #[serde(default)]
        cidr: Option<String>,
        limit: LimitSpec,
        #[serde(default)]
        monitor: Option<bool>,
    },
    BanAdd {
        cidr: String,
        /// A duration such as `10m`.
        ttl: String,
        #[serde(default)]
        reason: Option<String>,
    },
    BanList,
    BanRemove {
        cidr: String,
    },
    Reload,
    /// Events after sequence number `since` (0: all that are kept).
    Events {
        #[serde(default)]
        since: u64,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    pub command: Command,
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
pub fn parse_request(line: &str) -> Result<Request, String> {
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

/// A connection to the daemon's control socket.
pub struct Client {
    reader: BufReader<UnixStream>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to the daemon at {path}: {source}; is `tollgate run` running, and may you use its socket (root, or the configured group)?"
    )]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the daemon failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon closed the connection without answering")]
    Closed,
    #[error("the daemon's answer is not a response: {0}")]
    Garbled(serde_json::Error),
    #[error("{0}")]
    Refused(String),
}

impl Client {
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// Sends a raw line (tests use this for malformed requests) and reads
    /// the response.
    pub fn raw(&mut self, line: &str) -> Result<Response, ClientError> {
        let s = self.reader.get_mut();
        // The daemon may answer (and close) before reading our request, as
        // it does for a peer it refuses: read its answer even if the write
        // failed.
        let written = s
            .write_all(line.as_bytes())
            .and_then(|_| s.write_all(b"\n"));
        let mut out = String::new();
        match self.reader.read_line(&mut out) {
            Ok(n) if n > 0 => serde_json::from_str(&out).map_err(ClientError::Garbled),
            _ => Err(written.err().map_or(ClientError::Closed, ClientError::Io)),
        }
    }

    /// Sends `command` and returns its result, or the daemon's error.
    pub fn call(&mut self, command: Command) -> Result<serde_json::Value, ClientError> {
        let line = serde_json::to_string(&Request {
            version: VERSION,
            command,
        })
        .map_err(ClientError::Garbled)?;
        let resp = self.raw(&line)?;
        if resp.ok {
            Ok(resp.result.unwrap_or(serde_json::Value::Null))
        } else {
            Err(ClientError::Refused(resp.error.unwrap_or_else(|| {
                "the daemon refused without saying why".into()
            })))
        }
    }
}

/// The peer's credentials on a Unix socket (SO_PEERCRED).
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

pub fn peer_credentials(fd: std::os::fd::RawFd) -> std::io::Result<Peer> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writing; fd is a connected socket.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Peer {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Group id of `name`, if the group exists.
pub fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam returns a pointer into static storage or null; we
    // read one field right away.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        None
    } else {
        Some(unsafe { (*g).gr_gid })
    }
}

/// Whether the user `uid` is a member of group `gid` (primary or
/// supplementary), read from the group database.
pub fn user_in_group(uid: u32, primary_gid: u32, gid: u32) -> bool {
    if primary_gid == gid {
        return true;
    }
    // SAFETY: getpwuid/getgrgid return static storage or null; read at once.
    unsafe {
        let pw = libc::getpwuid(uid);
        let gr = libc::getgrgid(gid);
        if pw.is_null() || gr.is_null() {
            return false;
        }
        let user = std::ffi::CStr::from_ptr((*pw).pw_name);
        let mut m = (*gr).gr_mem;
        while !m.is_null() && !(*m).is_null() {
            if std::ffi::CStr::from_ptr(*m) == user {
                return true;
            }
            m = m.add(1);
        }
    }
    false
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
            Command::BanAdd {
                cidr: "192.0.2.7/32".into(),
                ttl: "10m".into(),
                reason: None
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
