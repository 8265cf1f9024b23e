//! The alerting rules and the Grafana dashboard in `monitoring/`: the
//! rules pass `promtool check rules` and their unit tests (`promtool test
//! rules`), and every dashboard query is valid PromQL over Tollgate's own
//! metrics (checked by promtool as a recording rule each).

use std::{path::PathBuf, process::Command};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../monitoring")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir())
        .output()
        .expect("promtool (Debian package `prometheus`, installed by `cargo xtask setup`)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {said}");
    said
}

/// Every metric name the exporter can print, from its own output after an
/// update with one interface, one malformed packet and one top talker.
fn exported_names() -> std::collections::HashSet<String> {
    use tollgate::snapshot::{Snapshot, Talker};
    let m = tollgate::exporter::Metrics::new(10);
    let mut s = Snapshot {
        ifaces: vec!["none".into(), "eth0".into()],
        ..Snapshot::default()
    };
    s.counters.malformed[1].packets = 1;
    s.top_by_packets.push(Talker {
        source: "192.0.2.1".into(),
        packets: 1,
        bytes: 1,
        dropped: 0,
        syns: 0,
        acks: 0,
        ports: 0,
        pps: None,
        drop_pps: None,
        drop_reason: None,
        net: None,
    });
    m.update(&s);
    m.render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The `tollgate_*` names a query or rules file uses.
fn used_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("tollgate_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `fleet:tollgate_...:rate1m` is a recording rule's name.
        let recorded = rest[..i].ends_with(':');
        rest = &rest[i + name.len()..];
        if !recorded {
            out.push(name);
        }
    }
    out
}

#[test]
fn rules_and_dashboard_use_only_metrics_the_exporter_has() {
    let names = exported_names();
    assert!(names.contains("tollgate_packets_total"), "{names:?}");
    for file in [
        "tollgate-alerts.yml",
        "tollgate-alerts.test.yml",
        "grafana-dashboard.json",
    ] {
        let text = std::fs::read_to_string(dir().join(file)).unwrap();
        for n in used_names(&text) {
            assert!(
                names.contains(&n),
                "{file} uses {n}, which the exporter does not have"
            );
        }
    }
}

#[test]
fn alerting_rules_check_and_pass_their_unit_tests() {
    let said = promtool(&["check", "rules", "tollgate-alerts.yml"]);
    assert!(said.contains("SUCCESS: 19 rules found"), "{said}");
    let said = promtool(&["test", "rules", "tollgate-alerts.test.yml"]);
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn dashboard_queries_are_valid_promql_over_our_metrics() {
    let text = std::fs::read_to_string(dir().join("grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            assert!(
                expr.contains("tollgate_") || expr.contains("up{job=\"tollgate\""),
                "{expr}"
            );
            // Grafana's variables, made concrete for promtool.
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            n += 1;
            rules.push_str(&format!(
                "      - record: dashboard:q{n}\n        expr: '{}'\n",
                expr.replace('\'', "''")
            ));
        }
    }
    assert!(n >= 10);
    let path = std::env::temp_dir().join(format!("tg-dashboard-{}.yml", std::process::id()));
    std::fs::write(&path, rules).unwrap();
    let said = promtool(&["check", "rules", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert!(
        said.contains(&format!("SUCCESS: {n} rules found")),
        "{said}"
    );
}
