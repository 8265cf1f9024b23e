//! The daemon harness: `tollgate run --config` in the server namespace of
//! a lab, driven through the CLI like an operator drives it. One harness
//! for every test that runs the daemon (daemon, restart, capability,
//! attack, exporter, control, config, notify...) and for the bench's
//! daemon benchmarks; one way to find the `tollgate` binary for all of them
//! and for the demo.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use monitor_common::maps::LAYOUT_VERSION;
use serde_json::Value;

use crate::{Lab, NetNs, netns::SERVER_IF, traffic};

/// Where every harnessed daemon serves its metrics (inside its namespace).
pub const METRICS: &str = "127.0.0.1:9640";

/// The `tollgate` binary of this build. The demo and the bench run from
/// `target/<profile>/`, beside it; an integration test runs from
/// `target/<profile>/deps/`, one directory down. Cargo builds it for
/// `cargo xtask test`, `demo` and `bench`.
pub fn tollgate_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable's path");
    let mut dir = exe.parent().expect("the executable's directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("the profile directory");
    }
    let bin = dir.join("tollgate");
    assert!(
        bin.exists(),
        "{} is missing: run through `cargo xtask test`, `demo` or `bench`, which build it first (or `cargo build -p monitor`)",
        bin.display()
    );
    bin
}

/// Waits for `cond` to hold, checking every 100 ms, up to `limit`: a
/// deadline, not a timing assertion.
pub fn eventually<T>(what: &str, limit: Duration, cond: impl FnMut() -> Option<T>) -> T {
    eventually_or(what, limit, cond, String::new)
}

/// `eventually`, whose failure also says `why()` (what the components
/// involved hold), when that is not empty.
pub fn eventually_or<T>(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> Option<T>,
    why: impl FnOnce() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() >= limit {
            let why = why();
            if why.is_empty() {
                panic!("{what}: not within {limit:?}");
            }
            panic!("{what}: not within {limit:?}\n{why}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The config every harnessed daemon starts from: attached to `ifaces`,
/// read every `interval`, then `tables`; metrics on `METRICS`, and a
/// control socket, state file and pins of its own under `dir`.
pub fn base_config(
    dir: &Path,
    ifaces: &[&str],
    interval: &str,
    on_exit: &str,
    tables: &str,
) -> String {
    let ifaces = ifaces
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"interfaces = [{ifaces}]
interval = "{interval}"
{tables}[metrics]
listen = "{METRICS}"
[control]
socket = "{dir}/control.sock"
[state]
file = "{dir}/state.json"
pin_dir = "{pins}"
on_exit = "{on_exit}"
"#,
        dir = dir.display(),
        pins = pin_root(dir).display(),
    )
}

/// The tests' config: read every 200 ms, a default limit of 200 packets/s,
/// a management network, one deny rule from the config, JSON logs, then
/// `extra` tables.
pub fn config(dir: &Path, extra: &str) -> String {
    config_on(dir, &[SERVER_IF], extra)
}

/// `config` attached to `ifaces`.
pub fn config_on(dir: &Path, ifaces: &[&str], extra: &str) -> String {
    // A test (or bench) that wants the production cadence says so in
    // `extra` with `# interval = ...` and `# scan_interval = ...` lines.
    let set = |key: &str| {
        extra
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {key} = ")))
            .map_or("200ms", |v| v.trim_matches('"'))
    };
    let (interval, scan) = (set("interval"), set("scan_interval"));
    // A test with its own default limit brings the whole table.
    let default_limit = if extra.contains("[default_limit]") {
        ""
    } else {
        "[default_limit]\npackets_per_second = 200\nburst_packets = 100\n"
    };
    let on_exit = if extra.contains("# on_exit = keep") {
        "keep"
    } else {
        "detach"
    };
    let tables = format!(
        r#"[sources]
scan_interval = "{scan}"
{default_limit}[management]
cidrs = ["192.0.2.250/32"]
[[rule]]
cidr = "192.0.2.40/32"
action = "deny"
comment = "from the config"
"#
    );
    format!(
        "{}[log]\nformat = \"json\"\n{extra}",
        base_config(dir, ifaces, interval, on_exit, &tables)
    )
}

/// The daemon's own bpffs pin directory, named after its directory (tests
/// run in parallel).
pub fn pin_root(dir: &Path) -> PathBuf {
    Path::new("/sys/fs/bpf").join(dir.file_name().expect("daemon dir name"))
}

/// The pinned maps' directory of this build's layout under the pin root
/// of daemon directory `dir`.
pub fn layout_dir(dir: &Path) -> PathBuf {
    pin_root(dir).join(format!("v{LAYOUT_VERSION}"))
}

/// `tollgate run --config <config>` in `ns`, started through `launcher`
/// (a program and its arguments, such as setpriv) if not empty; `nsenter`
/// joins the network namespace only, so the daemon sees the host's bpffs.
pub fn run_command(ns: &NetNs, launcher: &[String], config: &Path) -> Command {
    let bin = tollgate_bin().to_str().expect("UTF-8 path").to_owned();
    let mut cmd = match launcher.split_first() {
        Some((program, args)) => {
            let mut c = ns.nsenter(program);
            c.args(args).arg(&bin);
            c
        }
        None => ns.nsenter(&bin),
    };
    cmd.args(["run", "--config"]).arg(config);
    cmd
}

/// A lab with a server namespace the daemon runs in: the one-link `Lab`
/// or the flood lab (`FloodLab`).
pub trait Host {
    fn server(&self) -> &NetNs;
}

impl Host for Lab {
    fn server(&self) -> &NetNs {
        &self.server
    }
}

impl Host for crate::flood_lab::FloodLab {
    fn server(&self) -> &NetNs {
        &self.server
    }
}

/// A lab with `tollgate run` in its server namespace; killed and cleaned up
/// (directory and pins) on drop.
pub struct Daemon<L: Host = Lab> {
    pub lab: L,
    pub dir: PathBuf,
    pub child: Option<Child>,
    /// A program (with arguments) `tollgate run` is started through, such
    /// as setpriv with a reduced capability set; empty: started directly.
    pub launcher: Vec<String>,
}

impl Daemon<Lab> {
    /// A lab with one client holding `clients`, and the daemon on the
    /// tests' config with `extra`.
    pub fn new(tag: &str, clients: &[&str], extra: &str) -> Self {
        Self::with_launcher(tag, clients, extra, Vec::new())
    }

    /// Like `new`, with the daemon started through `launcher`.
    pub fn with_launcher(tag: &str, clients: &[&str], extra: &str, launcher: Vec<String>) -> Self {
        let addrs: Vec<_> = clients.iter().map(|a| a.parse().unwrap()).collect();
        let lab = Lab::new(tag, &addrs).expect("building the lab");
        Self::launch(lab, tag, launcher, |dir| config(dir, extra))
    }

    /// Sends `count` UDP datagrams from `src` (IPv4 or IPv6) to the
    /// server's address of its family at `pps`; returns how many left.
    pub fn send(&self, src: &str, count: u64, pps: u64) -> u64 {
        let src: std::net::IpAddr = src.parse().unwrap();
        let dst = if src.is_ipv6() {
            self.lab.server_v6()
        } else {
            self.lab.server_v4()
        };
        traffic::udp(
            self.lab.client(),
            src,
            dst,
            9,
            count,
            pps,
            64,
            Duration::from_secs(20),
        )
        .expect("sending")
        .packets
    }
}

impl<L: Host> Daemon<L> {
    /// The daemon in `lab`'s server namespace, on the config `config`
    /// writes for the daemon's directory (see `base_config`).
    pub fn in_lab(lab: L, tag: &str, config: impl FnOnce(&Path) -> String) -> Self {
        Self::launch(lab, tag, Vec::new(), config)
    }

    fn launch(
        lab: L,
        tag: &str,
        launcher: Vec<String>,
        config: impl FnOnce(&Path) -> String,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("tg-daemon-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tollgate.toml"), config(&dir)).unwrap();
        let mut d = Self {
            lab,
            dir,
            child: None,
            launcher,
        };
        d.start();
        d
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// The pinned maps' directory for this build's layout.
    pub fn layout_dir(&self) -> PathBuf {
        layout_dir(&self.dir)
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running daemon").id()
    }

    /// Starts the daemon (its stderr to `daemon.log`) and waits until its
    /// control socket answers.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("daemon.log")).unwrap();
        let child = run_command(
            self.lab.server(),
            &self.launcher,
            &self.dir.join("tollgate.toml"),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting tollgate run");
        self.child = Some(child);
        eventually(
            "the daemon answering on its socket",
            Duration::from_secs(30),
            || {
                if let Some(c) = self.child.as_mut()
                    && let Ok(Some(status)) = c.try_wait()
                {
                    panic!("the daemon exited with {status}: {}", self.log());
                }
                self.cli(&["status", "--json"])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// The ban in force on exactly `cidr`, as `ban list --json` shows it.
    pub fn ban(&self, cidr: &str) -> Option<Value> {
        self.json(&["ban", "list"])["bans"]
            .as_array()?
            .iter()
            .find(|b| b["cidr"] == cidr)
            .cloned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// The id and kernel name of the XDP program attached to the server's
    /// interface (`ip -d link show` gives the id), if any.
    pub fn xdp_program(&self) -> Option<(u32, String)> {
        let out = self
            .lab
            .server()
            .ip(&["-d", "link", "show", "dev", SERVER_IF])
            .expect("ip link show");
        let at = out.find("prog/xdp id ")? + "prog/xdp id ".len();
        let id: u32 = out[at..].split_whitespace().next()?.parse().ok()?;
        let name = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == id)?
            .name_as_str()?
            .to_owned();
        Some((id, name))
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(tollgate_bin())
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .expect("running the tollgate CLI")
    }

    /// Runs a CLI command that must succeed and returns its `--json` answer.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "tollgate {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Runs a CLI command that must fail; returns its stderr.
    pub fn refused(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "tollgate {args:?} should have failed"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The exporter's `/metrics` page, fetched inside the server namespace
    /// (`None` if the exporter does not answer).
    pub fn metrics(&self) -> Option<String> {
        self.lab
            .server()
            .enter(|| http_get(METRICS, "/metrics"))
            .expect("entering the server namespace")
    }

    /// The kernel's record of `source` (packets, dropped), read through the
    /// CLI once the daemon's snapshot has it.
    pub fn source(&self, source: &str, packets_at_least: u64) -> (u64, u64) {
        eventually(
            &format!("{source} in `tollgate top`"),
            Duration::from_secs(10),
            || {
                let v = self.json(&["top", "-n", "100", "--by", "packets"]);
                v["sources"].as_array()?.iter().find_map(|s| {
                    let p = s["packets"].as_u64()?;
                    (s["source"] == source && p >= packets_at_least)
                        .then(|| (p, s["dropped"].as_u64().unwrap_or(0)))
                })
            },
        )
    }
}

impl<L: Host> Drop for Daemon<L> {
    fn drop(&mut self) {
        self.stop();
        // A test that kept its pins (or panicked) leaves nothing attached.
        let _ = std::fs::remove_dir_all(pin_root(&self.dir));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain HTTP/1.0 GET of `path` from `addr`: the body, if the server
/// answered.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_owned())
}

/// One line per event, for a failure's message.
pub fn brief(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {} {}",
                e["unix_ms"], e["kind"], e["detector"], e["source"], e["action"], e["evidence"]
            )
        })
        .collect()
}

/// The value of series `series` (its name and whole label set, as the
/// exporter writes them) in a Prometheus exposition `page`.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The daemon's event log, one JSON value per event.
pub fn events<L: Host>(d: &Daemon<L>) -> Vec<Value> {
    let out = d.cli(&["events", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect()
}

/// The finding for `source` by `detector`, once it is in the event log.
pub fn finding<L: Host>(d: &Daemon<L>, detector: &str, source: &str) -> Value {
    eventually(
        &format!("a {detector} finding for {source}"),
        Duration::from_secs(20),
        || {
            events(d).into_iter().find(|e| {
                e["kind"] == "detection"
                    && e["detector"] == detector
                    && (e["source"] == source || (source.is_empty() && e["source"].is_null()))
            })
        },
    )
}
