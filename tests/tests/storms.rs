//! Storms of many sources, each under the per-source flood threshold, at
//! the generator's full speed against Debian's nginx: UDP from the ~700
//! spoofed addresses of the three IPv4 documentation /24s (each source a
//! few thousand packets a second, under `detect.flood_pps`), and UDP from
//! random /64s across one IPv6 /48. Legitimate clients make requests with
//! a 1 s deadline throughout: existing ones (they made requests before
//! the storm, from the /24 the storm also spoofs) and new ones, whose
//! first connections come after the storm has started. In monitor mode
//! the storm hurts them and the detector says what it would do;
//! enforcing (the storm then runs at 1-2.5 Mpps: the generator shares its
//! core with the server's XDP, which judges each frame in full), the prefix budgets and the storm's answer (sources first
//! seen since it began share their prefix's small unproven budget until a
//! SYN-cookie handshake verifies them) keep both classes at 99.5% or
//! better with a p99 far from the harmed one (`HARMED`), with no rule
//! naming an attacker.
//!
//! The daemon is attached to both of the server's interfaces, and each
//! counts what it received under its own name.
//!
//! The lab is the SYN-flood lab's (`lab::flood_lab`): the generator and
//! Tollgate's XDP on CPU 0; the server's stack, nginx and the clients on
//! CPU 1 (receive steered there).

use std::{sync::Mutex, time::Duration};

use lab::{
    clients::Report,
    daemon::{Daemon, brief, config_on, events, eventually, metric},
    flood::{Flood, Kind},
    flood_lab::{ATTACK_IF, FLOOD_SOURCES_V4, FloodLab, client_v4},
    netns::SERVER_IF,
    under_attack::{PORT, Stage, assert_not_slowed},
};
use serde_json::Value;

/// The tests here share the CPUs, so they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// A p99 at which the clients are harmed: queueing behind the attack, as
/// in monitor mode (120-330 ms here). Defended, they see 1.4-10 ms on
/// this VM; the 10 ms target is the bench's to measure (`ceiling`), not a
/// timed assertion here.
const HARMED: Duration = Duration::from_millis(50);
/// Client addresses (IPv4, in 192.0.2.128/26): the first `EXISTING` are
/// existing, the rest new.
const CLIENTS: usize = 40;
const EXISTING: usize = 10;
const STORM_TIME: Duration = Duration::from_secs(10);
/// The clients start this long after the storm (by then it has been
/// found), and stop before it ends.
const LEAD: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Storm {
    /// UDP from every address of the three IPv4 documentation /24s.
    V4Spread,
    /// UDP from random /64s across 2001:db8:1::/48.
    V6Slash48,
}

impl Storm {
    fn flood(self, lab: &FloodLab) -> Flood {
        match self {
            Storm::V4Spread => Flood {
                kind: Kind::Udp,
                ..Flood::spoofed_syn_v4(&FLOOD_SOURCES_V4, lab.server_v4(), PORT)
            },
            Storm::V6Slash48 => Flood {
                src6: "2001:db8:1::".parse().unwrap(),
                src6_random: u128::MAX >> 48,
                ..Flood::new(Kind::Udp, lab.server_v6().into(), PORT)
            },
        }
    }

    /// The detectors that find it: sources under their limits that their
    /// prefixes' budgets refuse, or a surge of never-seen sources (the
    /// 700 spoofed IPv4 sources all appear within the first interval,
    /// which can be found first; either answers the storm).
    fn detectors(self) -> &'static [&'static str] {
        match self {
            Storm::V4Spread => &["prefix_storm", "spoofed_storm"],
            Storm::V6Slash48 => &["spoofed_storm"],
        }
    }
}

/// A default limit an API client never meets, the detectors and prefix
/// budgets as shipped, and SYN cookies that come on under attack.
fn config(mode: &str) -> String {
    format!(
        "[default_limit]\npackets_per_second = 2000\nburst_packets = 4000\nmode = \"{mode}\"\n\
         [detect]\nmode = \"{mode}\"\n\
         [syn_cookies]\nports = [{PORT}]\nmode = \"under_attack\"\n"
    )
}

/// What one run saw.
struct Run {
    clients: Report,
    storm_pps: f64,
    finding: Value,
    status: Value,
    all_events: Vec<Value>,
    /// The exporter's page at the end.
    metrics: String,
    /// How many existing clients the table still tracks at the end.
    existing_tracked: usize,
}

fn run(tag: &str, storm: Storm, mode: &str) -> Run {
    let lab = FloodLab::new(tag, CLIENTS).expect("building the flood lab");
    let mut stage = Stage::new(&lab, &storm.flood(&lab), EXISTING, CLIENTS).expect("the scene");
    let d = Daemon::in_lab(lab, tag, |dir| {
        config_on(dir, &[SERVER_IF, ATTACK_IF], &config(mode))
    });
    let attacked = stage.play(&d.lab, STORM_TIME, LEAD).expect("the storm");
    let detector = storm.detectors();
    let found = || {
        events(&d).into_iter().find(|e| {
            e["kind"] == "detection" && detector.iter().any(|name| e["detector"] == *name)
        })
    };
    let finding = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(
            &format!("a {detector:?} finding"),
            Duration::from_secs(10),
            found,
        )
    }))
    .unwrap_or_else(|_| panic!("no {detector:?} finding; events: {:#?}", brief(&events(&d))));
    Run {
        clients: attacked.clients,
        storm_pps: attacked.attack_pps,
        finding,
        status: d.json(&["status"]),
        all_events: events(&d),
        metrics: d.metrics().expect("the exporter answers"),
        existing_tracked: (0..EXISTING)
            .filter(|i| {
                let a = client_v4(*i).to_string();
                !d.json(&["explain", &a])["tracked"].is_null()
            })
            .count(),
    }
}

fn storm_test(tag: &str, storm: Storm) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let print = |mode: &str, r: &Run| {
        eprintln!(
            "{storm:?} at {:.2} Mpps, {mode}: existing clients {}; new clients {}; packets by reason {}",
            r.storm_pps / 1e6,
            r.clients.existing,
            r.clients.new,
            r.status["by_reason"]
        )
    };
    let watched = run(&format!("{tag}m"), storm, "monitor");
    print("monitor", &watched);
    let action = watched.finding["action"].as_str().unwrap_or("");
    assert!(action.starts_with("would "), "{}", watched.finding);
    let hurt = [&watched.clients.existing, &watched.clients.new]
        .iter()
        .any(|t| t.success() < 0.99 || t.p99().is_none_or(|p| p > HARMED));
    assert!(
        hurt,
        "the storm must hurt when nothing is enforced: existing {}, new {}",
        watched.clients.existing, watched.clients.new
    );
    let watched_pps = watched.storm_pps;
    drop(watched);

    let guarded = run(&format!("{tag}e"), storm, "enforce");
    print("enforce", &guarded);
    // Each of these frames is judged in full (a never-seen source, or a
    // source within its own limit that its prefix refuses); on this VM
    // the /48 ran at 0.53 then 1.07 Mpps, the three /24s at 0.79 then
    // 1.56.
    assert_not_slowed(&format!("{storm:?}"), watched_pps, guarded.storm_pps);
    let action = guarded.finding["action"].as_str().unwrap_or("");
    assert!(
        action.starts_with("new sources on probation"),
        "{}",
        guarded.finding
    );
    for (class, t) in [
        ("existing", &guarded.clients.existing),
        ("new", &guarded.clients.new),
    ] {
        assert!(
            t.success() >= 0.995 && t.p99().is_some_and(|p| p < HARMED),
            "{storm:?}: {class} clients kept {t}; events: {:#?}",
            brief(&guarded.all_events)
        );
    }
    // The storm's sources tracked before it was found gave their slots
    // back (their packets are judged as never-seen sources' are); the
    // existing clients kept theirs.
    let why = guarded.finding.to_string();
    let demoted: u64 = why
        .split(" of them tracked already gave back their slots")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the finding says how many gave back their slots: {why}"));
    assert!(demoted > 0, "{why}");
    // The exporter counts them too (every storm found in the run).
    let counted = metric(&guarded.metrics, "tollgate_storm_sources_demoted_total").unwrap_or(-1.0);
    assert!(
        counted >= demoted as f64,
        "tollgate_storm_sources_demoted_total {counted}, the finding {demoted}"
    );
    assert_eq!(
        guarded.existing_tracked, EXISTING,
        "the existing clients kept their slots"
    );
    if storm == Storm::V6Slash48 {
        let tracked = metric(&guarded.metrics, "tollgate_sources_tracked").unwrap_or(-1.0);
        assert!(
            tracked >= 0.0 && tracked < demoted as f64,
            "the storm's /64s did not claim the table back: {tracked} tracked, {demoted} gave back"
        );
    }
    // One daemon on two interfaces, each counted under its own name: the
    // storm on the attacker's link, the clients on theirs.
    assert_eq!(
        guarded.status["interfaces"],
        serde_json::json!([SERVER_IF, ATTACK_IF]),
        "{}",
        guarded.status
    );
    let counted = |iface: &str, reason: &str, verdict: &str| {
        let series = format!(
            "tollgate_packets_total{{iface=\"{iface}\",reason=\"{reason}\",verdict=\"{verdict}\"}}"
        );
        metric(&guarded.metrics, &series).unwrap_or(0.0)
    };
    assert!(
        counted(ATTACK_IF, "prefix_limited", "drop") > 1e6,
        "the storm counted on {ATTACK_IF}"
    );
    assert!(
        counted(SERVER_IF, "pass", "pass") > 1e3,
        "the clients counted on {SERVER_IF}"
    );
    // No source was banned: the storm's sources are each under the
    // flood threshold, and its answer is the prefix budgets'.
    assert_eq!(guarded.status["bans_active"], 0, "{}", guarded.status);
    let refused = guarded.status["by_reason"]["prefix_limited"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        refused as f64 > 0.5 * guarded.storm_pps * STORM_TIME.as_secs_f64(),
        "the prefix budgets refused most of the storm: {}",
        guarded.status["by_reason"]
    );
}

#[test]
fn a_udp_storm_from_every_address_of_three_24s_is_bounded_by_their_budgets() {
    storm_test("stv4", Storm::V4Spread);
}

#[test]
fn a_udp_storm_from_random_64s_of_one_48_is_bounded_by_its_budget() {
    storm_test("stv6", Storm::V6Slash48);
}
