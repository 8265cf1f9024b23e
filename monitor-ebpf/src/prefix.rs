//! Charging a packet to its prefix's budget (`monitor_common::prefix`):
//! one LRU lookup of the prefix, one compare-and-swap on the word of the
//! budget that applies. Only packets their source's own buckets passed
//! come here, so an over-limit or banned flood never touches it.

use monitor_common::{
    bucket::ticks,
    prefix::{Budget, PrefixState, budget},
    syncookie::{VerifiedKey, cookie_mode},
    types::{PacketInfo, RuntimeConfig, family, l4},
};

use crate::{limit, maps::TG_PREFIXES, maps::TG_VERIFIED};

/// Whether the packet (of a source first seen at `first_seen_ns`) is over
/// its prefix's budget; if not, it has been charged.
#[inline(always)]
pub fn over(
    info: &PacketInfo,
    cfg: &RuntimeConfig,
    first_seen_ns: u64,
    now: u64,
    since_base: u64,
) -> bool {
    let p = &cfg.prefix;
    let storm_since = cfg.storm_since_ns;
    if !p.in_force(storm_since != 0) {
        return false;
    }
    let (params, unproven) = match budget(storm_since, first_seen_ns, || verified(info, cfg, now)) {
        Budget::All => (&p.all, false),
        Budget::Unproven => (&p.unproven, true),
    };
    if !params.is_limited() {
        return false;
    }
    let key = p.key(info.family, &info.src);
    let state = match TG_PREFIXES.get_ptr_mut(&key) {
        Some(s) => s,
        None => {
            // Another CPU may insert the same prefix meanwhile: then
            // this insert fails and the lookup below finds theirs.
            let _ = TG_PREFIXES.insert(&key, &PrefixState::default(), 0);
            match TG_PREFIXES.get_ptr_mut(&key) {
                Some(s) => s,
                // Evicted at once by a storm of inserts on other CPUs:
                // judged as if the prefix had its whole budget.
                None => return false,
            }
        }
    };
    let tat = unsafe {
        if unproven {
            &mut (*state).unproven_tat
        } else {
            &mut (*state).all_tat
        }
    };
    limit::take(tat, ticks(since_base), 1, params).is_err()
}

/// Whether the packet's source completed a SYN-cookie handshake: asked
/// only for TCP while cookies are configured (a spoofed UDP storm pays no
/// lookup, and verification is a TCP handshake's).
#[inline(always)]
fn verified(info: &PacketInfo, cfg: &RuntimeConfig, now: u64) -> bool {
    if info.l4 != l4::TCP || cfg.cookie.mode == cookie_mode::OFF {
        return false;
    }
    let key = if info.family == family::IPV4 {
        VerifiedKey::v4(info.src[0])
    } else {
        VerifiedKey::v6(&info.src)
    };
    unsafe { TG_VERIFIED.get(&key) }.is_some_and(|until| *until > now)
}
