//! The control socket under idle clients: the latency of a `status` call
//! (connect, ask, answer, as the CLI does) with no other client, and with
//! 1,000 connections open and idle, as forgotten or stuck clients leave
//! them (`[control] max_clients` is 1,024 by default, so none is closed).

use std::{
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

use lab::daemon::Daemon;
use tollgate::control::{Client, Request, replies::Status};

use crate::stats;

const CALLS: usize = 200;
const IDLE: usize = 1_000;

/// `CALLS` status calls, each on a new connection: their latencies, ms.
fn status_calls(d: &Daemon) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        let mut c = Client::connect(&d.socket())?;
        let _: Status = c.call(Request::Status)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(ms)
}

pub fn run() -> anyhow::Result<()> {
    let d = Daemon::new("bctl", &["192.0.2.77"], "");
    let alone = stats(status_calls(&d)?);
    let idle: Vec<UnixStream> = (0..IDLE)
        .map(|_| UnixStream::connect(d.socket()))
        .collect::<Result<_, _>>()?;
    // Let the daemon accept them all before timing.
    std::thread::sleep(Duration::from_millis(500));
    let crowded = stats(status_calls(&d)?);
    drop(idle);
    println!(
        "control socket, `status` (connect, ask, answer) ms min/median/max of {CALLS}: alone {:.2} / {:.2} / {:.2}; with {IDLE} idle connections open {:.2} / {:.2} / {:.2}; crowded / alone (medians) {:.2}",
        alone.min,
        alone.median,
        alone.max,
        crowded.min,
        crowded.median,
        crowded.max,
        crowded.median / alone.median
    );
    Ok(())
}
