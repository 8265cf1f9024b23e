//! Anomaly detectors: pure functions over per-interval observations, so
//! they are tested on the host with synthetic series. The daemon feeds them
//! what it reads from the kernel each interval and turns findings into
//! responses (bans, tighter limits) and events.
//!
//! Every finding carries its evidence: the numbers that crossed the line
//! and the line itself, so an operator can see why it fired.
//!
//! User space only (floating point); nothing here runs in the kernel.

/// An exponentially weighted mean and variance: a baseline that follows
/// slow change (the daily cycle) and flags fast change. No square roots:
/// deviations are compared squared.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ewma {
    /// Weight of each new observation (0 < alpha <= 1).
    pub alpha: f64,
    pub mean: f64,
    pub var: f64,
    /// Observations seen; the baseline is trusted after `warmup` of them.
    pub n: u64,
}

impl Ewma {
    pub const fn new(alpha: f64) -> Self {
        Self {
            alpha,
            mean: 0.0,
            var: 0.0,
            n: 0,
        }
    }

    /// Folds in `x`.
    pub fn observe(&mut self, x: f64) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let d = x - self.mean;
            self.mean += self.alpha * d;
            self.var = (1.0 - self.alpha) * (self.var + self.alpha * d * d);
        }
        self.n += 1;
    }

    /// Whether `x` is above the band `mean + k·σ` (and above `floor`,
    /// so a quiet baseline's tiny σ does not turn noise into alarms).
    pub fn above_band(&self, x: f64, k: f64, floor: f64) -> bool {
        if x <= floor || x <= self.mean {
            return false;
        }
        let d = x - self.mean;
        d * d > k * k * self.var.max(self.mean.max(1.0))
    }
}

/// Thresholds, each with a default suited to an API host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Per-source packets/s that is a flood whatever the baseline.
    pub flood_pps: f64,
    /// Per-source bytes/s that is a flood whatever the baseline.
    pub flood_bps: f64,
    /// Per-source SYNs/s above which the SYN ratio is looked at.
    pub syn_pps: f64,
    /// SYNs per completed handshake (pure ACKs) above which SYNs are not
    /// opening real connections.
    pub syn_ratio: f64,
    /// Global SYNs/s for a spoofed-source SYN flood.
    pub global_syn_pps: f64,
    /// Distinct destination ports per source per window for a scan.
    pub scan_ports: u32,
    /// New sources per second for a spoofed-source storm.
    pub new_sources_per_sec: f64,
    /// Deviation band width, in standard deviations, for spikes.
    pub spike_sigma: f64,
    /// Global packets/s below which no spike is reported.
    pub spike_floor_pps: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            flood_pps: 10_000.0,
            flood_bps: 100_000_000.0,
            syn_pps: 200.0,
            syn_ratio: 5.0,
            global_syn_pps: 5_000.0,
            scan_ports: 100,
            new_sources_per_sec: 2_000.0,
            spike_sigma: 6.0,
            spike_floor_pps: 10_000.0,
        }
    }
}

/// Which detector fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Detector {
    Flood,
    SynFlood,
    GlobalSynFlood,
    PortScan,
    SpoofedStorm,
    Spike,
    PrefixStorm,
}

impl Detector {
    pub const ALL: [Detector; 7] = [
        Detector::Flood,
        Detector::SynFlood,
        Detector::GlobalSynFlood,
        Detector::PortScan,
        Detector::SpoofedStorm,
        Detector::Spike,
        Detector::PrefixStorm,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Detector::Flood => "flood",
            Detector::SynFlood => "syn_flood",
            Detector::GlobalSynFlood => "global_syn_flood",
            Detector::PortScan => "port_scan",
            Detector::SpoofedStorm => "spoofed_storm",
            Detector::Spike => "spike",
            Detector::PrefixStorm => "prefix_storm",
        }
    }
}

/// The numbers behind a finding: up to four (name, observed, limit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evidence {
    pub items: [(&'static str, f64, f64); 4],
    pub len: usize,
}

impl Evidence {
    fn new(items: &[(&'static str, f64, f64)]) -> Self {
        let mut e = Self {
            items: [("", 0.0, 0.0); 4],
            len: items.len().min(4),
        };
        e.items[..e.len].copy_from_slice(&items[..e.len]);
        e
    }

    pub fn iter(&self) -> impl Iterator<Item = &(&'static str, f64, f64)> {
        self.items[..self.len].iter()
    }
}

/// One source's deltas over an interval of `secs` seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SourceRates {
    pub packets: u64,
    pub bytes: u64,
    pub syns: u64,
    /// TCP segments with ACK set and SYN clear: handshakes completed (and
    /// the data that follows).
    pub acks: u64,
    /// Distinct destination ports seen in the current window (estimate).
    pub distinct_ports: u32,
    pub secs: f64,
}

/// Per-source detectors: flood (absolute, and against the typical
/// source's rate), SYN flood, port scan. `typical_pps` is the baseline of
/// an active source's packet rate (e.g. an EWMA of the median).
pub fn judge_source(
    r: &SourceRates,
    typical_pps: f64,
    t: &Thresholds,
) -> Option<(Detector, Evidence)> {
    // Nothing sent in the window, nothing going on: the port sketch
    // outlives a scan by up to its window, and a ban nearing its end is
    // renewed only for a source still attacking.
    if r.packets == 0 {
        return None;
    }
    let secs = r.secs.max(1e-3);
    let pps = r.packets as f64 / secs;
    let bps = r.bytes as f64 / secs;
    let syn_pps = r.syns as f64 / secs;
    let ratio = r.syns as f64 / (r.acks.max(1)) as f64;
    // Many ports first: a scan at flood speed is a SYN flood too, and
    // "port_scan" says more about it.
    if r.distinct_ports >= t.scan_ports {
        return Some((
            Detector::PortScan,
            Evidence::new(&[(
                "distinct_ports",
                r.distinct_ports as f64,
                t.scan_ports as f64,
            )]),
        ));
    }
    if syn_pps > t.syn_pps && ratio > t.syn_ratio {
        return Some((
            Detector::SynFlood,
            Evidence::new(&[
                ("syn_per_second", syn_pps, t.syn_pps),
                ("syn_per_handshake", ratio, t.syn_ratio),
            ]),
        ));
    }
    // A flood is over the absolute line, and far above what a typical
    // source sends (so a host whose clients are all busy is not flagged
    // client by client).
    let relative = (typical_pps * 50.0).max(t.flood_pps / 10.0);
    if (pps > t.flood_pps || bps > t.flood_bps) && pps > relative {
        return Some((
            Detector::Flood,
            Evidence::new(&[
                ("packets_per_second", pps, t.flood_pps),
                ("bytes_per_second", bps, t.flood_bps),
                ("typical_source_pps", typical_pps, relative),
            ]),
        ));
    }
    None
}

/// Host-wide observations over an interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GlobalRates {
    pub packets: u64,
    pub syns: u64,
    /// What SYNs are compared with: completed handshakes, or (host-wide,
    /// where only SYNs are counted) all packets that are not SYNs.
    pub acks: u64,
    /// Sources created in the kernel's table during the interval.
    pub new_sources: u64,
    /// Of those, from bogon or reserved ranges.
    pub bogon_sources: u64,
    /// Packets their prefix's budget refused (dropped or, monitoring,
    /// counted): sources each within their own limit that together
    /// send more than their prefix may.
    pub prefix_limited: u64,
    pub secs: f64,
}

impl GlobalRates {
    /// Nowhere near a storm: new sources and prefix refusals under a
    /// tenth of what finds one. A storm's start is dated from the end of
    /// the last calm interval.
    pub fn calm(&self, t: &Thresholds) -> bool {
        let secs = self.secs.max(1e-3);
        (self.new_sources as f64) / secs < t.new_sources_per_sec / 10.0
            && (self.prefix_limited as f64) / secs < t.flood_pps / 10.0
    }
}

/// Host-wide state: the baselines the global detectors learn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GlobalDetector {
    pub pps: Ewma,
    pub new_sources: Ewma,
    /// Intervals before the baselines are trusted.
    pub warmup: u64,
}

impl Default for GlobalDetector {
    fn default() -> Self {
        Self {
            // About a 10-minute memory at 1 s intervals: follows the day,
            // not a burst.
            pps: Ewma::new(0.002),
            new_sources: Ewma::new(0.01),
            warmup: 30,
        }
    }
}

impl GlobalDetector {
    /// Judges one interval, then learns from it (an attack interval is
    /// learned with a small weight only, so the baseline is not dragged
    /// up by the attack it flags).
    pub fn judge(&mut self, g: &GlobalRates, t: &Thresholds) -> [Option<(Detector, Evidence)>; 4] {
        let secs = g.secs.max(1e-3);
        let pps = g.packets as f64 / secs;
        let syn_pps = g.syns as f64 / secs;
        let new_ps = g.new_sources as f64 / secs;
        let bogon_ps = g.bogon_sources as f64 / secs;
        let ratio = g.syns as f64 / g.acks.max(1) as f64;
        let prefix_ps = g.prefix_limited as f64 / secs;
        let trusted = self.pps.n >= self.warmup;
        let mut out = [None, None, None, None];
        if syn_pps > t.global_syn_pps && ratio > t.syn_ratio {
            out[0] = Some((
                Detector::GlobalSynFlood,
                Evidence::new(&[
                    ("syn_per_second", syn_pps, t.global_syn_pps),
                    ("syn_per_handshake", ratio, t.syn_ratio),
                    ("new_sources_per_second", new_ps, t.new_sources_per_sec),
                ]),
            ));
        }
        let storm_line = t.new_sources_per_sec.max(if trusted {
            self.new_sources.mean * 10.0
        } else {
            0.0
        });
        if new_ps > storm_line || bogon_ps > t.new_sources_per_sec / 10.0 {
            out[1] = Some((
                Detector::SpoofedStorm,
                Evidence::new(&[
                    ("new_sources_per_second", new_ps, storm_line),
                    (
                        "bogon_sources_per_second",
                        bogon_ps,
                        t.new_sources_per_sec / 10.0,
                    ),
                ]),
            ));
        }
        if trusted && self.pps.above_band(pps, t.spike_sigma, t.spike_floor_pps) {
            // The band's upper edge, for the evidence: mean + k·σ, with σ
            // from the variance without a square root (Newton, 8 steps).
            let sigma = sqrt(self.pps.var.max(self.pps.mean.max(1.0)));
            out[2] = Some((
                Detector::Spike,
                Evidence::new(&[
                    (
                        "packets_per_second",
                        pps,
                        self.pps.mean + t.spike_sigma * sigma,
                    ),
                    (
                        "baseline_packets_per_second",
                        self.pps.mean,
                        t.spike_floor_pps,
                    ),
                ]),
            ));
        }
        // A storm of sources each under its own limit: their prefixes'
        // budgets refuse a one-source flood's worth every second.
        if prefix_ps > t.flood_pps {
            out[3] = Some((
                Detector::PrefixStorm,
                Evidence::new(&[("prefix_limited_per_second", prefix_ps, t.flood_pps)]),
            ));
        }
        let attacked = out.iter().any(Option::is_some);
        let learn = |e: &mut Ewma, x: f64| {
            if attacked && e.n >= self.warmup {
                let a = e.alpha;
                e.alpha = a / 10.0;
                e.observe(x);
                e.alpha = a;
            } else {
                e.observe(x);
            }
        };
        let mut pps_e = self.pps;
        let mut new_e = self.new_sources;
        learn(&mut pps_e, pps);
        learn(&mut new_e, new_ps);
        self.pps = pps_e;
        self.new_sources = new_e;
        out
    }
}

/// Square root by Newton's method (core has none without libm).
pub fn sqrt(x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let mut g = if x > 1.0 { x / 2.0 } else { 1.0 };
    for _ in 0..60 {
        let next = 0.5 * (g + x / g);
        if (next - g).abs() < 1e-9 * g {
            return next;
        }
        g = next;
    }
    g
}

/// Distinct destination ports from a 64-bit port sketch (each port sets
/// bit `hash(port) % 64`): linear counting, `-64·ln(zeros/64)`, read from
/// a table so no logarithm is needed. Saturates at 64 set bits.
pub fn ports_from_sketch(bits: u64) -> u32 {
    /// `round(-64 · ln(z / 64))` for z = 0..=64 zero bits (z = 0 taken as
    /// 0.5 zero bits: the sketch is full, at least ~300 ports).
    const EST: [u32; 65] = [
        311, 266, 222, 196, 177, 163, 151, 142, 133, 126, 119, 113, 107, 102, 97, 93, 89, 85, 81,
        78, 74, 71, 68, 65, 63, 60, 58, 55, 53, 51, 48, 46, 44, 42, 40, 39, 37, 35, 33, 32, 30, 28,
        27, 25, 24, 23, 21, 20, 18, 17, 16, 15, 13, 12, 11, 10, 9, 7, 6, 5, 4, 3, 2, 1, 0,
    ];
    let zeros = bits.count_zeros() as usize;
    let set = 64 - zeros as u32;
    EST[zeros].max(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A deterministic pseudo-random stream for noise.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
        }
    }

    /// A day of per-second global rates with a diurnal cycle (5k to 50k
    /// pps) and ±10% noise, compressed to `n` intervals.
    fn diurnal(n: usize, seed: u64) -> Vec<f64> {
        let mut r = Lcg(seed);
        (0..n)
            .map(|i| {
                let phase = i as f64 / n as f64 * 2.0 * core::f64::consts::PI;
                let base = 27_500.0 - 22_500.0 * phase.cos();
                base * (0.9 + 0.2 * r.next())
            })
            .collect()
    }

    fn run(series: &[f64], new: &[f64], t: &Thresholds) -> Vec<(usize, Detector)> {
        let mut g = GlobalDetector::default();
        let mut out = Vec::new();
        for (i, (&pps, &ns)) in series.iter().zip(new).enumerate() {
            let f = g.judge(
                &GlobalRates {
                    packets: pps as u64,
                    syns: (pps * 0.01) as u64,
                    acks: (pps * 0.3) as u64,
                    new_sources: ns as u64,
                    bogon_sources: 0,
                    prefix_limited: 0,
                    secs: 1.0,
                },
                t,
            );
            out.extend(f.iter().flatten().map(|(d, _)| (i, *d)));
        }
        out
    }

    #[test]
    fn ewma_follows_slow_change_and_flags_fast_change() {
        let mut e = Ewma::new(0.05);
        for i in 0..1000 {
            e.observe(1000.0 + i as f64);
        }
        assert!((e.mean - 1980.0).abs() < 30.0, "{}", e.mean);
        assert!(!e.above_band(2100.0, 6.0, 100.0));
        assert!(e.above_band(20_000.0, 6.0, 100.0));
        assert!(!e.above_band(20_000.0, 6.0, 50_000.0), "under the floor");
    }

    #[test]
    fn quiet_on_a_noisy_diurnal_day() {
        let t = Thresholds::default();
        for seed in 1..6 {
            let s = diurnal(8_640, seed);
            let new: Vec<f64> = s.iter().map(|p| p / 100.0).collect();
            assert_eq!(run(&s, &new, &t), Vec::new(), "seed {seed}");
        }
    }

    #[test]
    fn spike_fires_with_evidence_and_the_baseline_is_not_dragged_up() {
        let t = Thresholds::default();
        let mut s = diurnal(4_000, 7);
        let new: Vec<f64> = s.iter().map(|p| p / 100.0).collect();
        for x in &mut s[2_000..2_060] {
            *x += 400_000.0;
        }
        let found = run(&s, &new, &t);
        let spikes: Vec<usize> = found
            .iter()
            .filter(|f| f.1 == Detector::Spike)
            .map(|f| f.0)
            .collect();
        assert_eq!(
            spikes.first(),
            Some(&2_000),
            "fires in the first attack interval"
        );
        assert_eq!(spikes.len(), 60, "and through the attack, not after");
        let mut g = GlobalDetector::default();
        for &pps in &s[..2_000] {
            g.judge(
                &GlobalRates {
                    packets: pps as u64,
                    secs: 1.0,
                    ..Default::default()
                },
                &t,
            );
        }
        let f = g.judge(
            &GlobalRates {
                packets: 450_000,
                secs: 1.0,
                ..Default::default()
            },
            &t,
        );
        let (d, ev) = f[2].expect("spike");
        assert_eq!(d, Detector::Spike);
        let (name, observed, line) = ev.items[0];
        assert_eq!(name, "packets_per_second");
        assert_eq!(observed, 450_000.0);
        assert!(
            line < observed && line > 20_000.0,
            "the band's edge: {line}"
        );
    }

    #[test]
    fn spoofed_storm_and_global_syn_flood() {
        let t = Thresholds::default();
        let mut g = GlobalDetector::default();
        for _ in 0..100 {
            g.judge(
                &GlobalRates {
                    packets: 20_000,
                    syns: 100,
                    acks: 5_000,
                    new_sources: 50,
                    secs: 1.0,
                    ..Default::default()
                },
                &t,
            );
        }
        let f = g.judge(
            &GlobalRates {
                packets: 300_000,
                syns: 280_000,
                acks: 5_000,
                new_sources: 250_000,
                bogon_sources: 0,
                prefix_limited: 0,
                secs: 1.0,
            },
            &t,
        );
        assert_eq!(f[0].map(|x| x.0), Some(Detector::GlobalSynFlood));
        assert_eq!(f[1].map(|x| x.0), Some(Detector::SpoofedStorm));
        let (_, ev) = f[1].unwrap();
        assert_eq!(ev.items[0].0, "new_sources_per_second");
        assert_eq!(ev.items[0].1, 250_000.0);
        // Bogon sources alone, in small numbers, are a storm sign too.
        let f = g.judge(
            &GlobalRates {
                packets: 20_000,
                acks: 5_000,
                new_sources: 300,
                bogon_sources: 300,
                secs: 1.0,
                ..Default::default()
            },
            &t,
        );
        assert_eq!(f[1].map(|x| x.0), Some(Detector::SpoofedStorm));
    }

    #[test]
    fn a_storm_under_the_per_source_limits_is_found_by_its_prefix_refusals() {
        let t = Thresholds::default();
        let mut g = GlobalDetector::default();
        let rates = |prefix_limited| GlobalRates {
            packets: 600_000,
            acks: 600_000,
            new_sources: 3,
            prefix_limited,
            secs: 2.0,
            ..Default::default()
        };
        // A flood's worth per second, not per interval.
        assert_eq!(g.judge(&rates(15_000), &t)[3], None);
        let f = g.judge(&rates(400_000), &t)[3].expect("a prefix storm");
        assert_eq!(f.0, Detector::PrefixStorm);
        assert_eq!(
            f.1.items[0],
            ("prefix_limited_per_second", 200_000.0, t.flood_pps)
        );
    }

    #[test]
    fn calm_is_a_tenth_of_a_storm_or_less() {
        let t = Thresholds::default();
        let g = |new_sources, prefix_limited| GlobalRates {
            new_sources,
            prefix_limited,
            secs: 2.0,
            ..Default::default()
        };
        assert!(g(300, 1_000).calm(&t));
        assert!(!g(500, 0).calm(&t), "250 new sources a second");
        assert!(!g(0, 3_000).calm(&t), "1,500 refusals a second");
    }

    #[test]
    fn per_source_detectors() {
        let t = Thresholds::default();
        let quiet = SourceRates {
            packets: 50,
            bytes: 40_000,
            syns: 1,
            acks: 40,
            distinct_ports: 1,
            secs: 1.0,
        };
        assert_eq!(judge_source(&quiet, 20.0, &t), None);
        let flood = SourceRates {
            packets: 200_000,
            bytes: 12_800_000,
            secs: 1.0,
            ..quiet
        };
        let (d, ev) = judge_source(&flood, 20.0, &t).unwrap();
        assert_eq!(d, Detector::Flood);
        assert_eq!(ev.items[0], ("packets_per_second", 200_000.0, 10_000.0));
        let syn = SourceRates {
            packets: 5_000,
            syns: 5_000,
            acks: 0,
            ..quiet
        };
        assert_eq!(judge_source(&syn, 20.0, &t).unwrap().0, Detector::SynFlood);
        // A busy but real client: many SYNs, each completed.
        let busy = SourceRates {
            packets: 9_000,
            syns: 1_000,
            acks: 8_000,
            ..quiet
        };
        assert_eq!(judge_source(&busy, 20.0, &t), None);
        let scan = SourceRates {
            distinct_ports: 150,
            ..quiet
        };
        assert_eq!(judge_source(&scan, 20.0, &t).unwrap().0, Detector::PortScan);
        // A scan that stopped: its sketch still shows the ports, but it
        // sent nothing in the window.
        let stopped = SourceRates {
            packets: 0,
            bytes: 0,
            syns: 0,
            acks: 0,
            ..scan
        };
        assert_eq!(judge_source(&stopped, 20.0, &t), None);
        // Everyone busy: a high rate that is typical is not a flood.
        let typical = SourceRates {
            packets: 12_000,
            bytes: 1_000_000,
            ..quiet
        };
        assert_eq!(judge_source(&typical, 11_000.0, &t), None);
    }

    #[test]
    fn port_sketch_estimates_distinct_ports() {
        // A random-looking hash (splitmix64): linear counting's premise.
        let h = |p: u32| {
            let mut z = (p as u64).wrapping_add(0x9e3779b97f4a7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            (z ^ (z >> 31)) >> 58
        };
        let sketch = |ports: core::ops::Range<u32>| ports.fold(0u64, |b, p| b | 1 << h(p));
        assert_eq!(ports_from_sketch(0), 0);
        assert_eq!(ports_from_sketch(sketch(80..81)), 1);
        for (n, lo, hi) in [(10u32, 8, 12), (40, 32, 50), (80, 60, 105)] {
            let mut total = 0;
            for k in 0..50 {
                total += ports_from_sketch(sketch(k * 1000..k * 1000 + n));
            }
            let mean = total / 50;
            assert!((lo..=hi).contains(&mean), "{n} ports -> {mean} on average");
        }
        assert!(
            ports_from_sketch(sketch(1..1000)) >= 150,
            "a scan saturates high"
        );
    }

    #[test]
    fn sqrt_matches() {
        for x in [0.0, 1e-6, 2.0, 1e6, 123_456_789.0] {
            let r = sqrt(x);
            assert!((r * r - x).abs() <= 1e-6 * x.max(1.0), "{x}: {r}");
        }
    }
}
