//! Tollgate's user-space side: loading the XDP programs, owning their
//! maps, and the tools built on them.
pub mod capture;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod crowdsec;
pub mod daemon;
pub mod events;
pub mod exporter;
pub mod groups;
pub mod loader;
pub mod maps;
pub mod notify;
pub mod pins;
pub mod policy;
pub mod redact;
pub mod replay;
pub mod run;
pub mod snapshot;
pub mod state;
pub mod synproxy;
pub mod units;
pub mod view;
