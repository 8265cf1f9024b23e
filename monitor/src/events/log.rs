//! One log line per event, in the daemon's log format. In JSON the line
//! has the shape of the daemon's other JSON lines (timestamp, level,
//! target, `event`, flattened fields, message), with the evidence nested
//! as an object a log pipeline can query, which tracing's fields cannot
//! carry; so the line is written here rather than through tracing. In
//! text it goes through tracing like every other line.

use std::io::Write as _;

use super::Event;
use crate::config::LogFormat;

pub fn write(e: &Event, format: LogFormat) {
    match format {
        LogFormat::Json => {
            let line = serde_json::json!({
                "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
                "level": "WARN",
                "target": "tollgate::events",
                "event": e.kind,
                "actor": e.actor,
                "detector": e.detector.as_deref().unwrap_or(""),
                "source": e.source.as_deref().unwrap_or(""),
                "action": e.action,
                "evidence": e.evidence,
                "seq": e.seq,
                "message": e.message,
            });
            // One write of the whole line: lines from threads do not mix.
            let _ = std::io::stderr()
                .lock()
                .write_all(format!("{line}\n").as_bytes());
        }
        LogFormat::Text => {
            let evidence: Vec<String> = e
                .evidence
                .iter()
                .map(|(k, r)| match r.limit {
                    Some(l) => format!("{k}={} (line {})", r.observed, l),
                    None => format!("{k}={}", r.observed),
                })
                .collect();
            tracing::warn!(
                event = %e.kind,
                actor = %e.actor,
                detector = e.detector.as_deref().unwrap_or(""),
                source = e.source.as_deref().unwrap_or(""),
                action = %e.action,
                evidence = %evidence.join(" "),
                seq = e.seq,
                "{}",
                e.message
            );
        }
    }
}
