//! A real CrowdSec Local API for the fleet tests, demo and bench: Debian's
//! `crowdsec -no-cs` on a config of its own (SQLite in a temporary
//! directory, the packaged hub and profiles) in a namespace of its own,
//! listening on 203.0.113.1:8080 on a bridge that each host of the fleet
//! joins with a veth (`join`: 203.0.113.10, .11, ...). `cscli` drives it
//! (decisions, bouncers, machines). Stopped and removed on drop.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{NetNs, netns::exec};

/// Where the LAPI listens, on its bridge.
pub const LAPI_ADDR: &str = "203.0.113.1";
pub const LAPI_PORT: u16 = 8080;
/// The hosts' side of the management network.
const HOSTS_NET: &str = "203.0.113";
/// The interface each host gets towards the LAPI.
pub const HOST_IF: &str = "tg-lapi";

pub struct Lapi {
    pub ns: NetNs,
    pub dir: PathBuf,
    child: Option<Child>,
    hosts: usize,
}

impl Lapi {
    /// A LAPI in a new namespace, answering; its own `cscli` machine
    /// (`localhost`) registered.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let ns = NetNs::new(&format!("{tag}-api"))?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["addr", "add", &format!("{LAPI_ADDR}/24"), "dev", "br0"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        let dir = std::env::temp_dir().join(format!("tg-lapi-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::write(dir.join("config.yaml"), config(&dir))?;
        std::fs::write(dir.join("simulation.yaml"), "simulation: off\n")?;
        std::fs::copy("/etc/crowdsec/profiles.yaml", dir.join("profiles.yaml")).context(
            "copying /etc/crowdsec/profiles.yaml (is crowdsec installed? `cargo xtask setup`)",
        )?;
        let mut lapi = Self {
            ns,
            dir,
            child: None,
            hosts: 0,
        };
        lapi.cscli(&["machines", "add", "localhost", "--auto", "--force"])?;
        lapi.start()?;
        Ok(lapi)
    }

    pub fn url(&self) -> String {
        format!("http://{LAPI_ADDR}:{LAPI_PORT}")
    }

    /// Connects `host`'s namespace to the LAPI's bridge (interface
    /// `HOST_IF`, 203.0.113.10 and up).
    pub fn join(&mut self, host: &NetNs) -> anyhow::Result<()> {
        let i = self.hosts;
        self.hosts += 1;
        let port = format!("h{i}");
        host.veth(
            HOST_IF,
            &format!("02:00:00:00:cc:{i:02x}"),
            &port,
            None,
            &self.ns,
        )?;
        self.ns.ip(&["link", "set", &port, "master", "br0", "up"])?;
        host.ip(&[
            "addr",
            "add",
            &format!("{HOSTS_NET}.{}/24", 10 + i),
            "dev",
            HOST_IF,
        ])?;
        host.ip(&["link", "set", HOST_IF, "up"])?;
        Ok(())
    }

    /// `cscli -c CONFIG args...` in the LAPI's namespace; its output.
    pub fn cscli(&self, args: &[&str]) -> anyhow::Result<String> {
        let config = self.dir.join("config.yaml");
        exec(self.ns.command("cscli").arg("-c").arg(&config).args(args))
    }

    /// A new bouncer named `name`; its key.
    pub fn bouncer(&self, name: &str) -> anyhow::Result<String> {
        let key = format!("tollgate-test-key-{name}-{}", std::process::id());
        self.cscli(&["bouncers", "add", name, "-k", &key])?;
        Ok(key)
    }

    /// A new machine named `name`; its password.
    pub fn machine(&self, name: &str) -> anyhow::Result<String> {
        let password = format!("tollgate-test-password-{name}-{}", std::process::id());
        self.cscli(&[
            "machines",
            "add",
            name,
            "--password",
            &password,
            "--force",
            "-f",
            "/dev/null",
        ])?;
        Ok(password)
    }

    /// Starts the LAPI and waits until it answers.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::File::create(self.dir.join("lapi.out"))?;
        let child = self
            .ns
            .command("crowdsec")
            .arg("-no-cs")
            .arg("-c")
            .arg(self.dir.join("config.yaml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting crowdsec -no-cs")?;
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if self.answers() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "the Local API did not answer within 30 s; its log: {}",
            std::fs::read_to_string(self.dir.join("crowdsec_api.log")).unwrap_or_default()
        )
    }

    /// Stops the LAPI (its database stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    fn answers(&self) -> bool {
        self.ns
            .enter(|| {
                std::net::TcpStream::connect_timeout(
                    &format!("{LAPI_ADDR}:{LAPI_PORT}").parse().unwrap(),
                    Duration::from_millis(200),
                )
                .is_ok()
            })
            .unwrap_or(false)
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A LAPI-only config in `dir`: SQLite there, the packaged hub.
fn config(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        r#"common:
  daemonize: false
  log_media: file
  log_level: info
  log_dir: {d}/
  working_dir: {d}
config_paths:
  config_dir: {d}/
  data_dir: {d}/data/
  simulation_path: {d}/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: {d}/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
cscli:
  output: human
db_config:
  type: sqlite
  db_path: {d}/data/crowdsec.db
  use_wal: false
api:
  client:
    credentials_path: {d}/local_api_credentials.yaml
  server:
    listen_uri: {LAPI_ADDR}:{LAPI_PORT}
    profiles_path: {d}/profiles.yaml
    trusted_ips:
      - {LAPI_ADDR}
prometheus:
  enabled: false
"#
    )
}
