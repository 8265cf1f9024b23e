//! The text views `tollgate run` prints: counters and top talkers.

use std::fmt::Write as _;

use monitor_common::{
    maps::source_event,
    reason::{Reason, Verdict},
    types::{RuntimeConfig, SourceFlow, SourceKey},
};

use crate::{
    maps::{Counters, source_key_net},
    snapshot::Talker,
};

/// The `n` sources with the most packets, with their ACK counts from
/// `acks`.
pub fn top_talkers(
    flows: &[SourceFlow],
    cfg: &RuntimeConfig,
    n: usize,
    acks: impl Fn(&SourceKey) -> u64,
) -> Vec<Talker> {
    let mut v: Vec<_> = flows.iter().collect();
    v.sort_by_key(|s| std::cmp::Reverse(s.packets));
    v.into_iter()
        .take(n)
        .map(|s| {
            let net = source_key_net(&s.key, cfg);
            Talker::new(net, net.to_string(), s, acks(&s.key))
        })
        .collect()
}

/// Counters and top talkers as a table.
pub fn render(
    iface: &str,
    counters: &Counters,
    tracked: usize,
    capacity: u32,
    talkers: &[Talker],
) -> String {
    let mut out = String::new();
    let pass = counters.total(Verdict::Pass);
    let drop = counters.total(Verdict::Drop);
    let answered = counters.total(Verdict::Tx);
    let evicted = counters.source_events[source_event::EVICTED as usize];
    let _ = writeln!(
        out,
        "== tollgate on {iface}: passed {} pkts / {} B, dropped {} pkts / {} B, answered {} SYNs with cookies; sources {tracked}/{capacity} tracked, {} evicted",
        pass.packets, pass.bytes, drop.packets, drop.bytes, answered.packets, evicted,
    );
    let _ = write!(out, "   by reason:");
    for r in Reason::ALL {
        let n = counters.packets(r);
        if n > 0 {
            let _ = write!(out, " {}={n}", r.name());
        }
    }
    let _ = writeln!(out);
    if !talkers.is_empty() {
        let _ = writeln!(
            out,
            "   {:<28} {:>10} {:>10} {:>10} {:>12} {:>8}",
            "source", "packets", "passed", "dropped", "bytes", "syns"
        );
        for t in talkers {
            let _ = writeln!(
                out,
                "   {:<28} {:>10} {:>10} {:>10} {:>12} {:>8}",
                t.source,
                t.packets,
                t.packets - t.dropped.min(t.packets),
                t.dropped,
                t.bytes,
                t.syns
            );
        }
    }
    out
}
