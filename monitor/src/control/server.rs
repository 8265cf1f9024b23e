//! The daemon's side of the control socket: binding it, checking each
//! peer's credentials, framing requests and responses, and keeping
//! hostile or stuck clients from crowding out the rest (`ClientLimits`).
//! What a request does is the `Handler`'s business (the daemon's
//! commands); this file knows nothing of the daemon.

use std::{
    collections::HashMap,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream, unix::OwnedWriteHalf},
};

use super::{
    peer::{Peer, peer_credentials},
    protocol::{MAX_REQUEST, Request, Response, parse_request},
};
use crate::{
    config::ClientLimits,
    groups::{group_id, user_in_group},
};

/// Answers one request; called on a blocking thread, one at a time per
/// connection.
/// Answers one request from a permitted peer (whose credentials the
/// daemon records as the actor of any change).
pub type Handler = Arc<dyn Fn(Request, Peer) -> Response + Send + Sync>;

/// Binds the control socket at `path`: a stale file removed, mode 0660,
/// group `group` if given. Returns the listener and the group's id.
pub fn bind(path: &Path, group: Option<&str>) -> anyhow::Result<(UnixListener, Option<u32>)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let l = UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    let gid = match group {
        Some(g) => {
            let gid = group_id(g)
                .with_context(|| format!("control.group: no group `{g}` on this host"))?;
            std::os::unix::fs::chown(path, None, Some(gid))?;
            Some(gid)
        }
        None => None,
    };
    Ok((l, gid))
}

/// The open connections: when each last finished a request, and how to
/// close it.
#[derive(Default)]
struct Connections {
    next: u64,
    open: HashMap<u64, (Instant, Option<tokio::task::AbortHandle>)>,
}

type Registry = Arc<Mutex<Connections>>;

fn lock(r: &Registry) -> std::sync::MutexGuard<'_, Connections> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts connections for ever, each served on its own task.
pub async fn serve(
    listener: UnixListener,
    allowed_gid: Option<u32>,
    handler: Handler,
    limits: ClientLimits,
) {
    let registry = Registry::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let id = admit(&registry, limits.max);
                let task = tokio::spawn(serve_client(
                    stream,
                    allowed_gid,
                    handler.clone(),
                    limits,
                    (registry.clone(), id),
                ));
                // The task may have ended already (a refused peer).
                if let Some(c) = lock(&registry).open.get_mut(&id) {
                    c.1 = Some(task.abort_handle());
                }
            }
            Err(e) => tracing::warn!(event = "control_accept_failed", "{e}"),
        }
    }
}

/// Registers a new connection; at `max`, first closes the one idle
/// longest.
fn admit(registry: &Registry, max: usize) -> u64 {
    let mut r = lock(registry);
    if r.open.len() >= max.max(1)
        && let Some((&oldest, _)) = r.open.iter().min_by_key(|(_, c)| c.0)
        && let Some((since, abort)) = r.open.remove(&oldest)
    {
        if let Some(a) = abort {
            a.abort();
        }
        tracing::warn!(
            event = "control_connection_evicted",
            idle_ms = since.elapsed().as_millis() as u64,
            "{max} control connections open: closed the one idle longest"
        );
    }
    let id = r.next;
    r.next += 1;
    r.open.insert(id, (Instant::now(), None));
    id
}

async fn send(w: &mut OwnedWriteHalf, resp: &Response, limit: Duration) -> std::io::Result<()> {
    let line = serde_json::to_string(resp).unwrap_or_default();
    match tokio::time::timeout(limit, w.write_all(format!("{line}\n").as_bytes())).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// The peer if it may use the socket (root, the daemon's own user and
/// members of the control group may), or why not.
fn admitted(stream: &UnixStream, allowed_gid: Option<u32>) -> Result<Peer, String> {
    use std::os::fd::AsRawFd;
    let peer = match peer_credentials(stream.as_raw_fd()) {
        Ok(p) => p,
        Err(e) => return Err(format!("cannot read your credentials: {e}")),
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let permitted = peer.uid == 0
        || peer.uid == me
        || allowed_gid.is_some_and(|g| user_in_group(peer.uid, peer.gid, g));
    if permitted {
        return Ok(peer);
    }
    tracing::warn!(
        event = "control_refused",
        uid = peer.uid,
        pid = peer.pid,
        "control request refused"
    );
    Err(format!(
        "permission denied: uid {} is not root{}",
        peer.uid,
        if allowed_gid.is_some() {
            " and not in the control group"
        } else {
            "; set control.group in the config to let a group in"
        }
    ))
}

/// Forgets a connection when its task ends, however it ends.
struct Registered(Registry, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.0).open.remove(&self.1);
    }
}

async fn serve_client(
    stream: UnixStream,
    allowed_gid: Option<u32>,
    handler: Handler,
    limits: ClientLimits,
    (registry, id): (Registry, u64),
) {
    let registered = Registered(registry, id);
    let admitted = admitted(&stream, allowed_gid);
    let (read, mut write) = stream.into_split();
    let peer = match admitted {
        Ok(p) => p,
        Err(msg) => {
            let _ = send(&mut write, &Response::error(msg), limits.send).await;
            return;
        }
    };
    let mut reader = BufReader::new(read);
    loop {
        let mut buf = Vec::new();
        let mut limited = (&mut reader).take(MAX_REQUEST as u64 + 1);
        let line = limited.read_until(b'\n', &mut buf);
        let n = match tokio::time::timeout(limits.idle, line).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return,
            Err(_) => {
                let idle = format!(
                    "no request for {}s; connection closed (connect again for the next)",
                    limits.idle.as_secs()
                );
                let _ = send(&mut write, &Response::error(idle), limits.send).await;
                return;
            }
        };
        if n == 0 {
            return;
        }
        if let Some(c) = lock(&registered.0).open.get_mut(&id) {
            c.0 = Instant::now();
        }
        let oversized = buf.len() > MAX_REQUEST && !buf.ends_with(b"\n");
        let resp = if oversized {
            Response::error(format!(
                "request longer than {MAX_REQUEST} bytes; refused (one request per line, a few hundred bytes each)"
            ))
        } else {
            match std::str::from_utf8(&buf)
                .map_err(|_| "the request is not UTF-8".to_owned())
                .and_then(|l| parse_request(l.trim()))
            {
                Err(e) => Response::error(e),
                Ok(req) => {
                    let handler = handler.clone();
                    tokio::task::spawn_blocking(move || handler(req.command, peer))
                        .await
                        .unwrap_or_else(|_| {
                            Response::error("the request handler failed; see the daemon's log")
                        })
                }
            }
        };
        if send(&mut write, &resp, limits.send).await.is_err() || oversized {
            return;
        }
    }
}
