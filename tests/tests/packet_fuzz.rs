//! The packet fuzzer's bounded run (`lab::packet_fuzz`): 100,000
//! generated frames, and every saved reproducer, read by the kernel's
//! parse and by the reference parser, every field compared.

mod common;

use common::load;
use tollgate::policy::Policy;

const FRAMES: u64 = 100_000;

#[test]
fn the_parse_reads_100_000_fuzzed_frames_as_the_reference_parser_does() {
    let mut tg = load(&Policy::default());
    let seed = std::env::var("TG_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let out = lab::packet_fuzz::run(&mut tg, seed, FRAMES).expect("running the packet fuzzer");
    eprintln!(
        "packet fuzz: {} frames ({} from the corpus), {} mismatches, seed {seed} (TG_FUZZ_SEED={seed} repeats it)",
        out.frames, out.corpus, out.mismatched
    );
    let shown: Vec<String> = out.mismatches.iter().map(|m| m.describe()).collect();
    assert_eq!(
        out.mismatched,
        0,
        "the kernel's parse and the reference parser disagree (seed {seed}); the frames are saved as reproducers:\n{}",
        shown.join("\n")
    );
    // The generator reaches every outcome the parse has: a fuzzer that
    // never made a header cut short would prove nothing about it.
    for want in [
        "family ipv4",
        "family ipv6",
        "family other",
        "family malformed",
        "frag none",
        "frag first",
        "frag later",
        "frag atomic",
        "l4 tcp",
        "l4 udp",
        "l4 icmp",
        "l4 icmpv6",
        "l4 none",
    ]
    .into_iter()
    .map(String::from)
    .chain(
        // All but `ethernet`: a frame shorter than an Ethernet header is
        // never run (XDP never sees one; the kernel refuses to test-run
        // one).
        monitor_common::reason::Malformed::ALL
            .iter()
            .filter(|m| **m != monitor_common::reason::Malformed::Ethernet)
            .map(|m| format!("malformed {}", m.name())),
    ) {
        assert!(
            out.reached.contains(&want),
            "no generated frame reached `{want}` (reached: {:?})",
            out.reached
        );
    }
}
