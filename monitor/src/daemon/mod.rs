//! `tollgate run --config FILE`: the daemon. Its state splits by owner,
//! each part in its own file with its own methods:
//!
//! - the kernel handles and pins (`startup`: load, adopt, attach, exit);
//! - the runtime rules and the default-limit override (`rules`: one
//!   mutate, apply, roll back on failure, save path);
//! - the ban book (`bans`: bans, offences and their counts);
//! - the detectors' memory (`detect`, which returns findings), their
//!   runtime thresholds (`thresholds`) and the response to them
//!   (`respond`: bans, the host-wide SYN limit, events);
//! - SYN cookies (`cookies`: the mode, the SYNPROXY table);
//! - the CrowdSec Local API (`crowdsec`: decisions into bans, detector
//!   bans out as alerts; the loop itself is `crate::crowdsec`);
//! - the outputs: the event log and the redactor.
//!
//! `read` turns the maps into a `Snapshot`, `commands` answers the control
//! socket (one function per request; `limits`, `reload` and `explain`
//! hold the longer ones, `changes` records their events), `persist` writes the state file and `tasks` wires the
//! loops and signals. The stats loop, the exporter and
//! the control server reach the `Daemon` through one mutex, never across
//! an await.

use std::time::Instant;

use crate::{config::Config, events::EventLog, loader::Tollgate, pins::PinDir, redact::Redactor};

mod bans;
mod changes;
mod commands;
mod cookies;
mod crowdsec;
mod detect;
mod explain;
mod limits;
mod persist;
mod read;
mod reload;
mod respond;
mod rules;
mod startup;
mod tasks;
mod thresholds;

pub use detect::PORT_WINDOW;
pub use tasks::run;

/// The daemon's state, split by owner.
pub struct Daemon {
    tg: Tollgate,
    /// The locked pin directory (dropped last: the lock outlives the maps).
    pins: Option<PinDir>,
    config: Config,
    rules: rules::RuleBook,
    bans: bans::BanBook,
    detect: detect::Detection,
    /// Thresholds changed at run time (`detect set`).
    overrides: thresholds::Overrides,
    respond: respond::Responder,
    cookies: cookies::Cookies,
    /// The CrowdSec Local API link (`[crowdsec]`).
    crowdsec: crowdsec::CrowdSecState,
    events: EventLog,
    redact: Redactor,
    started: Instant,
}
