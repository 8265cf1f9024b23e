//! Attaching the production program to interfaces, adopting the links a
//! previous daemon pinned, detaching, and keeping the program fit for each
//! interface's MTU.

use std::{
    os::fd::{AsRawFd, FromRawFd},
    path::{Path, PathBuf},
};

use aya::programs::{
    Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    xdp::{XdpLink, XdpLinkId},
};
use monitor_common::{maps as names, reason::MAX_IFACES};

use super::{LoadError, Tollgate};

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

/// One interface the production program is attached to.
pub(super) struct Attached {
    iface: String,
    /// `PROG_LINEAR`, or `PROG_MAIN` where the kernel refused it.
    program: &'static str,
    /// The largest MTU the single-buffer program has run under on the
    /// interface (`refit`), read before it was attached.
    mtu: Option<u32>,
    how: Attachment,
}

/// The production programs in the order `attach` tries them in `mode`.
/// Natively the single-buffer one first: it reads a frame's length
/// without a helper call, and the kernel refuses it on an interface whose
/// MTU does not fit a buffer, where the multi-buffer one goes. In generic
/// mode the multi-buffer one alone: for a single-buffer program the
/// kernel would linearize every skb in pieces (a GRO aggregate, up to
/// 64 KiB) into one contiguous allocation, which can fail and drop it,
/// and the helper call is nothing next to the skb path.
fn production(mode: AttachMode) -> &'static [&'static str] {
    match mode {
        AttachMode::Native => &[names::PROG_LINEAR, names::PROG_MAIN],
        AttachMode::Generic => &[names::PROG_MAIN],
    }
}

/// An interface whose MTU grew under the single-buffer program
/// (`Tollgate::refit`), and whether the multi-buffer one took its place.
#[derive(Debug)]
pub struct MtuChange {
    pub iface: String,
    pub was: u32,
    pub now: u32,
    pub swapped: Result<(), LoadError>,
}

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
    /// `production(mode)`, without the multi-buffer program when it was
    /// not loaded (then the single-buffer one in generic mode too).
    fn production(&self, mode: AttachMode) -> &'static [&'static str] {
        if self.has_multi_buffer() {
            production(mode)
        } else {
            &[names::PROG_LINEAR]
        }
    }

    /// Attaches the production program to `iface` in the current network
    /// namespace, through a link the program owns. Returns which program
    /// the kernel took (`production`).
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<&'static str, LoadError> {
        self.set_slot(iface)?;
        let before = mtu(iface);
        let (program, link) = self.attach_first(iface, mode)?;
        self.attached.push(Attached {
            iface: iface.to_owned(),
            program,
            mtu: before,
            how: Attachment::Owned(link),
        });
        Ok(program)
    }

    /// Attaches the first of `production(mode)` the kernel takes on
    /// `iface`; if none, the error is the last one's, the program that
    /// fits any MTU (the single-buffer one's is logged).
    fn attach_first(
        &mut self,
        iface: &str,
        mode: AttachMode,
    ) -> Result<(&'static str, XdpLinkId), LoadError> {
        let mut refused = None;
        for &program in self.production(mode) {
            match self.program_mut(program)?.attach(iface, mode.into()) {
                Ok(link) => {
                    if let Some(e) = refused {
                        say_multi_buffer(iface, &anyhow::Error::new(e));
                    }
                    return Ok((program, link));
                }
                Err(source) => {
                    if let Some(e) = refused.replace(source) {
                        tracing::debug!(iface = %iface, "the single-buffer program: {e}");
                    }
                }
            }
        }
        Err(LoadError::Attach {
            iface: iface.to_owned(),
            mode,
            source: refused.expect("production() is never empty"),
        })
    }

    /// Attaches to `iface` through a link pinned at `pin`. If a link is
    /// pinned there already, or at one of `older` (an earlier layout's
    /// pins), it is adopted: its program is replaced by ours in one atomic
    /// update, so the interface is never without enforcement. Returns
    /// whether a link was adopted, and which program the kernel took
    /// (`production`).
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        mode: AttachMode,
        pin: &Path,
        older: &[PathBuf],
    ) -> Result<(bool, &'static str), LoadError> {
        self.set_slot(iface)?;
        let before = mtu(iface);
        let existing = std::iter::once(pin)
            .chain(older.iter().map(PathBuf::as_path))
            .find(|p| p.exists());
        // A pinned link whose interface went away while no daemon ran (or
        // came back as a new one) cannot take our program: its pin is
        // removed and the interface attached afresh.
        let adopted = match existing {
            Some(path) => match self.adopt_first(iface, mode, path) {
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
            mtu: before,
            how: Attachment::Pinned {
                link,
                pin: pin.to_owned(),
            },
        });
        Ok((existing.is_some(), program))
    }

    /// Puts the first of `production(mode)` the kernel takes into the
    /// link pinned at `path` (the interface's MTU decides, as on a fresh
    /// attach); the error is the last program's.
    fn adopt_first(
        &mut self,
        iface: &str,
        mode: AttachMode,
        path: &Path,
    ) -> anyhow::Result<(&'static str, XdpLinkId)> {
        let mut refused = None;
        for &program in self.production(mode) {
            match adopt_link(self.program_mut(program)?, path) {
                Ok(id) => {
                    if let Some(e) = &refused {
                        say_multi_buffer(iface, e);
                    }
                    return Ok((program, id));
                }
                Err(e) => {
                    if let Some(e) = refused.replace(e) {
                        tracing::debug!(iface = %iface, "the single-buffer program: {e:#}");
                    }
                }
            }
        }
        Err(refused.expect("production() is never empty"))
    }

    /// Puts the multi-buffer program into each pinned link whose
    /// interface's MTU grew past the largest the single-buffer one has run
    /// under there, in one atomic update per link. Most drivers refuse to
    /// raise the MTU under a single-buffer program, but not all:
    /// virtio_net takes it, and then drops, uncounted and before XDP sees
    /// them, the frames too long for its single buffer; the multi-buffer
    /// program takes any MTU (`LoadOptions::multi_buffer`; without it
    /// this swaps nothing). The daemon calls this every interval; a
    /// refusal is reported once per MTU raise, and nothing swaps back (a
    /// restart does, when the MTU fits again).
    pub fn refit(&mut self) -> Vec<MtuChange> {
        let mut changes = Vec::new();
        for i in 0..self.attached.len() {
            let a = &self.attached[i];
            let Attachment::Pinned { pin, .. } = &a.how else {
                continue;
            };
            if a.program != names::PROG_LINEAR || !self.has_multi_buffer() {
                continue;
            }
            let (Some(was), Some(now)) = (a.mtu, mtu(&a.iface)) else {
                continue;
            };
            if now <= was {
                continue;
            }
            let (iface, pin) = (a.iface.clone(), pin.clone());
            let swapped = self
                .swap_in_multi_buffer(i, &pin)
                .map_err(|source| LoadError::Refit {
                    iface: iface.clone(),
                    source,
                });
            self.attached[i].mtu = Some(now);
            changes.push(MtuChange {
                iface,
                was,
                now,
                swapped,
            });
        }
        changes
    }

    /// `refit`'s swap of attachment `i`, pinned at `pin`.
    fn swap_in_multi_buffer(&mut self, i: usize, pin: &Path) -> anyhow::Result<()> {
        let prog = self.program_mut(names::PROG_MAIN)?;
        let id = adopt_link(prog, pin)?;
        let link = FdLink::try_from(prog.take_link(id)?)?;
        let a = &mut self.attached[i];
        a.program = names::PROG_MAIN;
        // Our old descriptor of the same link goes; the pin keeps it.
        a.how = Attachment::Pinned {
            link,
            pin: pin.to_owned(),
        };
        Ok(())
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
            ..
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

/// Logs that `iface` runs the multi-buffer program, the single-buffer
/// one having been refused (`e`).
fn say_multi_buffer(iface: &str, e: &anyhow::Error) {
    tracing::info!(
        event = "multi_buffer",
        iface = %iface,
        "the kernel refused the single-buffer program on `{iface}` ({e:#}), as it does where the MTU does not fit one buffer; attached the multi-buffer one, which asks the kernel for each frame's length (about 20 ns a packet)"
    );
}

/// The MTU of `iface` in this network namespace (`SIOCGIFMTU`), if it
/// exists.
fn mtu(iface: &str) -> Option<u32> {
    let name = iface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: a zeroed ifreq is valid; the name fits with its NUL; the
    // socket is closed by OwnedFd.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(name) {
            *d = *s as libc::c_char;
        }
        let r = libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut req);
        (r == 0).then_some(req.ifr_ifru.ifru_mtu as u32)
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

/// What an attach failure means, from the kernel's error number, and what
/// to do about it; appended to the error.
pub(super) fn attach_hint(
    iface: &str,
    mode: AttachMode,
    source: &aya::programs::ProgramError,
) -> String {
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
    fn an_interfaces_mtu_is_read_in_this_namespace() {
        assert_eq!(mtu("lo"), Some(65_536), "loopback's MTU");
        assert_eq!(mtu("tg-no-such-if"), None);
        assert_eq!(mtu("a-name-longer-than-ifnamsiz"), None);
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
