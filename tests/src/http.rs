//! A real HTTP server in the server namespace (`python3 -m http.server`,
//! threaded) and a well-behaved client making requests at a fixed rate:
//! the attack tests' measure of whether legitimate users still get
//! through.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};

use crate::NetNs;

/// An HTTP server on `addr:port` in a namespace; stopped on drop.
pub struct HttpServer {
    child: Child,
    dir: std::path::PathBuf,
}

impl HttpServer {
    /// Starts the server on `addr:port` in `ns`, on CPU `cpu` if given, and
    /// waits until it answers.
    pub fn start(ns: &NetNs, addr: IpAddr, port: u16, cpu: Option<usize>) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("tg-www-{}-{}", ns.name(), port));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("index.html"), "ok\n")?;
        let mut cmd = match cpu {
            Some(c) => {
                let mut cmd = ns.command("taskset");
                cmd.args(["-c", &c.to_string(), "python3"]);
                cmd
            }
            None => ns.command("python3"),
        };
        let child = cmd
            .args(["-m", "http.server", "--bind", &addr.to_string()])
            .arg(port.to_string())
            .arg("--directory")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting python3 -m http.server")?;
        let server = Self { child, dir };
        // Ready when it answers.
        let to = SocketAddr::new(addr, port);
        let start = Instant::now();
        while ns.enter(|| get(to, Duration::from_secs(1)))? != Some(200) {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(15),
                "the HTTP server did not answer on {to} within 15 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `GET /`: the status code, or None on any failure or timeout.
fn get(to: SocketAddr, timeout: Duration) -> Option<u16> {
    fetch(None, to, "/", timeout, 4096).map(|f| f.status)
}

/// What one request got.
#[derive(Clone, Copy, Debug)]
pub struct Fetched {
    pub status: u16,
    /// Bytes received after the status line's first 12 bytes (headers
    /// and body).
    pub bytes: u64,
}

/// One `GET path` with `Connection: close` from `from` (any source if
/// None) to `to`, read to the end: the status and size, or None on any
/// failure, if `deadline` (covering connect, request and response)
/// passes, or past `max_bytes`.
pub fn fetch(
    from: Option<IpAddr>,
    to: SocketAddr,
    path: &str,
    deadline: Duration,
    max_bytes: u64,
) -> Option<Fetched> {
    let end = Instant::now() + deadline;
    let left = || {
        end.checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    };
    let sock = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP)).ok()?;
    if let Some(a) = from {
        // The port is chosen at connect time, as for a client that does
        // not bind: the kernel then walks the ports per destination and
        // does not reuse a 4-tuple the server (or its conntrack) may still
        // hold in TIME_WAIT, which a port picked at bind time soon does.
        bind_address_no_port(&sock).ok()?;
        sock.bind(&SocketAddr::new(a, 0).into()).ok()?;
    }
    sock.connect_timeout(&to.into(), left()?).ok()?;
    let mut s = TcpStream::from(sock);
    s.set_write_timeout(Some(left()?)).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: tollgate-lab\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.set_read_timeout(Some(left()?)).ok()?;
    s.read_exact(&mut head).ok()?;
    let status = std::str::from_utf8(&head)
        .ok()?
        .strip_prefix("HTTP/1.")?
        .get(2..5)?
        .parse()
        .ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    // Bounded by the deadline and by `max_bytes`.
    loop {
        s.set_read_timeout(Some(left()?)).ok()?;
        match s.read(&mut buf).ok()? {
            0 => return Some(Fetched { status, bytes }),
            n => bytes += n as u64,
        }
        if bytes > max_bytes {
            return None;
        }
    }
}

/// What the well-behaved client saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Requests {
    pub ok: u64,
    pub total: u64,
}

impl Requests {
    pub fn success(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.ok as f64 / self.total as f64
        }
    }
}

/// `rate` requests per second to `to` from `ns` for `duration`, each
/// allowed `timeout`, on CPU `cpu` if given; counts the 200s. Requests are
/// started on schedule from a few threads, so one slow request does not
/// delay the next.
pub fn client(
    ns: &NetNs,
    to: SocketAddr,
    rate: u64,
    duration: Duration,
    timeout: Duration,
    cpu: Option<usize>,
) -> anyhow::Result<Requests> {
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = Instant::now();
    let ok = std::sync::atomic::AtomicU64::new(0);
    // Enough workers that `timeout`-long failures never hold up the
    // schedule.
    let workers = ((timeout.as_secs_f64() / interval.as_secs_f64()).ceil() as u64 + 2).min(64);
    ns.enter(|| {
        std::thread::scope(|s| {
            for w in 0..workers {
                let ok = &ok;
                s.spawn(move || {
                    if let Some(c) = cpu {
                        crate::traffic::pin_thread(c).expect("pinning the client");
                    }
                    let mut i = w;
                    while i < total {
                        let due = interval * i as u32;
                        let now = start.elapsed();
                        if now < due {
                            std::thread::sleep(due - now);
                        }
                        if get(to, timeout) == Some(200) {
                            ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        i += workers;
                    }
                });
            }
        })
    })?;
    Ok(Requests {
        ok: ok.into_inner(),
        total,
    })
}

/// `IP_BIND_ADDRESS_NO_PORT` (Linux 4.2; IPv4 and IPv6 sockets alike).
fn bind_address_no_port(sock: &Socket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
