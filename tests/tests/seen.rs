//! `monitor_common::seen` on the real kernel: the filter the program asks
//! before the source index. Every source the index holds keeps its bit in
//! the tested half, through claims, evictions and the daemon's rebuild
//! (claims made while a half is being rebuilt included), so a tracked
//! source is always found: during a storm a source the filter lost would
//! be judged on probation, without its slot. The rebuild forgets the
//! sources the table evicted, and those a storm's answer takes back.

mod common;

use std::time::Instant;

use common::{SEC, generous, judge, key, load_with, pps, rule, swept_and_indexed, udp};
use monitor_common::{
    reason::Reason,
    types::{SourceKey, SourceState},
};
use tollgate::{
    loader::Tollgate,
    maps::{SEEN_REBUILD_EVERY, SEEN_SETTLE, SeenDue},
    policy::{Action, Policy},
};

/// Source `i` of group `g`: a /64 of its own.
fn addr(g: u32, i: u32) -> String {
    format!("2001:db8:{g:x}:{i:x}::1")
}

fn keys(tg: &Tollgate, g: u32, n: u32) -> Vec<SourceKey> {
    (0..n).map(|i| key(tg, &addr(g, i))).collect()
}

/// One packet from each of group `g`'s first `n` sources at `now`.
fn send(tg: &mut Tollgate, g: u32, n: u32, now: u64) {
    for i in 0..n {
        judge(tg, &udp(&addr(g, i)), now);
    }
}

fn held(tg: &Tollgate, keys: &[SourceKey]) -> usize {
    keys.iter()
        .filter(|k| tg.maps.sources.seen_may_hold(k))
        .count()
}

/// How many of `ks` hold a slot.
fn tracked(tg: &Tollgate, ks: &[SourceKey]) -> usize {
    ks.iter()
        .filter(|k| tg.maps.source(k).unwrap().is_some())
        .count()
}

/// During a storm a never-seen source is judged on probation (no slot,
/// `Untracked`); a tracked one with its slot (`Pass`).
fn storm_reasons(tg: &mut Tollgate, g: u32, n: u32, now: u64) -> Vec<Reason> {
    (0..n)
        .map(|i| judge(tg, &udp(&addr(g, i)), now).reason())
        .collect()
}

#[test]
fn a_fresh_filter_is_tested_at_once_and_each_claim_sets_its_bit() {
    let mut tg = load_with(1024, &generous());
    assert!(
        tg.maps.sources.seen_testing(),
        "a table that never held a source: tested from the load"
    );
    let never = keys(&tg, 9, 200);
    assert_eq!(held(&tg, &never), 0, "an empty filter holds no key");

    send(&mut tg, 1, 200, SEC);
    let (_, indexed) = swept_and_indexed(&tg);
    assert_eq!(indexed.len(), 200, "each source claimed a slot");
    assert_eq!(held(&tg, &indexed), 200, "each claim set its bit");

    tg.maps.set_storm_since(SEC + SEC / 2).unwrap();
    assert!(
        storm_reasons(&mut tg, 1, 200, 2 * SEC)
            .iter()
            .all(|r| *r == Reason::Pass),
        "the tracked sources are found"
    );
    assert_eq!(
        storm_reasons(&mut tg, 9, 1, 2 * SEC),
        [Reason::Untracked],
        "a never-seen one is on probation"
    );
}

#[test]
fn a_rebuild_keeps_every_indexed_source_and_forgets_the_evicted() {
    const CAP: u32 = 1024;
    let mut tg = load_with(CAP, &generous());
    // Group 1 fills the table; group 2, one packet each, takes every
    // slot from it (none was referenced since its claim).
    send(&mut tg, 1, CAP, SEC);
    send(&mut tg, 2, CAP, SEC);
    let evicted = keys(&tg, 1, CAP);
    assert!(
        tg.maps.source(&evicted[0]).unwrap().is_none(),
        "group 1 evicted"
    );
    assert_eq!(
        held(&tg, &evicted),
        CAP as usize,
        "the kernel never clears a bit: the evicted keep theirs until a rebuild"
    );

    let t0 = Instant::now();
    let keep = |tg: &mut Tollgate, at| tg.maps.sources.keep_seen(at).unwrap().0;
    assert_eq!(keep(&mut tg, t0), SeenDue::Nothing);
    assert_eq!(keep(&mut tg, t0 + SEEN_REBUILD_EVERY), SeenDue::Clear);
    // Claims while the cleared half settles: group 3 takes half of group
    // 2's slots. Their bits go in both halves, so the rebuilt one has
    // them whenever the table is read.
    send(&mut tg, 3, CAP / 2, 2 * SEC);
    // The kernel sets a claim's bit in the half being rebuilt too, which
    // is what keeps a claim made between the fill's read of the table and
    // its switch of halves (on another CPU) in the rebuilt half. The half
    // was cleared of the sources before them.
    let claimed = keys(&tg, 3, CAP / 2);
    let both = |tg: &Tollgate, ks: &[SourceKey]| {
        ks.iter()
            .filter(|k| tg.maps.sources.seen_bits(k) == (true, true))
            .count()
    };
    assert_eq!(both(&tg, &claimed), claimed.len(), "claims set both halves");
    let before: Vec<SourceKey> = keys(&tg, 2, CAP)[CAP as usize / 2..].to_vec();
    let in_cleared = before
        .iter()
        .filter(|k| tg.maps.sources.seen_bits(k).1)
        .count();
    assert!(
        in_cleared < before.len() / 2,
        "{in_cleared} of {} sources claimed before the clear have a bit in the cleared half",
        before.len()
    );
    let settling = t0 + SEEN_REBUILD_EVERY + SEEN_SETTLE / 2;
    assert_eq!(
        keep(&mut tg, settling),
        SeenDue::Nothing,
        "not filled before the clear has settled"
    );
    let (due, bits) = tg
        .maps
        .sources
        .keep_seen(t0 + SEEN_REBUILD_EVERY + SEEN_SETTLE)
        .unwrap();
    assert_eq!(due, SeenDue::Fill);

    let (_, indexed) = swept_and_indexed(&tg);
    assert_eq!(indexed.len(), CAP as usize);
    assert_eq!(
        held(&tg, &indexed),
        indexed.len(),
        "every indexed source has its bit in the half now tested"
    );
    assert!(
        bits as usize <= indexed.len(),
        "{bits} bits set for {} indexed sources: the rebuilt half holds theirs alone",
        indexed.len()
    );
    // At a full table one key in about five shares a bit with an indexed
    // one (1 - e^(-1/4)); before the rebuild it was every one.
    let stale = held(&tg, &evicted);
    assert!(
        stale < CAP as usize / 2,
        "{stale} of {CAP} evicted sources still have a bit after the rebuild"
    );

    // What it is for: during a storm, the sources claimed before it, the
    // ones claimed during the rebuild among them, are found by the kernel.
    tg.maps.set_storm_since(3 * SEC).unwrap();
    let reasons = [
        storm_reasons(&mut tg, 3, CAP / 2, 4 * SEC),
        storm_reasons(&mut tg, 2, CAP, 4 * SEC)[CAP as usize / 2..].to_vec(),
    ]
    .concat();
    let lost = reasons.iter().filter(|r| **r != Reason::Pass).count();
    assert_eq!(lost, 0, "{lost} tracked sources judged without their slot");
}

/// Sources user space tracks itself (`SourceTable::insert`, as the bench
/// and tests fill a table) set their bits as a claim would: the kernel
/// finds them.
#[test]
fn sources_inserted_from_user_space_are_found() {
    let mut tg = load_with(1024, &generous());
    let entries: Vec<_> = keys(&tg, 4, 100)
        .into_iter()
        .map(|k| {
            let state = SourceState {
                first_seen_ns: SEC,
                last_seen_ns: SEC,
                ..SourceState::default()
            };
            (k, state)
        })
        .collect();
    tg.maps.sources.insert(entries).unwrap();
    tg.maps.set_storm_since(2 * SEC).unwrap();
    let reasons = storm_reasons(&mut tg, 4, 100, 3 * SEC);
    let lost = reasons.iter().filter(|r| **r != Reason::Pass).count();
    assert_eq!(
        lost, 0,
        "{lost} of 100 inserted sources judged without their slot"
    );
}

/// When a storm is found, the sources first seen since it began that have
/// shown nothing of being real give their slots back
/// (`SourceTable::demote_since`): the kernel judges them as never-seen
/// sources (on probation, `Untracked`), and the rebuild made due at once
/// clears their bits. Those first seen before, and those since that
/// completed a handshake, keep their slots.
#[test]
fn a_storms_sources_give_back_their_slots_and_the_others_keep_theirs() {
    let mut tg = load_with(1024, &generous());
    let state = |first_seen_ns: u64, acks: u64| SourceState {
        first_seen_ns,
        last_seen_ns: first_seen_ns,
        acks,
        ..SourceState::default()
    };
    let (old, storm, shaken) = (keys(&tg, 1, 50), keys(&tg, 2, 50), keys(&tg, 3, 10));
    let entries = old
        .iter()
        .map(|k| (*k, state(SEC, 0)))
        .chain(storm.iter().map(|k| (*k, state(3 * SEC, 0))))
        .chain(shaken.iter().map(|k| (*k, state(3 * SEC, 1))));
    tg.maps.sources.insert(entries).unwrap();
    tg.maps.set_storm_since(2 * SEC).unwrap();
    let unlimited = tg.maps.unlimited_rule_slots().unwrap();
    assert_eq!(
        tg.maps
            .sources
            .demote_since(2 * SEC, 4 * SEC, &unlimited)
            .unwrap(),
        50
    );
    assert_eq!(
        tracked(&tg, &storm),
        0,
        "the storm's sources gave theirs back"
    );
    assert_eq!(
        tracked(&tg, &old),
        50,
        "those first seen before kept theirs"
    );
    assert_eq!(
        tracked(&tg, &shaken),
        10,
        "those that shook hands kept theirs"
    );

    // The rebuild is due at once, and forgets the storm's sources.
    let now = Instant::now();
    let keep = |tg: &mut Tollgate, at| tg.maps.sources.keep_seen(at).unwrap().0;
    assert_eq!(keep(&mut tg, now), SeenDue::Clear);
    assert_eq!(keep(&mut tg, now + SEEN_SETTLE), SeenDue::Fill);
    // (A storm key may share a bit with a kept one: a filter, not a set.)
    assert!(held(&tg, &storm) <= 5, "their bits cleared");
    assert_eq!(held(&tg, &old) + held(&tg, &shaken), 60);

    let reasons = storm_reasons(&mut tg, 2, 50, 5 * SEC);
    assert!(
        reasons.iter().all(|r| *r == Reason::Untracked),
        "the storm's sources judged as never-seen: {reasons:?}"
    );
    let kept = [
        storm_reasons(&mut tg, 1, 50, 5 * SEC),
        storm_reasons(&mut tg, 3, 10, 5 * SEC),
    ]
    .concat();
    assert!(kept.iter().all(|r| *r == Reason::Pass), "{kept:?}");
}

/// Sources no bucket or budget ever drops (under an allow rule, or a rule
/// that only watches) keep their slots when a storm's sources give theirs
/// back: on the prefix budget they would pass all the same, and lose only
/// their counts. Their rule slots are the kernel's own, resolved from
/// their first packets.
#[test]
fn allowed_and_watched_sources_keep_their_slots_in_a_storm() {
    let mut watched = rule("2001:db8:5::/48", Action::Limit(pps(1, 1)));
    watched.monitor = true;
    let policy = Policy {
        rules: vec![rule("2001:db8:4::/48", Action::Allow), watched],
        ..generous()
    };
    let mut tg = load_with(1024, &policy);
    for g in [2, 4, 5] {
        send(&mut tg, g, 20, 3 * SEC);
    }
    let unlimited = tg.maps.unlimited_rule_slots().unwrap();
    assert_eq!(
        unlimited.len(),
        2,
        "the allow and the watching rule: {unlimited:?}"
    );
    assert_eq!(
        tg.maps
            .sources
            .demote_since(2 * SEC, 4 * SEC, &unlimited)
            .unwrap(),
        20,
        "only the default rule's sources gave their slots back"
    );
    assert_eq!(tracked(&tg, &keys(&tg, 2, 20)), 0);
    assert_eq!(tracked(&tg, &keys(&tg, 4, 20)), 20, "allowed: kept");
    assert_eq!(tracked(&tg, &keys(&tg, 5, 20)), 20, "watched: kept");
}
