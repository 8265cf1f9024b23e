//! The lab for spoofed floods: a server namespace with two veths, one to a
//! clients namespace (the legitimate clients, each with many source
//! addresses) and one to an attacker namespace (the generator). The server
//! routes every documentation address that is not a client's back to the
//! attacker's link, so its SYN-ACKs to spoofed sources go there and never
//! reach the clients; the attacker's end runs `tollgate_sink` (XDP_DROP),
//! which absorbs them for almost nothing and lets the veth deliver frames
//! sent to it with XDP_TX (Tollgate's SYN-ACKs); the clients' end runs
//! `tollgate_floor` (XDP_PASS) for the same reason. No default route anywhere;
//! static neighbour entries everywhere (no ARP or ND to flake).
//!
//! ```text
//!  clients ns                 server ns                      attacker ns
//!  tg-cli  ─────────────────  tg-srv   tg-atk  ───────────  tg-flood (sink)
//!  192.0.2.130..   (/26)      192.0.2.1/32                  the generator
//!  2001:db8::100..  (/64)     2001:db8::1/64                sends from here
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{
    NetNs,
    flood::Sink,
    netns::{CLIENT_IF, CLIENT_MAC, SERVER_IF, SERVER_MAC, SERVER_V4, SERVER_V6},
};

/// The server's interface towards the attacker. It has the same MAC as
/// `SERVER_IF` (another link), so the generator's frames, built for
/// `SERVER_MAC`, are addressed to it.
pub const ATTACK_IF: &str = "tg-atk";
/// The attacker's end, where the generator sends from.
pub const FLOOD_IF: &str = "tg-flood";
pub const ATTACKER_MAC: &str = "02:00:00:00:00:04";

/// The clients' subnet: 192.0.2.128/26, routed to the clients' link.
pub const CLIENTS_V4: &str = "192.0.2.128/26";
/// The server's gateways on the attacker's link (never answered: the
/// sink drops everything there, so their neighbour entries are static).
const GATEWAY_V4: &str = "192.0.2.254";
const GATEWAY_V6: &str = "2001:db8:ffff::1";

/// The spoofed IPv4 sources a flood draws from: all three documentation
/// /24s but the server (192.0.2.1), the clients' /26 and the network and
/// broadcast addresses of 192.0.2.0/24.
pub const FLOOD_SOURCES_V4: [(Ipv4Addr, u32); 4] = [
    (Ipv4Addr::new(192, 0, 2, 2), 126),
    (Ipv4Addr::new(192, 0, 2, 192), 63),
    (Ipv4Addr::new(198, 51, 100, 0), 256),
    (Ipv4Addr::new(203, 0, 113, 0), 256),
];

/// Most client addresses per family (the /26 less its first two).
pub const MAX_CLIENTS: usize = 60;

/// Client address `i` of each family: 192.0.2.130 + i, 2001:db8::100 + i.
pub fn client_v4(i: usize) -> Ipv4Addr {
    assert!(i < MAX_CLIENTS, "at most {MAX_CLIENTS} client addresses");
    Ipv4Addr::new(192, 0, 2, 130 + i as u8)
}

pub fn client_v6(i: usize) -> Ipv6Addr {
    assert!(i < MAX_CLIENTS, "at most {MAX_CLIENTS} client addresses");
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100 + i as u16)
}

/// The three namespaces, their links and the sink.
pub struct FloodLab {
    // Field order is drop order: the programs before the namespaces.
    _sink: Sink,
    /// XDP_PASS on the clients' end: it takes the SYN-ACKs Tollgate sends
    /// with XDP_TX at once (see `Sink`).
    _pass: Sink,
    pub clients: NetNs,
    pub attacker: NetNs,
    pub server: NetNs,
    /// The clients' source addresses, IPv4 then IPv6.
    pub client_addrs: Vec<IpAddr>,
}

impl FloodLab {
    /// A lab whose clients namespace has `n` IPv4 and `n` IPv6 addresses.
    pub fn new(tag: &str, n: usize) -> anyhow::Result<Self> {
        Self::with_queues(tag, n, 1)
    }

    /// `new`, with the attacker's link received on one queue per CPU
    /// (`NetNs::veth_queues`): a generator on each CPU
    /// (`Generator::send_from`) is received on that CPU, as a NIC spreads
    /// a flood of many sources over its queues and cores.
    pub fn spread(tag: &str, n: usize) -> anyhow::Result<Self> {
        Self::with_queues(tag, n, Self::cpus().len())
    }

    /// The CPUs a spread lab receives on, one queue each: the generator
    /// sends from each (`Generator::send_from`).
    pub fn cpus() -> Vec<usize> {
        (0..std::thread::available_parallelism().map_or(1, |c| c.get())).collect()
    }

    fn with_queues(tag: &str, n: usize, queues: usize) -> anyhow::Result<Self> {
        let server = NetNs::new(&format!("{tag}-s"))?;
        let clients = NetNs::new(&format!("{tag}-c"))?;
        let attacker = NetNs::new(&format!("{tag}-a"))?;
        server.veth(SERVER_IF, SERVER_MAC, CLIENT_IF, Some(CLIENT_MAC), &clients)?;
        server.veth_queues(
            ATTACK_IF,
            SERVER_MAC,
            FLOOD_IF,
            Some(ATTACKER_MAC),
            &attacker,
            queues,
        )?;
        let client_addrs = (0..n)
            .map(|i| IpAddr::V4(client_v4(i)))
            .chain((0..n).map(|i| IpAddr::V6(client_v6(i))))
            .collect();
        for (ns, ifs) in [
            (&server, &[SERVER_IF, ATTACK_IF][..]),
            (&clients, &[CLIENT_IF][..]),
            (&attacker, &[FLOOD_IF][..]),
        ] {
            for i in ifs {
                ns.ip(&["link", "set", i, "up"])?;
            }
        }
        let sink = Sink::attach(&attacker, FLOOD_IF)?;
        let pass = Sink::pass(&clients, CLIENT_IF)?;
        let lab = Self {
            _sink: sink,
            _pass: pass,
            clients,
            attacker,
            server,
            client_addrs,
        };
        lab.server_side()?;
        lab.clients_side()?;
        Ok(lab)
    }

    /// The server's addresses, routes and neighbours.
    fn server_side(&self) -> anyhow::Result<()> {
        let s = &self.server;
        s.ip(&["addr", "add", &format!("{SERVER_V4}/32"), "dev", SERVER_IF])?;
        s.ip(&["route", "add", CLIENTS_V4, "dev", SERVER_IF])?;
        let v6 = format!("{SERVER_V6}/64");
        s.ip(&["addr", "add", &v6, "dev", SERVER_IF, "nodad"])?;
        for range in ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"] {
            s.ip(&[
                "route", "add", range, "via", GATEWAY_V4, "dev", ATTACK_IF, "onlink",
            ])?;
        }
        s.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8::/32",
            "via",
            GATEWAY_V6,
            "dev",
            ATTACK_IF,
            "onlink",
        ])?;
        for gw in [GATEWAY_V4, GATEWAY_V6] {
            neighbour(s, gw, ATTACKER_MAC, ATTACK_IF)?;
        }
        for a in &self.client_addrs {
            neighbour(s, &a.to_string(), CLIENT_MAC, SERVER_IF)?;
        }
        // Receive offload on the server's links, as a NIC has it: it is
        // also what makes a veth without an XDP program take frames sent
        // to it with XDP_TX (the generator's).
        for i in [SERVER_IF, ATTACK_IF] {
            crate::netns::exec(s.command("ethtool").args(["-K", i, "gro", "on"]))?;
        }
        Ok(())
    }

    fn clients_side(&self) -> anyhow::Result<()> {
        let c = &self.clients;
        for a in &self.client_addrs {
            let cidr = match a {
                IpAddr::V4(_) => format!("{a}/26"),
                IpAddr::V6(_) => format!("{a}/64"),
            };
            let mut args = vec!["addr", "add", cidr.as_str(), "dev", CLIENT_IF];
            if a.is_ipv6() {
                args.push("nodad");
            }
            c.ip(&args)?;
        }
        c.ip(&["route", "add", &format!("{SERVER_V4}/32"), "dev", CLIENT_IF])?;
        for s in [SERVER_V4, SERVER_V6] {
            neighbour(c, s, SERVER_MAC, CLIENT_IF)?;
        }
        Ok(())
    }

    pub fn server_v4(&self) -> Ipv4Addr {
        SERVER_V4.parse().expect("constant address")
    }

    pub fn server_v6(&self) -> Ipv6Addr {
        SERVER_V6.parse().expect("constant address")
    }

    /// The clients' IPv4 and IPv6 addresses.
    pub fn clients_v4(&self) -> Vec<IpAddr> {
        self.client_addrs
            .iter()
            .copied()
            .filter(IpAddr::is_ipv4)
            .collect()
    }

    pub fn clients_v6(&self) -> Vec<IpAddr> {
        self.client_addrs
            .iter()
            .copied()
            .filter(IpAddr::is_ipv6)
            .collect()
    }

    /// Steers the server's receive processing of both links (every
    /// receive queue) to the CPUs in `mask` (RPS), as a multi-queue host
    /// spreads it; XDP still runs where frames arrive.
    pub fn steer(&self, mask: u32) -> anyhow::Result<()> {
        for i in [SERVER_IF, ATTACK_IF] {
            let path = format!("/sys/class/net/{i}/queues/rx-*/rps_cpus");
            let cmd = format!("for q in {path}; do echo {mask:x} > $q; done");
            crate::netns::exec(self.server.command("sh").args(["-c", &cmd]))?;
        }
        Ok(())
    }
}

/// A permanent neighbour entry.
fn neighbour(ns: &NetNs, addr: &str, mac: &str, dev: &str) -> anyhow::Result<()> {
    ns.ip(&[
        "neigh",
        "replace",
        addr,
        "lladdr",
        mac,
        "dev",
        dev,
        "nud",
        "permanent",
    ])
    .map(|_| ())
}
