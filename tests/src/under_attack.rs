//! One attack against Debian's nginx in the flood lab while legitimate
//! clients make requests: the scene the attack tests, the storm tests and
//! the bench's comparison with the ceiling share. The existing clients
//! make requests first (the warm-up); then the generator floods from CPU
//! 0 for the attack's length, and `lead` into it the whole pool (existing
//! and new addresses, a new one's first connection coming only now)
//! makes 300 requests a second with a 1 s deadline from CPU 1, stopping
//! `lead` before the attack ends.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use crate::{
    clients::{Load, Pool, Report},
    flood::{Flood, Generator},
    flood_lab::{FLOOD_IF, FloodLab, client_v4},
    nginx::Nginx,
    traffic::pin_thread,
};

/// The port nginx listens on.
pub const PORT: u16 = 80;

/// What one attack did to the clients.
pub struct Attacked {
    pub clients: Report,
    /// Frames the generator sent, per second.
    pub attack_pps: f64,
    /// When the attack ended (Unix ms, as the daemon's events carry).
    pub ended_ms: u64,
}

/// nginx on the server's IPv4 address, the client pool (`clients` IPv4
/// addresses, the first `existing` of them existing) and the generator
/// loaded with `spec`.
pub struct Stage {
    _nginx: Nginx,
    pool: Pool,
    generator: Generator,
}

impl Stage {
    /// Sets the scene in `lab` (whose receive is steered to CPU 1 here).
    pub fn new(
        lab: &FloodLab,
        spec: &Flood,
        existing: usize,
        clients: usize,
    ) -> anyhow::Result<Self> {
        lab.steer(0b10)?;
        let server = IpAddr::from(lab.server_v4());
        let nginx = Nginx::start(&lab.server, &[server], PORT, Some(1))?;
        let old: Vec<IpAddr> = (0..existing).map(|i| client_v4(i).into()).collect();
        let new: Vec<IpAddr> = (existing..clients).map(|i| client_v4(i).into()).collect();
        let pool = Pool::new(&old, &new, &[SocketAddr::new(server, PORT)])?;
        let generator = Generator::load(&lab.attacker, FLOOD_IF, spec)?;
        Ok(Self {
            _nginx: nginx,
            pool,
            generator,
        })
    }

    /// Warms the existing clients up, then runs the attack for `time` with
    /// the clients starting `lead` into it.
    pub fn play(
        &mut self,
        lab: &FloodLab,
        time: Duration,
        lead: Duration,
    ) -> anyhow::Result<Attacked> {
        let load = Load {
            cpu: Some(1),
            ..Load::api(time - 2 * lead)
        };
        let warm = self.pool.warm_up(
            &lab.clients,
            &Load {
                duration: Duration::from_secs(2),
                ..load
            },
        )?;
        anyhow::ensure!(
            warm.success() >= 0.99,
            "before the attack nearly every request succeeds: {warm}"
        );
        let pool = &self.pool;
        let (sent, clients, ended_ms) = std::thread::scope(|s| {
            let attacker = &lab.attacker;
            let g = &self.generator;
            let flood = s.spawn(move || {
                pin_thread(0)?;
                g.send(attacker, 60_000_000, time)
            });
            std::thread::sleep(lead);
            let clients = pool.run(&lab.clients, &load);
            (
                flood.join().expect("the generator's thread"),
                clients,
                unix_ms(),
            )
        });
        let sent = sent?;
        anyhow::ensure!(sent.packets > 1_000_000, "the attack ran: {sent:?}");
        Ok(Attacked {
            clients: clients?,
            attack_pps: sent.pps(),
            ended_ms,
        })
    }
}

/// Now, in Unix ms (the daemon's clock, which its events carry).
pub use tollgate::clock::unix_ms;

/// Panics unless `what` ran at least as fast while Tollgate enforced
/// (`enforced_pps`) as while it only watched (`watched_pps`, the run
/// that hurt). The generator shares its CPU with the server's XDP, so
/// what the server spends per frame slows it, and a defence that only
/// starved the generator would show as a slower attack. A same-run
/// comparison holds on any machine, where a fixed rate did not (2.0 Mpps
/// failed at 1.99 on a slower one); speed is `cargo xtask bench`'s to
/// measure.
pub fn assert_not_slowed(what: &str, watched_pps: f64, enforced_pps: f64) {
    assert!(
        enforced_pps >= watched_pps,
        "{what} ran at {:.2} Mpps while enforced, slower than the {:.2} Mpps that hurt in \
         monitor mode: the clients may have been spared by a slowed generator",
        enforced_pps / 1e6,
        watched_pps / 1e6
    );
}
