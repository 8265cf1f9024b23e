//! Loading the XDP object, taking ownership of its maps, attaching and
//! detaching.

use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use monitor_common::{
    maps::{self as names, DEFAULT_MAX_SOURCES},
    reason::MAX_IFACES,
};

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
        "attaching to interface `{iface}` in {mode} mode failed{hint}",
        hint = if *.mode == AttachMode::Native { "; if the driver has no native XDP support, retry with `--xdp-mode generic`" } else { "" }
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
    #[error(transparent)]
    Map(#[from] MapError),
}

/// How the program is attached. Native runs in the driver before an skb is
/// allocated (the point of XDP); generic runs after, and is an explicit
/// fallback for drivers without XDP support, never chosen silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    Native,
    Generic,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        })
    }
}

impl From<AttachMode> for XdpMode {
    fn from(m: AttachMode) -> Self {
        match m {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// Knobs fixed at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Capacity of the per-source LRU map.
    pub max_sources: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_sources: DEFAULT_MAX_SOURCES,
        }
    }
}

/// A loaded object: the programs (verified, not yet attached) and the maps,
/// which this struct owns.
pub struct Tollgate {
    ebpf: Ebpf,
    pub maps: Maps,
    attached: Vec<(String, XdpLinkId)>,
}

impl Tollgate {
    /// Loads and verifies all three programs and takes the maps. The
    /// runtime config gets `clock_base_ns = now`, the bucket clock's origin.
    pub fn load(opts: &LoadOptions) -> Result<Self, LoadError> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::SOURCES, opts.max_sources)
            .load(OBJECT)
            .map_err(LoadError::Load)?;
        for name in [
            names::PROG_MAIN,
            names::PROG_REPLAY,
            names::PROG_PARSE,
            names::PROG_FLOOR,
        ] {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(LoadError::MissingProgram(name))?
                .try_into()
                .map_err(|source| LoadError::Verify { name, source })?;
            prog.load()
                .map_err(|source| LoadError::Verify { name, source })?;
        }
        let maps = Maps::take(&mut ebpf, opts.max_sources)?;
        Ok(Self {
            ebpf,
            maps,
            attached: Vec::new(),
        })
    }

    /// One of the loaded programs, for BPF_PROG_TEST_RUN or attaching.
    pub fn program(&self, name: &'static str) -> Result<&Xdp, LoadError> {
        self.ebpf
            .program(name)
            .ok_or(LoadError::MissingProgram(name))?
            .try_into()
            .map_err(|source| LoadError::Verify { name, source })
    }

    fn main_program_mut(&mut self) -> Result<&mut Xdp, LoadError> {
        self.ebpf
            .program_mut(names::PROG_MAIN)
            .ok_or(LoadError::MissingProgram(names::PROG_MAIN))?
            .try_into()
            .map_err(|source| LoadError::Verify {
                name: names::PROG_MAIN,
                source,
            })
    }

    /// Attaches the production program to `iface` in the current network
    /// namespace.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<(), LoadError> {
        // Counter slot = attach order, 1-based, set before the first packet;
        // interfaces past MAX_IFACES share slot 0.
        let slot = self.attached.len() as u32 + 1;
        if (slot as usize) < MAX_IFACES {
            self.maps.set_iface_slot(ifindex(iface), slot)?;
        }
        let prog = self.main_program_mut()?;
        let link = prog
            .attach(iface, mode.into())
            .map_err(|source| LoadError::Attach {
                iface: iface.to_owned(),
                mode,
                source,
            })?;
        self.attached.push((iface.to_owned(), link));
        Ok(())
    }

    /// Detaches from every interface, in the current network namespace.
    /// (Dropping the struct detaches too; this reports errors.)
    pub fn detach_all(&mut self) -> Result<(), LoadError> {
        let attached = std::mem::take(&mut self.attached);
        let prog = self.main_program_mut()?;
        for (iface, link) in attached {
            prog.detach(link)
                .map_err(|source| LoadError::Detach { iface, source })?;
        }
        Ok(())
    }

    /// Interfaces the program is attached to, in counter-slot order (the
    /// first is slot 1).
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(|(i, _)| i.as_str())
    }
}

/// The interface index of `iface` in this network namespace (0 if none).
pub fn ifindex(iface: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(iface) else {
        return 0;
    };
    // SAFETY: c is a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}
