//! The lab Tollgate is tested, demonstrated and benchmarked on: network
//! namespaces joined by veth pairs (documentation addresses, no default
//! route, nothing bridged to a real interface), bounded traffic senders
//! (the live-frames flood generator among them), the flood lab (server,
//! clients and attacker namespaces), Debian's nginx, a pool of legitimate
//! clients and the attack scene they share (`under_attack`), packet
//! builders, the packet fuzzer (generated frames, the kernel's parse and
//! a reference parser compared), a real CrowdSec Local API (`crowdsec`),
//! a pcap writer, a pseudo-terminal whose
//! screen a test reads (`pty`), and the daemon harness
//! (`tollgate run` in a lab, driven through the CLI). The bucket accuracy
//! sweep (`accuracy`) is here too. One library, three
//! users: the integration tests in `tests/`, `cargo xtask demo` and
//! `cargo xtask bench`.

pub mod accuracy;
pub mod clients;
pub mod crowdsec;
pub mod daemon;
pub mod flood;
pub mod flood_lab;
pub mod handshake;
pub mod http;
pub mod netns;
pub mod nginx;
pub mod packet_fuzz;
pub mod packets;
pub mod pcap;
pub mod pty;
pub mod soak;
pub mod traffic;
pub mod tshark_shapes;
pub mod under_attack;

pub use netns::{Lab, NetNs};
