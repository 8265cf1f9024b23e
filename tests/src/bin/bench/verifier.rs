//! The verifier's work per program: how close the live programs (single-
//! and multi-buffer), the replay program and the SYN-cookie programs they
//! jump to are to the kernel's limit of 1,000,000 processed instructions.

use monitor_common::maps::{PROG_LINEAR, PROG_MAIN, PROG_REPLAY, PROG_SYNACK, PROG_SYNACK_LINEAR};
use tollgate::loader::Tollgate;

pub fn run(tg: &Tollgate) -> anyhow::Result<()> {
    let mut verified = Vec::new();
    for name in [
        PROG_LINEAR,
        PROG_MAIN,
        PROG_REPLAY,
        PROG_SYNACK_LINEAR,
        PROG_SYNACK,
    ] {
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
