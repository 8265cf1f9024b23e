//! The soak's suite-sized run (`lab::soak`): two minutes of mixed
//! traffic, reloads, rule and ban changes every few hundred milliseconds
//! and two kill -9 restarts, then every packet, ban and rule accounted for.

use std::time::Duration;

#[test]
fn two_minutes_of_traffic_churn_and_kill_9_restarts_lose_nothing() {
    let report = lab::soak::run(Duration::from_secs(120)).expect("running the soak");
    eprintln!("{}", report.summary());
    assert!(report.restarts >= 2, "{} restarts", report.restarts);
    assert!(report.reloads >= 10 && report.rule_changes >= 1_000 && report.ban_changes >= 100);
    let problems = report.problems();
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        report.summary()
    );
}
