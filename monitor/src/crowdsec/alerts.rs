//! A detector's ban as a CrowdSec alert (`POST /v1/alerts`): the source,
//! the decision the fleet should apply (a ban of the same prefix and
//! length, scenario `tollgate/<detector>`, origin `tollgate`) and the
//! detector's evidence as event metadata. Pure.

use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use serde_json::{Value, json};

/// The scenarios Tollgate reports, one per detector (declared at login).
pub const SCENARIOS: [&str; 7] = [
    "tollgate/flood",
    "tollgate/syn_flood",
    "tollgate/global_syn_flood",
    "tollgate/port_scan",
    "tollgate/spoofed_storm",
    "tollgate/spike",
    "tollgate/prefix_storm",
];

/// What a detector's ban says to the fleet.
pub struct Ban<'a> {
    pub net: IpNet,
    pub ttl: Duration,
    pub detector: &'a str,
    /// (name, observed, line) as the detector found them.
    pub evidence: Vec<(&'a str, f64, f64)>,
}

/// The alert for `b`, at `now`.
pub fn alert(b: &Ban, now: SystemTime) -> Value {
    let at = humantime::format_rfc3339_seconds(now).to_string();
    let scenario = format!("tollgate/{}", b.detector);
    // A single address is scope Ip, a wider prefix scope Range.
    let host = b.net.prefix_len() == b.net.max_prefix_len();
    let (scope, value) = if host {
        ("Ip", b.net.addr().to_string())
    } else {
        ("Range", b.net.to_string())
    };
    let mut source = json!({ "scope": scope, "value": value });
    if host {
        source["ip"] = json!(value);
    } else {
        source["range"] = json!(value);
    }
    let mut meta = vec![
        json!({"key": "detector", "value": b.detector}),
        json!({"key": "source_ip", "value": value}),
        json!({"key": "service", "value": "tollgate"}),
    ];
    for (name, observed, line) in &b.evidence {
        meta.push(json!({"key": name, "value": format!("{observed:.0}")}));
        meta.push(json!({"key": format!("{name}_line"), "value": format!("{line:.0}")}));
    }
    json!({
        "scenario": scenario,
        "scenario_hash": "",
        "scenario_version": env!("CARGO_PKG_VERSION"),
        "message": format!("tollgate: {} from {value}, banned for {}s", b.detector, b.ttl.as_secs()),
        "events_count": 1,
        "start_at": at,
        "stop_at": at,
        "capacity": 0,
        "leakspeed": "0",
        "simulated": false,
        "remediation": true,
        "source": source,
        "events": [{ "timestamp": at, "meta": meta }],
        "decisions": [{
            "duration": format!("{}s", b.ttl.as_secs()),
            "origin": "tollgate",
            "scenario": scenario,
            "scope": scope,
            "type": "ban",
            "value": value,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_carries_the_ban_and_its_evidence() {
        let b = Ban {
            net: "192.0.2.7/32".parse().unwrap(),
            ttl: Duration::from_secs(300),
            detector: "flood",
            evidence: vec![("packets_per_second", 42_000.4, 5_000.0)],
        };
        let a = alert(
            &b,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000),
        );
        assert_eq!(a["scenario"], "tollgate/flood");
        assert_eq!(a["source"]["scope"], "Ip");
        assert_eq!(a["source"]["ip"], "192.0.2.7");
        let d = &a["decisions"][0];
        assert_eq!(
            (
                d["type"].as_str(),
                d["scope"].as_str(),
                d["value"].as_str(),
                d["duration"].as_str()
            ),
            (Some("ban"), Some("Ip"), Some("192.0.2.7"), Some("300s"))
        );
        assert_eq!(d["origin"], "tollgate");
        let meta = a["events"][0]["meta"].as_array().unwrap();
        assert!(meta.contains(&json!({"key": "packets_per_second", "value": "42000"})));
        assert!(meta.contains(&json!({"key": "packets_per_second_line", "value": "5000"})));
        assert_eq!(a["start_at"], "2026-11-30T00:53:20Z");
        assert!(SCENARIOS.contains(&"tollgate/flood"));

        let r = alert(
            &Ban {
                net: "2001:db8:1::/64".parse().unwrap(),
                ..b
            },
            SystemTime::now(),
        );
        assert_eq!(r["source"]["scope"], "Range");
        assert_eq!(r["decisions"][0]["value"], "2001:db8:1::/64");
    }
}
