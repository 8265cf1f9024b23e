//! A real CrowdSec Local API for the fleet tests, demo and bench: Debian's
//! `crowdsec -no-cs` on a config of its own (SQLite in a temporary
//! directory, the packaged hub and profiles) in a namespace of its own,
//! listening on 203.0.113.1:8080 on a bridge that each host of the fleet
//! joins with a veth (`join`: 203.0.113.10, .11, ...). `cscli` drives it
//! (decisions, bouncers, machines). Stopped and removed on drop. CrowdSec's
//! own firewall bouncer (`FirewallBouncer`, nftables mode, its default
//! 10 s poll) runs in a host's namespace for the bench to compare with.

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

    /// One delta pull (`startup=false`) of the decision stream with bouncer
    /// key `key`, as a bouncer would make it; the answer's body. A pull
    /// with a host's own key moves that key's cursor, so the host's next
    /// delta skips what this one returned.
    pub fn pull_with(&self, key: &str) -> anyhow::Result<String> {
        use std::io::{Read as _, Write as _};
        let answer = self.ns.enter(|| -> anyhow::Result<String> {
            let mut c = std::net::TcpStream::connect((LAPI_ADDR, LAPI_PORT))?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                c,
                "GET /v1/decisions/stream?startup=false HTTP/1.1\r\nHost: {LAPI_ADDR}\r\nX-Api-Key: {key}\r\nConnection: close\r\n\r\n"
            )?;
            let mut text = String::new();
            c.read_to_string(&mut text)?;
            Ok(text)
        })??;
        match answer.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
            _ => bail!("the decision stream with key {key}: {answer}"),
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

/// A host's credentials with the LAPI: a bouncer key of its own and, to
/// report its detectors' bans, a machine.
pub struct Credentials {
    pub key: String,
    pub machine: Option<(String, String)>,
}

impl Lapi {
    /// Credentials for host `tag` (a machine too when `machine`).
    pub fn credentials(&self, tag: &str, machine: bool) -> anyhow::Result<Credentials> {
        Ok(Credentials {
            key: self.bouncer(tag)?,
            machine: if machine {
                Some((tag.to_owned(), self.machine(tag)?))
            } else {
                None
            },
        })
    }
}

impl Lapi {
    /// A daemon in `lab` with credentials of its own (a machine too when
    /// `machine`) pulling every `poll`: `config` writes its file around
    /// the `[crowdsec]` section it is given, for the daemon's directory.
    pub fn host(
        &self,
        lab: crate::Lab,
        tag: &str,
        machine: bool,
        poll: &str,
        config: impl FnOnce(&std::path::Path, &str) -> String,
    ) -> anyhow::Result<crate::daemon::Daemon> {
        let creds = self.credentials(tag, machine)?;
        let url = self.url();
        Ok(crate::daemon::Daemon::in_lab(lab, tag, |dir| {
            config(dir, &creds.section(dir, &url, poll))
        }))
    }
}

impl Credentials {
    /// The daemon's `[crowdsec]` section for `url` polling every `poll`,
    /// its secrets written into `dir` (the daemon's directory).
    pub fn section(&self, dir: &std::path::Path, url: &str, poll: &str) -> String {
        let key = dir.join("bouncer.key");
        std::fs::write(&key, format!("{}\n", self.key)).expect("writing the bouncer key");
        let mut s = format!(
            "[crowdsec]\nurl = \"{url}\"\nbouncer_key_file = \"{}\"\npoll_interval = \"{poll}\"\n",
            key.display()
        );
        if let Some((id, pw)) = &self.machine {
            let file = dir.join("machine.pw");
            std::fs::write(&file, pw).expect("writing the machine password");
            s.push_str(&format!(
                "machine_id = \"{id}\"\nmachine_password_file = \"{}\"\n",
                file.display()
            ));
        }
        s
    }
}

/// CrowdSec's firewall bouncer (Debian's `crowdsec-firewall-bouncer`,
/// nftables mode, its default `update_frequency` of 10 s) in `host`'s
/// namespace, pulling from `lapi` with key `key`. Killed on drop.
pub struct FirewallBouncer {
    child: Child,
    ns_name: String,
    dir: PathBuf,
}

impl FirewallBouncer {
    pub fn start(lapi: &Lapi, host: &NetNs, key: &str) -> anyhow::Result<Self> {
        let dir = lapi.dir.join(format!("fwb-{}", host.name()));
        std::fs::create_dir_all(&dir)?;
        let d = dir.display();
        let url = lapi.url();
        std::fs::write(
            dir.join("bouncer.yaml"),
            format!(
                "mode: nftables\npid_dir: {d}/\nupdate_frequency: 10s\ndaemonize: false\nlog_mode: file\nlog_dir: {d}/\nlog_level: info\napi_url: {url}/\napi_key: {key}\ndisable_ipv6: false\ndeny_action: DROP\ndeny_log: false\nsupported_decisions_types:\n  - ban\nblacklists_ipv4: crowdsec-blacklists\nblacklists_ipv6: crowdsec6-blacklists\nnftables:\n  ipv4:\n    enabled: true\n    set-only: false\n    table: crowdsec\n    chain: crowdsec-chain\n  ipv6:\n    enabled: true\n    set-only: false\n    table: crowdsec6\n    chain: crowdsec6-chain\nprometheus:\n  enabled: false\n"
            ),
        )?;
        let log = std::fs::File::create(dir.join("bouncer.out"))?;
        let child = host
            .command("crowdsec-firewall-bouncer")
            .arg("-c")
            .arg(dir.join("bouncer.yaml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting crowdsec-firewall-bouncer (`cargo xtask setup` installs it)")?;
        Ok(Self {
            child,
            ns_name: host.name().to_owned(),
            dir,
        })
    }

    /// Whether `ip` is in the bouncer's nftables set (dropped by it).
    pub fn has(&self, ip: &str) -> bool {
        let (family, table, set) = if ip.contains(':') {
            ("ip6", "crowdsec6", "crowdsec6-blacklists")
        } else {
            ("ip", "crowdsec", "crowdsec-blacklists")
        };
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_name,
                "nft",
                "list",
                "set",
                family,
                table,
                set,
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(ip))
    }

    /// Its log, for a failure's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bouncer.out")).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.join("crowdsec-firewall-bouncer.log"))
                .unwrap_or_default()
    }
}

impl Drop for FirewallBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
