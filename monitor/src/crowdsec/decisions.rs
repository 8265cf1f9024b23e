//! The Local API's decision stream (`GET /v1/decisions/stream`) and what
//! Tollgate does with each decision: a `ban` on an `Ip` or `Range`, IPv4
//! or IPv6, becomes a kernel ban for the time it has left; a deleted one
//! is lifted; anything else is counted and left alone. Pure: the daemon
//! (`daemon/crowdsec.rs`) applies the actions.

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::duration;

/// One answer of the stream: decisions new and deleted since the last
/// pull (`null` when there are none).
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Stream {
    #[serde(default)]
    pub new: Option<Vec<Decision>>,
    #[serde(default)]
    pub deleted: Option<Vec<Decision>>,
}

/// A decision as the Local API sends it (the fields Tollgate reads).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Decision {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub origin: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub value: String,
    /// Time left, a Go duration (`3h59m59s`; negative once past).
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub scenario: String,
}

/// What to do with one decision.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Ban `net` for `ttl`.
    Ban {
        net: IpNet,
        ttl: Duration,
        scenario: String,
        origin: String,
    },
    /// Lift the ban on `net` this source placed.
    Lift { net: IpNet },
    /// Not Tollgate's to apply (another type or scope, an expired one):
    /// counted under `why`.
    Ignore { why: &'static str },
    /// A decision that cannot be read: `why` names what is wrong.
    Bad { why: String },
}

/// Why decisions are ignored, as the metric labels them.
pub const IGNORED: [&str; 3] = ["not_a_ban", "other_scope", "expired"];

impl Decision {
    /// What a new decision asks for.
    pub fn on_new(&self) -> Action {
        let net = match self.target() {
            Ok(Some(net)) => net,
            Ok(None) => return Action::Ignore { why: "other_scope" },
            Err(why) => return Action::Bad { why },
        };
        if !self.kind.eq_ignore_ascii_case("ban") {
            return Action::Ignore { why: "not_a_ban" };
        }
        let ns = match duration::parse(&self.duration) {
            Ok(ns) => ns,
            Err(why) => {
                return Action::Bad {
                    why: self.said(&why),
                };
            }
        };
        if ns <= 0 {
            return Action::Ignore { why: "expired" };
        }
        // Whole seconds, rounded up: a ban never ends before the LAPI's.
        let secs = (ns as u128).div_ceil(1_000_000_000) as u64;
        Action::Ban {
            net,
            ttl: Duration::from_secs(secs),
            scenario: self.scenario.clone(),
            origin: self.origin.clone(),
        }
    }

    /// What a deleted decision asks for.
    pub fn on_deleted(&self) -> Action {
        match self.target() {
            Ok(Some(net)) if self.kind.eq_ignore_ascii_case("ban") => Action::Lift { net },
            Ok(Some(_)) => Action::Ignore { why: "not_a_ban" },
            Ok(None) => Action::Ignore { why: "other_scope" },
            Err(why) => Action::Bad { why },
        }
    }

    /// The address or prefix of an `Ip` or `Range` decision; none for
    /// another scope (`Country`, `AS`, `Username`...).
    fn target(&self) -> Result<Option<IpNet>, String> {
        let value = self.value.trim();
        if self.scope.eq_ignore_ascii_case("ip") {
            let ip: std::net::IpAddr = value
                .parse()
                .map_err(|_| self.said(&format!("{value:?} is not an IP address")))?;
            return Ok(Some(IpNet::from(ip)));
        }
        if self.scope.eq_ignore_ascii_case("range") {
            let net: IpNet = value
                .parse()
                .map_err(|_| self.said(&format!("{value:?} is not a CIDR range")))?;
            // A range with host bits set means its network.
            return Ok(Some(net.trunc()));
        }
        Ok(None)
    }

    fn said(&self, why: &str) -> String {
        format!(
            "decision {} ({} {} {}): {why}",
            self.id, self.kind, self.scope, self.value
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(kind: &str, scope: &str, value: &str, duration: &str) -> Decision {
        Decision {
            id: 7,
            origin: "cscli".into(),
            kind: kind.into(),
            scope: scope.into(),
            value: value.into(),
            duration: duration.into(),
            scenario: "manual 'ban' from 'localhost'".into(),
        }
    }

    #[test]
    fn the_stream_reads_nulls_and_lists() {
        let s: Stream = serde_json::from_str(r#"{"new": null, "deleted": null}"#).unwrap();
        assert_eq!(s, Stream::default());
        let s: Stream = serde_json::from_str(
            r#"{"deleted":[],"new":[{"duration":"3h59m59.5s","id":1,"origin":"cscli","scenario":"x","scope":"Ip","type":"ban","value":"192.0.2.7","until":"2026-11-30T23:59:59Z","uuid":"u"}]}"#,
        )
        .unwrap();
        assert_eq!(s.new.unwrap()[0].value, "192.0.2.7");
        assert_eq!(s.deleted, Some(vec![]));
    }

    #[test]
    fn bans_on_ips_and_ranges_of_both_families_become_kernel_bans() {
        let Action::Ban { net, ttl, .. } = d("ban", "Ip", "192.0.2.7", "3h59m59.2s").on_new()
        else {
            panic!()
        };
        assert_eq!(
            (net.to_string().as_str(), ttl.as_secs()),
            ("192.0.2.7/32", 14_400)
        );
        let Action::Ban { net, .. } = d("ban", "Range", "2001:db8:1::/48", "1m").on_new() else {
            panic!()
        };
        assert_eq!(net.to_string(), "2001:db8:1::/48");
        let Action::Ban { net, .. } = d("ban", "range", "198.51.100.77/24", "1m").on_new() else {
            panic!()
        };
        assert_eq!(net.to_string(), "198.51.100.0/24", "host bits cleared");
        assert_eq!(
            d("ban", "Ip", "2001:db8::7", "1m").on_deleted(),
            Action::Lift {
                net: "2001:db8::7/128".parse().unwrap()
            }
        );
    }

    #[test]
    fn other_types_scopes_and_expired_decisions_are_ignored_bad_ones_named() {
        assert_eq!(
            d("captcha", "Ip", "192.0.2.7", "1m").on_new(),
            Action::Ignore { why: "not_a_ban" }
        );
        assert_eq!(
            d("ban", "Country", "FR", "1m").on_new(),
            Action::Ignore { why: "other_scope" }
        );
        assert_eq!(
            d("ban", "Ip", "192.0.2.7", "-17.6ms").on_new(),
            Action::Ignore { why: "expired" }
        );
        let Action::Bad { why } = d("ban", "Ip", "192.0.2", "1m").on_new() else {
            panic!()
        };
        assert!(why.contains("\"192.0.2\" is not an IP address"), "{why}");
        let Action::Bad { why } = d("ban", "Ip", "192.0.2.7", "forever").on_new() else {
            panic!()
        };
        assert!(
            why.contains("decision 7") && why.contains("\"forever\""),
            "{why}"
        );
    }
}
