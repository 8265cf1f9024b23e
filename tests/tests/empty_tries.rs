//! `monitor_common::tries` on the real kernel: a packet judged without a
//! slot (here, a never-seen source on probation during a storm) skips the
//! rule and ban lookups of a family whose tries the daemon marked empty,
//! and the daemon's writes keep the marks true, so a ban or a rule added
//! later reaches such sources at once, and lifting it brings the skip
//! back.

mod common;

use common::{SEC, generous, judge, load, rule, udp};
use monitor_common::{
    reason::{Reason, Verdict},
    tries,
    types::family,
};
use tollgate::{
    loader::Tollgate,
    policy::{Action, Policy},
};

/// Whether the program skips `fam`'s lookups for a packet judged without
/// a slot: the rules of the set in use and the bans both marked empty.
fn skips(tg: &Tollgate, fam: u8) -> bool {
    let cfg = tg.maps.runtime_config().unwrap();
    let both = tries::rules(cfg.generation & 1, fam) | tries::bans(fam);
    cfg.empty_tries & both == both
}

/// A never-seen source's packet during a storm: judged on probation,
/// without a slot (each test's sources are in /64s of their own: a /64's
/// second passed packet claims one).
fn first_packet(tg: &mut Tollgate, src: &str, now: u64) -> (Reason, Verdict) {
    let j = judge(tg, &udp(src), now);
    (j.reason(), j.verdict())
}

#[test]
fn a_ban_reaches_never_seen_sources_at_once_and_its_lift_brings_the_skip_back() {
    let mut tg = load(&generous());
    tg.maps.set_storm(true).unwrap();
    assert!(
        skips(&tg, family::IPV6) && skips(&tg, family::IPV4),
        "no rules and no bans: both families skip the lookups"
    );
    assert_eq!(
        first_packet(&mut tg, "2001:db8:1:1::1", SEC),
        (Reason::Untracked, Verdict::Pass),
        "on probation, judged without a slot"
    );

    tg.maps
        .ban("2001:db8:1::/48".parse().unwrap(), 3600 * SEC)
        .unwrap();
    assert!(!skips(&tg, family::IPV6), "an IPv6 ban: IPv6 looks again");
    assert!(skips(&tg, family::IPV4), "IPv4 still has nothing to find");
    assert_eq!(
        first_packet(&mut tg, "2001:db8:1:2::1", 2 * SEC),
        (Reason::Banned, Verdict::Drop),
        "a never-seen source in the banned /48"
    );
    assert_eq!(
        first_packet(&mut tg, "2001:db8:2::1", 2 * SEC).1,
        Verdict::Pass,
        "outside it"
    );

    assert!(tg.maps.unban("2001:db8:1::/48".parse().unwrap()).unwrap());
    assert!(
        skips(&tg, family::IPV6),
        "the last ban lifted: skipped again"
    );
    assert_eq!(
        first_packet(&mut tg, "2001:db8:1:3::1", 3 * SEC),
        (Reason::Untracked, Verdict::Pass)
    );
}

#[test]
fn a_rule_reaches_never_seen_sources_with_the_policy_that_adds_it() {
    let mut tg = load(&generous());
    // Once more, so that both policy sets are marked empty: the rule
    // below then clears a mark that was set.
    tg.maps.apply_policy(&generous(), None).unwrap();
    tg.maps.set_storm(true).unwrap();
    assert!(skips(&tg, family::IPV6));

    let denying = Policy {
        rules: vec![rule("2001:db8:3::/48", Action::Deny)],
        ..generous()
    };
    tg.maps.apply_policy(&denying, None).unwrap();
    assert!(!skips(&tg, family::IPV6), "an IPv6 rule: IPv6 looks again");
    assert!(skips(&tg, family::IPV4), "no IPv4 rule: IPv4 still skips");
    assert_eq!(
        first_packet(&mut tg, "2001:db8:3:1::1", SEC),
        (Reason::Deny, Verdict::Drop),
        "a never-seen source in the denied /48"
    );

    // The rule gone: the other set, marked empty again.
    tg.maps.apply_policy(&generous(), None).unwrap();
    assert!(skips(&tg, family::IPV6), "the rule gone: skipped again");
    assert_eq!(
        first_packet(&mut tg, "2001:db8:3:2::1", 2 * SEC),
        (Reason::Untracked, Verdict::Pass)
    );
    tg.maps.apply_policy(&denying, None).unwrap();
    assert_eq!(
        first_packet(&mut tg, "2001:db8:3:3::1", 3 * SEC),
        (Reason::Deny, Verdict::Drop),
        "the rule back, in the set that held it before (cleared and filled again)"
    );
}
