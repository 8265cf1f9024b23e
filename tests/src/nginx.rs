//! Debian's nginx in a lab namespace: the real web server the SYN-cookie
//! tests measure clients against. One master and one worker, listening
//! only on the lab addresses it is given; config, pid file, logs, temp
//! paths and content in a directory of its own; stopped and removed on
//! drop (also while a test panics).

use std::{
    net::{IpAddr, SocketAddr},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{NetNs, http::fetch};

/// The small page at `/`.
pub const INDEX_BODY: &str = "ok\n";
/// The large file: its path and size (10 MiB of non-zero bytes).
pub const BIG_PATH: &str = "/10m";
pub const BIG_SIZE: u64 = 10 * 1024 * 1024;

/// How long a start may take before it counts as failed.
const START_LIMIT: Duration = Duration::from_secs(15);
/// How long a graceful stop may take before the processes are killed.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// An nginx serving `/` and `/10m` on lab addresses; stopped on drop.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    /// Where it listens, one per address.
    pub listen: Vec<SocketAddr>,
}

impl Nginx {
    /// Starts nginx in `ns` on `port` of each of `addrs` (IPv6 ones as
    /// `[addr]:port`), on CPU `cpu` if given, and waits until it answers
    /// on every one.
    pub fn start(
        ns: &NetNs,
        addrs: &[IpAddr],
        port: u16,
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!addrs.is_empty(), "nginx needs an address to listen on");
        let dir = std::env::temp_dir().join(format!("tg-nginx-{}-{port}", ns.name()));
        let listen: Vec<SocketAddr> = addrs.iter().map(|a| SocketAddr::new(*a, port)).collect();
        write_site(&dir, &listen)?;
        let mut cmd = match cpu {
            Some(c) => {
                let mut cmd = ns.command("taskset");
                cmd.args(["-c", &c.to_string(), "nginx"]);
                cmd
            }
            None => ns.command("nginx"),
        };
        // `ip netns exec` and `taskset` exec nginx, so the child is its
        // master; its own process group lets the drop reach the worker too.
        let child = cmd
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting nginx (is it installed? `cargo xtask setup`)")?;
        let mut server = Self { child, dir, listen };
        server.wait_ready(ns)?;
        Ok(server)
    }

    /// Waits until every address answers `/` with 200, or fails with
    /// nginx's error log if it exits or takes longer than `START_LIMIT`.
    fn wait_ready(&mut self, ns: &NetNs) -> anyhow::Result<()> {
        let start = Instant::now();
        for to in self.listen.clone() {
            loop {
                let got = ns.enter(|| fetch(None, to, "/", Duration::from_secs(1), 4096))?;
                if got.is_some_and(|f| f.status == 200) {
                    break;
                }
                if let Some(status) = self.child.try_wait()? {
                    anyhow::bail!("nginx exited with {status}: {}", self.error_log());
                }
                anyhow::ensure!(
                    start.elapsed() < START_LIMIT,
                    "nginx did not answer on {to} within {START_LIMIT:?}: {}",
                    self.error_log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The error log so far (for failure messages).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// The directory holding the config, logs and content.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SIGTERM: the master stops its worker and exits.
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < STOP_LIMIT {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (a stuck worker, or everything).
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The config and content in `dir`.
fn write_site(dir: &Path, listen: &[SocketAddr]) -> anyhow::Result<()> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).with_context(|| format!("creating {}", www.display()))?;
    std::fs::write(www.join("index.html"), INDEX_BODY)?;
    // Non-zero bytes: a dropped or zero-filled segment would show.
    let big: Vec<u8> = (0..BIG_SIZE).map(|i| (i % 251) as u8 + 1).collect();
    std::fs::write(www.join(BIG_PATH.trim_start_matches('/')), big)?;
    let listens: String = listen
        .iter()
        .map(|a| format!("        listen {a};\n"))
        .collect();
    let d = dir.display();
    let conf = format!(
        r#"# Written by the lab (tests/src/nginx.rs); removed on stop.
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 5s;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
{listens}        root {d}/www;
        index index.html;
    }}
}}
"#
    );
    std::fs::create_dir_all(dir.join("tmp"))?;
    std::fs::write(dir.join("nginx.conf"), conf)?;
    Ok(())
}

/// `curl` in `ns` from source `from` to `url`: the HTTP status and the
/// bytes downloaded, within `limit`.
pub fn curl(ns: &NetNs, from: IpAddr, url: &str, limit: Duration) -> anyhow::Result<(u16, u64)> {
    let out = crate::netns::exec(ns.command("curl").args([
        "--silent",
        "--show-error",
        "--interface",
        &from.to_string(),
        "--max-time",
        &limit.as_secs_f64().to_string(),
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code} %{size_download}",
        url,
    ]))?;
    let (code, size) = out
        .trim()
        .split_once(' ')
        .with_context(|| format!("curl wrote {out:?}"))?;
    Ok((code.parse()?, size.parse()?))
}
