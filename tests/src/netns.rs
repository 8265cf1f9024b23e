//! Network namespaces and veth pairs, cleaned up on drop (also while a
//! test panics).

use std::{
    fs::File,
    net::IpAddr,
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs a command and fails with the full command line and its stderr.
pub fn exec(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (is iproute2 installed? `cargo xtask setup`)"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    exec(Command::new("ip").args(args))
}

/// A network namespace named uniquely per process and call, deleted on drop.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `tg-<tag>-<pid>-<n>` with loopback up.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("tg-{tag}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <ns> <program>`, to add arguments to.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// `nsenter --net=<ns> <program>`: the network namespace only, so the
    /// program sees the host's mounts (bpffs included), unlike `ip netns
    /// exec`, which remounts /sys.
    pub fn nsenter(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.name))
            .arg(program);
        c
    }

    /// A veth pair: `name` (with `mac`) here, `peer` (with `peer_mac`, if
    /// given) in namespace `other`.
    pub fn veth(
        &self,
        name: &str,
        mac: &str,
        peer: &str,
        peer_mac: Option<&str>,
        other: &NetNs,
    ) -> anyhow::Result<()> {
        self.veth_queues(name, mac, peer, peer_mac, other, 1)
    }

    /// `veth` with `queues` receive and transmit queues on each end. A
    /// veth end takes frames sent to it with XDP (the generator's) on
    /// receive queue `sending CPU % queues`, each queue with its own NAPI
    /// run where the frames are sent: with a queue per CPU, a sender on
    /// each CPU is received on that CPU, as a NIC spreads its receive
    /// over queues and cores.
    pub fn veth_queues(
        &self,
        name: &str,
        mac: &str,
        peer: &str,
        peer_mac: Option<&str>,
        other: &NetNs,
        queues: usize,
    ) -> anyhow::Result<()> {
        let q = queues.to_string();
        let per_end = ["numrxqueues", q.as_str(), "numtxqueues", q.as_str()];
        let mut args = vec!["link", "add", name, "address", mac];
        args.extend(per_end);
        args.extend(["type", "veth", "peer", "name", peer]);
        if let Some(m) = peer_mac {
            args.extend(["address", m]);
        }
        args.extend(per_end);
        args.extend(["netns", other.name()]);
        self.ip(&args).map(|_| ())
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// The value of kernel counter `name` (`nstat -az`, absolute) in this
    /// namespace, such as `TcpExtSyncookiesSent`.
    pub fn nstat(&self, name: &str) -> anyhow::Result<u64> {
        let out = exec(self.command("nstat").args(["-az", name]))?;
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {name} in nstat's output in {}", self.name))
    }

    /// Runs `f` with the current thread inside this namespace, then moves
    /// the thread back (also if `f` panics).
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> anyhow::Result<T> {
        let here = File::open("/proc/thread-self/ns/net").context("opening this thread's netns")?;
        let there = File::open(format!("/var/run/netns/{}", self.name))
            .with_context(|| format!("opening netns {}", self.name))?;
        // SAFETY: setns on valid namespace fds affects only this thread.
        if unsafe { libc::setns(there.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "setns into {}: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        struct Back(File);
        impl Drop for Back {
            fn drop(&mut self) {
                // SAFETY: as above; going back to the namespace we came from.
                unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) };
            }
        }
        let _back = Back(here);
        Ok(f())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The server's address and prefix in the lab, from TEST-NET-1.
pub const SERVER_V4: &str = "192.0.2.1";
pub const SERVER_V6: &str = "2001:db8::1";
/// Fixed MACs so neighbour entries can be static (no ARP or ND flakes).
pub const SERVER_MAC: &str = "02:00:00:00:00:01";
pub const CLIENT_MAC: &str = "02:00:00:00:00:02";
/// Interface names inside the namespaces (the namespaces keep them apart).
pub const SERVER_IF: &str = "tg-srv";
pub const CLIENT_IF: &str = "tg-cli";

/// A server namespace and client namespaces. One client is joined to the
/// server by a veth pair; several are joined through a bridge in a switch
/// namespace, so the server still has one interface to attach to.
pub struct Lab {
    // Field order is drop order: clients, then the switch, then the server.
    pub clients: Vec<NetNs>,
    switch: Option<NetNs>,
    pub server: NetNs,
    /// Source addresses of each client, in `clients` order.
    pub client_addrs: Vec<Vec<IpAddr>>,
}

fn client_mac(i: usize) -> String {
    if i == 0 {
        CLIENT_MAC.to_owned()
    } else {
        format!("02:00:00:00:01:{:02x}", i)
    }
}

impl Lab {
    /// One client with the given source addresses (IPv4 from
    /// 192.0.2.0/24, IPv6 from 2001:db8::/64), joined directly.
    pub fn new(tag: &str, client_addrs: &[IpAddr]) -> anyhow::Result<Self> {
        let server = NetNs::new(&format!("{tag}-s"))?;
        let client = NetNs::new(&format!("{tag}-c"))?;
        server.veth(SERVER_IF, SERVER_MAC, CLIENT_IF, Some(CLIENT_MAC), &client)?;
        let lab = Self {
            clients: vec![client],
            switch: None,
            server,
            client_addrs: vec![client_addrs.to_vec()],
        };
        lab.configure()?;
        Ok(lab)
    }

    /// Several clients (each a namespace with its own addresses) behind a
    /// bridge, and the server on one veth to that bridge.
    pub fn switched(tag: &str, clients: &[&[IpAddr]]) -> anyhow::Result<Self> {
        let server = NetNs::new(&format!("{tag}-s"))?;
        let switch = NetNs::new(&format!("{tag}-w"))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        server.veth(SERVER_IF, SERVER_MAC, "p-srv", None, &switch)?;
        switch.ip(&["link", "set", "p-srv", "master", "br0", "up"])?;
        let mut namespaces = Vec::new();
        for i in 0..clients.len() {
            let ns = NetNs::new(&format!("{tag}-c{i}"))?;
            let port = format!("p-cli{i}");
            ns.veth(CLIENT_IF, &client_mac(i), &port, None, &switch)?;
            switch.ip(&["link", "set", &port, "master", "br0", "up"])?;
            namespaces.push(ns);
        }
        let lab = Self {
            clients: namespaces,
            switch: Some(switch),
            server,
            client_addrs: clients.iter().map(|a| a.to_vec()).collect(),
        };
        lab.configure()?;
        Ok(lab)
    }

    /// Addresses, links up, static neighbour entries both ways (no ARP or
    /// ND to flake), no default route anywhere.
    fn configure(&self) -> anyhow::Result<()> {
        self.server.ip(&["link", "set", SERVER_IF, "up"])?;
        self.server
            .ip(&["addr", "add", &format!("{SERVER_V4}/24"), "dev", SERVER_IF])?;
        self.server.ip(&[
            "addr",
            "add",
            &format!("{SERVER_V6}/64"),
            "dev",
            SERVER_IF,
            "nodad",
        ])?;
        for (i, (ns, addrs)) in self.clients.iter().zip(&self.client_addrs).enumerate() {
            ns.ip(&["link", "set", CLIENT_IF, "up"])?;
            for a in addrs {
                let cidr = match a {
                    IpAddr::V4(_) => format!("{a}/24"),
                    IpAddr::V6(_) => format!("{a}/64"),
                };
                let mut args = vec!["addr", "add", cidr.as_str(), "dev", CLIENT_IF];
                if a.is_ipv6() {
                    args.push("nodad");
                }
                ns.ip(&args)?;
                self.server.ip(&[
                    "neigh",
                    "replace",
                    &a.to_string(),
                    "lladdr",
                    &client_mac(i),
                    "dev",
                    SERVER_IF,
                    "nud",
                    "permanent",
                ])?;
            }
            for s in [SERVER_V4, SERVER_V6] {
                ns.ip(&[
                    "neigh",
                    "replace",
                    s,
                    "lladdr",
                    SERVER_MAC,
                    "dev",
                    CLIENT_IF,
                    "nud",
                    "permanent",
                ])?;
                // A host route to the server, so a client address outside
                // the server's prefix (2001:db8:66::1 next to 2001:db8::1)
                // still reaches it; the lab still has no default route.
                ns.ip(&["route", "replace", s, "dev", CLIENT_IF])?;
            }
        }
        Ok(())
    }

    /// The first (or only) client.
    pub fn client(&self) -> &NetNs {
        &self.clients[0]
    }

    /// Whether the lab has a switch namespace (several clients).
    pub fn is_switched(&self) -> bool {
        self.switch.is_some()
    }

    pub fn server_v4(&self) -> IpAddr {
        SERVER_V4.parse().expect("constant address")
    }

    pub fn server_v6(&self) -> IpAddr {
        SERVER_V6.parse().expect("constant address")
    }
}
