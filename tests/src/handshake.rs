//! A Python client that downloads one URL over a fresh connection from a
//! given source address and reports what the kernel negotiated for it
//! (`TCP_INFO`: SACK, window scaling, timestamps) and how fast it went:
//! the SYN-cookie tests' proof that a real stack's handshake through the
//! XDP cookies keeps its options.

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::NetNs;

/// What one download saw.
#[derive(Clone, Copy, Debug, serde::Deserialize)]
pub struct Download {
    pub status: u16,
    /// Body bytes received.
    pub bytes: u64,
    pub secs: f64,
    /// `tcpi_options`: 1 timestamps, 2 SACK, 4 window scaling.
    pub options: u8,
    /// The window scale the server advertised, as the client applies it.
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
}

impl Download {
    pub fn sack(&self) -> bool {
        self.options & 2 != 0
    }
    pub fn wscale(&self) -> bool {
        self.options & 4 != 0
    }
    pub fn timestamps(&self) -> bool {
        self.options & 1 != 0
    }
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs / 1e6
    }
}

const SCRIPT: &str = r#"
import json, socket, sys, time
src, host, port, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(20)
s.bind((src, 0))
start = time.monotonic()
s.connect((host, port))
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
s.sendall(f"GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n".encode())
buf = bytearray()
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    buf += b
secs = time.monotonic() - start
head, _, body = bytes(buf).partition(b"\r\n\r\n")
status = int(head.split(b" ")[1])
print(json.dumps({"status": status, "bytes": len(body), "secs": secs,
    "options": info[5], "snd_wscale": info[6] & 15, "rcv_wscale": info[6] >> 4}))
"#;

/// Downloads `path` from `to` in `ns`, from source address `from`.
pub fn download(
    ns: &NetNs,
    from: std::net::IpAddr,
    to: SocketAddr,
    path: &str,
) -> anyhow::Result<Download> {
    let out = crate::netns::exec(
        ns.command("timeout")
            .args(["30", "python3", "-c", SCRIPT])
            .arg(from.to_string())
            .arg(to.ip().to_string())
            .arg(to.port().to_string())
            .arg(path),
    )
    .with_context(|| format!("downloading {path} from {to} as {from}"))?;
    serde_json::from_str(out.trim()).with_context(|| format!("the client's report: {out}"))
}
