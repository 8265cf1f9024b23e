//! Loading the XDP object, taking ownership of its maps, attaching and
//! detaching.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, ProgramArray},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
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
    #[error(transparent)]
    Map(#[from] MapError),
}

/// How the program is attached. Native runs in the driver before an skb is
/// allocated (the point of XDP); generic runs after, and is an explicit
/// fallback for drivers without XDP support, never chosen silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// In the driver, before the kernel builds an skb (fastest).
    Native,
    /// After the skb is built: any interface, for drivers without XDP.
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
    /// Slots in the source table.
    pub max_sources: u32,
    /// Pin the maps here (the daemon's `PinDir`), adopting those already
    /// pinned; `None` (tools and tests): private maps, gone with the value.
    pub pin_dir: Option<PathBuf>,
    /// Also load the bench's reference program (`PROG_UNCACHED`), which the
    /// daemon never runs.
    pub reference: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_sources: DEFAULT_MAX_SOURCES,
            pin_dir: None,
            reference: false,
        }
    }
}

/// A loaded object: the programs (verified, not yet attached) and the maps,
/// which this struct owns.
pub struct Tollgate {
    ebpf: Ebpf,
    /// Held, not used: see `fill_jump_table`.
    _jumps: [ProgramArray<MapData>; 2],
    pub maps: Maps,
    attached: Vec<Attached>,
}

/// One interface the production program is attached to.
struct Attached {
    iface: String,
    /// `PROG_LINEAR`, or `PROG_MAIN` where the kernel refused it.
    program: &'static str,
    how: Attachment,
}

/// The production programs in the order `attach` tries them: the
/// single-buffer one reads the frame's length without a helper call; the
/// kernel refuses it on an interface whose MTU does not fit a buffer, and
/// takes the multi-buffer one there.
const PRODUCTION: [&str; 2] = [names::PROG_LINEAR, names::PROG_MAIN];

/// How the program is attached to one interface.
enum Attachment {
    /// Through a link the program owns: detached when the program is
    /// dropped (tools and tests).
    Owned(XdpLinkId),
    /// Through a link pinned at `pin`: outlives this process until the pin
    /// is removed (the daemon).
    Pinned { link: FdLink, pin: PathBuf },
}

impl Tollgate {
    /// Loads and verifies the programs (the production one in its
    /// single- and multi-buffer forms with their SYN-ACK programs, the
    /// replay one, and the parse-only and floor references the bench
    /// measures against), fills both jump tables and takes the maps. The bucket clock's origin is
    /// set when the first policy is applied (`Maps::apply_policy`).
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
        for name in [
            names::PROG_LINEAR,
            names::PROG_MAIN,
            names::PROG_REPLAY,
            names::PROG_PARSE,
            names::PROG_FLOOR,
            names::PROG_SYNACK,
            names::PROG_SYNACK_LINEAR,
        ]
        .into_iter()
        .chain(opts.reference.then_some(names::PROG_UNCACHED))
        {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(LoadError::MissingProgram(name))?
                .try_into()
                .map_err(|source| LoadError::Verify { name, source })?;
            prog.load()
                .map_err(|source| LoadError::Verify { name, source })?;
        }
        let jumps = [
            fill_jump_table(&mut ebpf, names::JUMP, names::PROG_SYNACK)?,
            fill_jump_table(&mut ebpf, names::JUMP_LINEAR, names::PROG_SYNACK_LINEAR)?,
        ];
        let maps = Maps::take(&mut ebpf, opts.max_sources)?;
        Ok(Self {
            ebpf,
            _jumps: jumps,
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

    fn program_mut(&mut self, name: &'static str) -> Result<&mut Xdp, LoadError> {
        self.ebpf
            .program_mut(name)
            .ok_or(LoadError::MissingProgram(name))?
            .try_into()
            .map_err(|source| LoadError::Verify { name, source })
    }

    /// Attaches the production program to `iface` in the current network
    /// namespace, through a link the program owns. Returns which program
    /// the kernel took (`PRODUCTION`).
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<&'static str, LoadError> {
        self.set_slot(iface)?;
        let (program, link) = self.attach_first(iface, mode)?;
        self.attached.push(Attached {
            iface: iface.to_owned(),
            program,
            how: Attachment::Owned(link),
        });
        Ok(program)
    }

    /// Attaches the first of `PRODUCTION` the kernel takes on `iface`; if
    /// none, the error is the last one's, the program that fits any MTU.
    fn attach_first(
        &mut self,
        iface: &str,
        mode: AttachMode,
    ) -> Result<(&'static str, XdpLinkId), LoadError> {
        let mut refused = None;
        for program in PRODUCTION {
            match self.program_mut(program)?.attach(iface, mode.into()) {
                Ok(link) => {
                    if let Some(e) = refused {
                        tracing::info!(
                            event = "multi_buffer",
                            iface = %iface,
                            "the kernel refused the single-buffer program on `{iface}` ({e}), most likely for its MTU; attached the multi-buffer one, which asks the kernel for each frame's length (about 20 ns a packet)"
                        );
                    }
                    return Ok((program, link));
                }
                Err(source) => refused = Some(source),
            }
        }
        Err(LoadError::Attach {
            iface: iface.to_owned(),
            mode,
            source: refused.expect("PRODUCTION is not empty"),
        })
    }

    /// Attaches to `iface` through a link pinned at `pin`. If a link is
    /// pinned there already, or at one of `older` (an earlier layout's
    /// pins), it is adopted: its program is replaced by ours in one atomic
    /// update, so the interface is never without enforcement. Returns
    /// whether a link was adopted, and which program the kernel took
    /// (`PRODUCTION`).
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        mode: AttachMode,
        pin: &Path,
        older: &[PathBuf],
    ) -> Result<(bool, &'static str), LoadError> {
        self.set_slot(iface)?;
        let existing = std::iter::once(pin)
            .chain(older.iter().map(PathBuf::as_path))
            .find(|p| p.exists());
        // A pinned link whose interface went away while no daemon ran (or
        // came back as a new one) cannot take our program: its pin is
        // removed and the interface attached afresh.
        let adopted = match existing {
            Some(path) => match self.adopt_first(path) {
                Ok(adopted) => Some(adopted),
                Err(e) => {
                    tracing::warn!(
                        event = "stale_link",
                        pin = %path.display(),
                        "the pinned link on `{iface}` cannot be adopted ({e:#}); removing its pin and attaching afresh"
                    );
                    let _ = std::fs::remove_file(path);
                    None
                }
            },
            None => None,
        };
        let existing = existing.filter(|_| adopted.is_some());
        let (program, id) = match adopted {
            Some(adopted) => adopted,
            None => self.attach_first(iface, mode)?,
        };
        let pin_err = |e: anyhow::Error| LoadError::Pin {
            iface: iface.to_owned(),
            path: pin.to_owned(),
            source: e,
        };
        let link = self
            .program_mut(program)?
            .take_link(id)
            .map_err(|e| pin_err(e.into()))?;
        let link = FdLink::try_from(link).map_err(|e| {
            pin_err(anyhow::anyhow!(
                "{e}: the kernel attached XDP through netlink, not a BPF link (Linux 5.9 or later is needed to pin it)"
            ))
        })?;
        let link = if existing == Some(pin) {
            link
        } else {
            link.pin(pin).map_err(|e| pin_err(e.into()))?.into()
        };
        self.attached.push(Attached {
            iface: iface.to_owned(),
            program,
            how: Attachment::Pinned {
                link,
                pin: pin.to_owned(),
            },
        });
        Ok((existing.is_some(), program))
    }

    /// Puts the first of `PRODUCTION` the kernel takes into the link
    /// pinned at `path` (the interface's MTU decides, as on a fresh
    /// attach); the error is the last program's.
    fn adopt_first(&mut self, path: &Path) -> anyhow::Result<(&'static str, XdpLinkId)> {
        let mut refused = None;
        for program in PRODUCTION {
            match adopt_link(self.program_mut(program)?, path) {
                Ok(id) => return Ok((program, id)),
                Err(e) => refused = Some(e),
            }
        }
        Err(refused.expect("PRODUCTION is not empty"))
    }

    /// Counter slot = attach order, 1-based, set before the first packet;
    /// interfaces past MAX_IFACES share slot 0.
    fn set_slot(&mut self, iface: &str) -> Result<(), LoadError> {
        let slot = self.attached.len() as u32 + 1;
        if (slot as usize) < MAX_IFACES {
            self.maps.set_iface_slot(ifindex(iface), slot)?;
        }
        Ok(())
    }

    /// Detaches from every interface, in the current network namespace,
    /// removing pinned links' pins. (Dropping the struct detaches owned
    /// links too, and leaves pinned ones attached; this reports errors.)
    pub fn detach_all(&mut self) -> Result<(), LoadError> {
        for Attached {
            iface,
            program,
            how,
        } in std::mem::take(&mut self.attached)
        {
            match how {
                Attachment::Owned(link) => self
                    .program_mut(program)?
                    .detach(link)
                    .map_err(|source| LoadError::Detach { iface, source })?,
                Attachment::Pinned { link, pin } => {
                    // The link goes when its pin and our descriptor are
                    // both gone.
                    std::fs::remove_file(&pin).map_err(|e| LoadError::Detach {
                        iface,
                        source: aya::programs::ProgramError::IOError(e),
                    })?;
                    drop(link);
                }
            }
        }
        Ok(())
    }

    /// Interfaces the program is attached to, in counter-slot order (the
    /// first is slot 1).
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(|a| a.iface.as_str())
    }
}

/// Replaces the program of the XDP link pinned at `path` with `prog`, in
/// one atomic update.
fn adopt_link(prog: &mut Xdp, path: &Path) -> anyhow::Result<XdpLinkId> {
    let fd: FdLink = PinnedLink::from_pin(path)?.into();
    let link = XdpLink::try_from(fd)?;
    Ok(prog.attach_to_link(link)?)
}

/// The interface index of `iface` in this network namespace (0 if none).
pub fn ifindex(iface: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(iface) else {
        return 0;
    };
    // SAFETY: c is a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
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

/// What an attach failure means, from the kernel's error number, and what
/// to do about it; appended to the error.
fn attach_hint(iface: &str, mode: AttachMode, source: &aya::programs::ProgramError) -> String {
    let native = mode == AttachMode::Native;
    match crate::maps::os_errno(source) {
        Some(libc::EOPNOTSUPP) if native => {
            "; the driver has no native XDP: set attach_mode = \"generic\" (or --xdp-mode generic)".into()
        }
        Some(libc::ERANGE) => format!(
            "; the interface's MTU is larger than the driver's XDP takes, even with a multi-buffer program: lower it (ip link set {iface} mtu 1500) or use generic mode"
        ),
        Some(libc::EBUSY | libc::EEXIST) => format!(
            "; another XDP program is attached to it (`ip link show {iface}`): detach it first"
        ),
        Some(libc::ENODEV) => "; no such interface in this network namespace".into(),
        _ if native => {
            "; if the driver has no native XDP support, retry with `--xdp-mode generic` (the kernel log, `dmesg`, may say why it refused)".into()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach_error(mode: AttachMode, errno: i32) -> String {
        LoadError::Attach {
            iface: "eth0".into(),
            mode,
            source: aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
                call: "bpf_link_create",
                io_error: std::io::Error::from_raw_os_error(errno),
            }),
        }
        .to_string()
    }

    #[test]
    fn an_attach_error_names_its_cause_and_the_fix() {
        let mtu = attach_error(AttachMode::Native, libc::ERANGE);
        assert!(
            mtu.contains("MTU is larger than the driver's XDP takes")
                && mtu.contains("ip link set eth0 mtu 1500"),
            "{mtu}"
        );
        let busy = attach_error(AttachMode::Native, libc::EBUSY);
        assert!(busy.contains("another XDP program is attached"), "{busy}");
        let none = attach_error(AttachMode::Native, libc::EOPNOTSUPP);
        assert!(
            none.contains("no native XDP") && none.contains("generic"),
            "{none}"
        );
    }
}
