//! The CLI's side of the control socket: one connection, requests sent
//! and typed replies read back.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::de::DeserializeOwned;

use super::protocol::{Envelope, Request, Response, VERSION};

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
    // No `#[source]`: the message carries it, and anyhow's chain would
    // print it twice.
    #[error("talking to the daemon failed: {0}")]
    Io(std::io::Error),
    #[error("the daemon closed the connection without answering")]
    Closed,
    #[error(
        "the daemon's answer is not what this CLI expects ({0}); use the `tollgate` CLI of the daemon's release"
    )]
    Garbled(serde_json::Error),
    #[error("{0}")]
    Refused(String),
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
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

    /// Sends `request` and returns its reply (`R` is the request's type in
    /// `replies`, or `serde_json::Value`), or the daemon's error.
    pub fn call<R: DeserializeOwned>(&mut self, request: Request) -> Result<R, ClientError> {
        let line = serde_json::to_string(&Envelope {
            version: VERSION,
            command: request,
        })
        .map_err(ClientError::Garbled)?;
        let resp = self.raw(&line)?;
        if resp.ok {
            serde_json::from_value(resp.result.unwrap_or(serde_json::Value::Null))
                .map_err(ClientError::Garbled)
        } else {
            Err(ClientError::Refused(resp.error.unwrap_or_else(|| {
                "the daemon refused without saying why".into()
            })))
        }
    }
}
