//! The packet fuzzer: generated frames (`frames`) go through the kernel's
//! parse (`tollgate_parse`, by BPF_PROG_TEST_RUN) and through a reference
//! parser (`oracle`), and every field of the two `PacketInfo`s is
//! compared. A frame they disagree on is saved under
//! `tests/corpus/packets/` as a reproducer, and every later run replays
//! the saved ones first. The suite runs 100,000 frames
//! (`tests/packet_fuzz.rs`); `cargo xtask fuzz --frames N` runs more.

pub mod frames;
pub mod oracle;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::Context;
use fastrand::Rng;
use monitor_common::types::PacketInfo;
use tollgate::{loader::Tollgate, replay::PacketReport};

/// Disagreements kept in full for the report (all are counted and saved).
const KEEP: usize = 10;

/// A frame the kernel and the oracle read differently.
pub struct Mismatch {
    pub frame: Vec<u8>,
    pub kernel: PacketInfo,
    pub oracle: PacketInfo,
    /// Where it was saved as a reproducer.
    pub saved: Option<PathBuf>,
}

impl Mismatch {
    /// Both readings in `tollgate replay`'s terms, and the frame in hex.
    pub fn describe(&self) -> String {
        let line = |i: &PacketInfo| {
            serde_json::to_string(&PacketReport::parsed(0, self.frame.len(), i)).unwrap()
        };
        let hex: String = self.frame.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "frame {hex}\n  kernel {}\n  oracle {}\n  kernel raw {:?}\n  oracle raw {:?}\n  saved as {}",
            line(&self.kernel),
            line(&self.oracle),
            self.kernel,
            self.oracle,
            self.saved
                .as_deref()
                .map_or("(not saved)".into(), |p| p.display().to_string())
        )
    }
}

/// What a run saw.
#[derive(Default)]
pub struct Outcome {
    /// Frames compared: the corpus's and the generated.
    pub frames: u64,
    pub corpus: usize,
    pub mismatched: u64,
    /// The first few disagreements, in full.
    pub mismatches: Vec<Mismatch>,
    /// What the generated frames reached, as `tollgate replay` names it:
    /// families, upper layers, fragment kinds and malformed headers.
    pub reached: BTreeSet<String>,
}

/// The saved reproducers.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/packets")
}

/// Runs the corpus, then `count` frames generated from `seed`.
pub fn run(tg: &mut Tollgate, seed: u64, count: u64) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    for frame in corpus()? {
        out.corpus += 1;
        compare(tg, &frame, &mut out)?;
    }
    let mut rng = Rng::with_seed(seed);
    for _ in 0..count {
        let frame = frames::frame(&mut rng);
        let info = compare(tg, &frame, &mut out)?;
        let r = PacketReport::parsed(0, frame.len(), &info);
        out.reached.insert(format!("family {}", r.family));
        out.reached
            .insert(format!("frag {}", r.frag.unwrap_or("-")));
        out.reached.insert(format!("l4 {}", l4_name(&info)));
        out.reached
            .insert(format!("malformed {}", r.malformed_at.unwrap_or("none")));
    }
    Ok(out)
}

fn l4_name(i: &PacketInfo) -> &'static str {
    use monitor_common::types::l4;
    match i.l4 {
        l4::TCP => "tcp",
        l4::UDP => "udp",
        l4::ICMP => "icmp",
        l4::ICMPV6 => "icmpv6",
        _ => "none",
    }
}

/// Compares one frame; returns the kernel's reading.
fn compare(tg: &mut Tollgate, frame: &[u8], out: &mut Outcome) -> anyhow::Result<PacketInfo> {
    out.frames += 1;
    let kernel = tg
        .parse_frame(frame)
        .with_context(|| format!("running the parse on a {}-byte frame", frame.len()))?;
    let oracle = oracle::parse(frame);
    if kernel != oracle {
        out.mismatched += 1;
        // A tree that cannot be written (a read-only checkout) loses the
        // reproducer, not the report of the mismatch.
        let saved = save(frame).unwrap_or_else(|e| {
            eprintln!("packet fuzz: {e:#}");
            None
        });
        if out.mismatches.len() < KEEP {
            out.mismatches.push(Mismatch {
                frame: frame.to_vec(),
                kernel,
                oracle,
                saved,
            });
        }
    }
    Ok(kernel)
}

/// The saved reproducers, in name order.
fn corpus() -> anyhow::Result<Vec<Vec<u8>>> {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading reproducer {}", p.display())))
        .collect()
}

/// Saves `frame` under the corpus, named by its content (FNV-1a), once.
fn save(frame: &[u8]) -> anyhow::Result<Option<PathBuf>> {
    let hash = frame.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{hash:016x}.bin"));
    if !path.exists() {
        std::fs::write(&path, frame).with_context(|| format!("saving {}", path.display()))?;
    }
    Ok(Some(path))
}
