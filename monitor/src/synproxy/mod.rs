//! The kernel's SYNPROXY for the ports under `[syn_cookies]`: an nftables
//! table `inet tollgate_synproxy` and the sysctls it needs.
//!
//! Why SYNPROXY: the XDP program answers a SYN with a cookie SYN-ACK and
//! verifies the client's ACK, but aya 0.14 cannot call the conntrack
//! kfuncs (`bpf_xdp_ct_lookup` and friends) the kernel's own XDP SYNPROXY
//! example uses to hand the connection to the socket. So the ACK passes
//! to the stack, where nftables' `synproxy` statement checks the same
//! kernel cookie, opens the connection to the real listening socket and
//! translates sequence numbers for the rest of it. SYNs are tracked as
//! usual and go to the socket: the table only completes handshakes the XDP
//! program answered (see `ruleset`).
//!
//! The table is installed at daemon start and on reload (replaced in one
//! `nft -f` transaction when the ports or options change) and deleted
//! when `[syn_cookies]` is removed. A daemon that stops leaves it in
//! place, as it leaves the XDP program attached: the kernel keeps
//! answering. Removing the package (`prerm`) deletes it.
//!
//! `ruleset` renders the text (pure, tested); `apply` runs `nft` and sets
//! the sysctls.

mod apply;
mod ruleset;

pub use apply::{Nft, SynproxyError, install, remove};
pub use ruleset::{TABLE, install_text, remove_text};
