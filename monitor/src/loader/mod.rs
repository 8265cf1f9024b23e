//! Loading the XDP object and taking ownership of its maps; attaching
//! and detaching are in `attach`.

mod attach;

use std::path::PathBuf;

pub use attach::{AttachMode, MtuChange, ifindex};
use attach::{Attached, attach_hint};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, ProgramArray},
    programs::Xdp,
};
use monitor_common::maps::{self as names, DEFAULT_MAX_SOURCES};

use crate::maps::{MapError, Maps};

/// The compiled XDP object, built by build.rs from `monitor-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tollgate-ebpf"));

/// Errors from loading and attaching, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "loading the XDP object into the kernel failed (are you root, or do you hold CAP_BPF and CAP_NET_ADMIN?)"
    )]
    Load(#[source] aya::EbpfError),
    #[error(
        "the XDP object has no program `{0}`; the object and this binary are out of step, rebuild with `cargo xtask build`"
    )]
    MissingProgram(&'static str),
    #[error("the kernel verifier rejected program `{name}`")]
    Verify {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error(
        "attaching to interface `{iface}` in {mode} mode failed{}",
        attach_hint(.iface, *.mode, .source)
    )]
    Attach {
        iface: String,
        mode: AttachMode,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("detaching from interface `{iface}` failed")]
    Detach {
        iface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error(
        "the pinned source table holds {pinned} sources but the config asks for {wanted} (sources.max_tracked changed)"
    )]
    PinnedCapacity { pinned: u32, wanted: u32 },
    #[error(
        "reading the number of possible CPUs from /sys/devices/system/cpu/possible (the drop cache has one part per CPU); is /sys mounted?"
    )]
    Cpus(#[source] std::io::Error),
    #[error("pinning the XDP link on `{iface}` at {path}")]
    Pin {
        iface: String,
        path: PathBuf,
        #[source]
        source: anyhow::Error,
    },
    #[error("putting the multi-buffer program into the XDP link on `{iface}` after its MTU grew")]
    Refit {
        iface: String,
        #[source]
        source: anyhow::Error,
    },
    #[error(transparent)]
    Map(#[from] MapError),
}

/// Knobs fixed at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Slots in the source table.
    pub max_sources: u32,
    /// Pin the maps here (the daemon's `PinDir`), adopting those already
    /// pinned; `None` (tools and tests): private maps, gone with the value.
    pub pin_dir: Option<PathBuf>,
    /// Also load the bench's reference program (`PROG_UNCACHED`), which the
    /// daemon never runs.
    pub reference: bool,
    /// Also load the multi-buffer production program and its SYN-ACK
    /// program (`PROG_MAIN`, `PROG_SYNACK`): whatever attaches (the
    /// daemon, `tollgate run`) needs it for an interface whose MTU does
    /// not fit one buffer, or grows past it. Verifying it takes as long as
    /// the rest, which tools that only judge frames skip. Only at load:
    /// a program loaded after the maps were taken could refer to a map
    /// whose descriptor is closed.
    pub multi_buffer: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_sources: DEFAULT_MAX_SOURCES,
            pin_dir: None,
            reference: false,
            multi_buffer: false,
        }
    }
}

/// A loaded object: the programs (verified, not yet attached) and the maps,
/// which this struct owns.
pub struct Tollgate {
    ebpf: Ebpf,
    /// Held, not used: see `fill_jump_table`. The single-buffer
    /// programs' table, then the multi-buffer ones' once loaded.
    jumps: Vec<ProgramArray<MapData>>,
    pub maps: Maps,
    attached: Vec<Attached>,
}

impl Tollgate {
    /// Loads and verifies the programs (the single-buffer production one
    /// and its SYN-ACK program, the multi-buffer pair if
    /// `opts.multi_buffer`, the replay one, and the parse-only and floor
    /// references the bench measures against), fills the jump tables and
    /// takes the maps. The bucket clock's origin is set when the first
    /// policy is applied (`Maps::apply_policy`).
    pub fn load(opts: &LoadOptions) -> Result<Self, LoadError> {
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(names::SOURCES, names::index_entries(opts.max_sources));
        loader.map_max_entries(names::SOURCE_FLOWS, opts.max_sources);
        loader.map_max_entries(names::SOURCE_CONTROL, opts.max_sources);
        loader.map_max_entries(
            names::SEEN,
            monitor_common::seen::map_words(opts.max_sources),
        );
        // One drop cache per possible CPU (the kernel indexes it by CPU).
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| LoadError::Cpus(e))? as u32;
        loader.map_max_entries(names::DROPS, monitor_common::drops::DROPS_PER_CPU * cpus);
        let pins: Vec<(&str, PathBuf)> = match &opts.pin_dir {
            Some(dir) => names::PINNED.iter().map(|m| (*m, dir.join(m))).collect(),
            None => Vec::new(),
        };
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT).map_err(LoadError::Load)?;
        // A pinned map is adopted as it is; its capacity is the one thing
        // a config can change without a new layout version.
        if let Some(aya::maps::Map::Array(m)) = ebpf.map(names::SOURCE_FLOWS) {
            let pinned = m
                .info()
                .map_err(|source| {
                    LoadError::Map(MapError::Op {
                        map: names::SOURCE_FLOWS,
                        op: "reading the map's info",
                        source,
                    })
                })?
                .max_entries();
            if pinned != opts.max_sources {
                return Err(LoadError::PinnedCapacity {
                    pinned,
                    wanted: opts.max_sources,
                });
            }
        }
        let programs = [
            names::PROG_LINEAR,
            names::PROG_REPLAY,
            names::PROG_PARSE,
            names::PROG_FLOOR,
            names::PROG_SYNACK_LINEAR,
        ];
        let reference = opts.reference.then_some(names::PROG_UNCACHED);
        let multi_buffer = opts
            .multi_buffer
            .then_some([names::PROG_SYNACK, names::PROG_MAIN])
            .into_iter()
            .flatten();
        for name in programs.into_iter().chain(reference).chain(multi_buffer) {
            load_program(&mut ebpf, name)?;
        }
        let mut jumps = vec![fill_jump_table(
            &mut ebpf,
            names::JUMP_LINEAR,
            names::PROG_SYNACK_LINEAR,
        )?];
        if opts.multi_buffer {
            jumps.push(fill_jump_table(&mut ebpf, names::JUMP, names::PROG_SYNACK)?);
        }
        let maps = Maps::take(&mut ebpf, opts.max_sources)?;
        Ok(Self {
            ebpf,
            jumps,
            maps,
            attached: Vec::new(),
        })
    }

    /// Whether the multi-buffer production program is loaded
    /// (`LoadOptions::multi_buffer`).
    pub fn has_multi_buffer(&self) -> bool {
        self.jumps.len() > 1
    }

    /// One of the loaded programs, for BPF_PROG_TEST_RUN or attaching.
    pub fn program(&self, name: &'static str) -> Result<&Xdp, LoadError> {
        self.ebpf
            .program(name)
            .ok_or(LoadError::MissingProgram(name))?
            .try_into()
            .map_err(|source| LoadError::Verify { name, source })
    }

    fn program_mut(&mut self, name: &'static str) -> Result<&mut Xdp, LoadError> {
        self.ebpf
            .program_mut(name)
            .ok_or(LoadError::MissingProgram(name))?
            .try_into()
            .map_err(|source| LoadError::Verify { name, source })
    }
}

/// Loads and verifies program `name` of the object.
fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<(), LoadError> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(LoadError::MissingProgram(name))?
        .try_into()
        .map_err(|source| LoadError::Verify { name, source })?;
    prog.load()
        .map_err(|source| LoadError::Verify { name, source })
}

/// Puts a SYN-ACK program (`synack`) in its main program's jump table
/// (`table`), which is returned to be kept: the kernel empties a program
/// array when the last user descriptor for it closes. The daemon pins it
/// (`PINNED`), so the slot stays filled while no daemon runs, and a
/// restarted daemon's load adopts it and puts its own program in the slot.
fn fill_jump_table(
    ebpf: &mut Ebpf,
    table: &'static str,
    synack: &'static str,
) -> Result<ProgramArray<MapData>, LoadError> {
    let map = ebpf
        .take_map(table)
        .ok_or(LoadError::Map(MapError::Missing(table)))?;
    let op = |op| {
        move |source| {
            LoadError::Map(MapError::Op {
                map: table,
                op,
                source,
            })
        }
    };
    let mut jump = ProgramArray::try_from(map).map_err(op("opening"))?;
    let prog = ebpf
        .program(synack)
        .ok_or(LoadError::MissingProgram(synack))?;
    let fd = prog.fd().map_err(|source| LoadError::Verify {
        name: synack,
        source,
    })?;
    jump.set(names::JUMP_SYNACK, fd, 0)
        .map_err(op("putting the SYN-ACK program in it"))?;
    Ok(jump)
}
