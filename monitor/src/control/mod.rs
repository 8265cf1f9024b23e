//! The control socket between the CLI and the daemon: the protocol
//! (`protocol`), one typed reply per request (`replies`), the CLI's
//! client (`client`), the daemon's server (`server`, which takes a
//! handler and knows nothing of the daemon) and the peer's credentials
//! (`peer`; the group lookups are `crate::groups`).

mod client;
mod peer;
mod protocol;
pub mod replies;
mod server;

pub use client::{Client, ClientError};
pub use peer::{Peer, peer_credentials};
pub use protocol::{Envelope, MAX_REQUEST, Request, Response, VERSION, parse_request};
pub use server::{Handler, bind, serve};
