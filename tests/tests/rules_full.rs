//! A full rule set (`maps::MAX_RULES_PER_FAMILY`, 16,384 rules per
//! family): every rule of a config that fills it is enforced; one more,
//! from the CLI or from a reloaded config, is refused with the limit
//! named and what to do, and every rule in force stays in force.

use lab::daemon::{Daemon, config};
use monitor_common::maps::MAX_RULES_PER_FAMILY;

const DENIED: &str = "2001:db8:1::1";
/// Under the last of the rules (2001:db8:4000::/48): a set cut short would
/// leave it out.
const LAST: &str = "2001:db8:4000::1";

/// `n` IPv6 deny rules, one /48 each: 2001:db8:1::/48, 2001:db8:2::/48...
fn rules(n: u32) -> String {
    (1..=n)
        .map(|i| format!("[[rule]]\ncidr = \"2001:db8:{i:x}::/48\"\naction = \"deny\"\n"))
        .collect()
}

#[test]
fn a_full_rule_set_refuses_one_more_and_keeps_every_rule_in_force() {
    let addrs = [DENIED, LAST].map(|a| a.parse().unwrap());
    let lab = lab::Lab::new("rfull", &addrs).expect("building the lab");
    let d = Daemon::in_lab(lab, "rfull", |dir| {
        config(dir, &rules(MAX_RULES_PER_FAMILY))
    });
    let count = |d: &Daemon| {
        d.json(&["rules", "list"])["rules"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = count(&d);
    assert!(
        before > MAX_RULES_PER_FAMILY as usize,
        "{before} rules in force"
    );
    // The first rule and the last: all of them made it into the kernel.
    for (src, shown) in [(DENIED, "2001:db8:1::/64"), (LAST, "2001:db8:4000::/64")] {
        let n = d.send(src, 100, 1_000);
        assert_eq!(n, 100, "the lab sent the flow");
        assert_eq!(d.source(shown, n), (n, n), "{src}: its rule enforced");
    }
    let sent = 100;

    // One more IPv6 rule from the CLI: refused, saying why and what to do.
    let said = d.refused(&["rules", "add", "2001:db8:ffff::/48", "--action", "deny"]);
    assert!(
        said.contains("too many IPv6 rules") && said.contains("16384") && said.contains("merge"),
        "{said}"
    );
    assert_eq!(count(&d), before, "nothing in force changed");
    // The other family has room.
    d.json(&["rules", "add", "198.51.100.0/24", "--action", "deny"]);
    assert_eq!(count(&d), before + 1);

    // A reloaded config one rule over: refused, the rules in force stay.
    let path = d.dir.join("tollgate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{text}[[rule]]\ncidr = \"2001:db8:fffe::/48\"\naction = \"deny\"\n"),
    )
    .unwrap();
    let said = d.refused(&["reload"]);
    assert!(said.contains("too many IPv6 rules"), "{said}");
    assert_eq!(count(&d), before + 1, "the reload changed nothing");
    let more = d.send(DENIED, 100, 1_000);
    assert_eq!(
        d.source("2001:db8:1::/64", sent + more),
        (sent + more, sent + more),
        "still enforced"
    );
}
