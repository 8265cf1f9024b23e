//! The verifier's work per program: how close the live and the replay
//! programs (and the SYN-cookie program they jump to) are to the kernel's limit of 1,000,000 processed instructions.

use monitor_common::maps::{PROG_MAIN, PROG_REPLAY, PROG_SYNACK};
use tollgate::loader::Tollgate;

pub fn run(tg: &Tollgate) -> anyhow::Result<()> {
    let mut verified = Vec::new();
    for name in [PROG_MAIN, PROG_REPLAY, PROG_SYNACK] {
        let insns = tg.program(name)?.info()?.verified_instruction_count();
        verified.push(format!(
            "{name} {}",
            insns.map_or("unknown".to_owned(), |n| n.to_string())
        ));
    }
    println!(
        "verifier: instructions processed, {} (limit 1000000)",
        verified.join(", ")
    );
    Ok(())
}
