//! The daemon's pins in bpffs: its maps and one XDP link per interface,
//! under `<pin_dir>/v<LAYOUT_VERSION>/`. Pinned, they outlive the daemon:
//! the kernel keeps enforcing the last policy and bans while it restarts,
//! crashes or upgrades, and the next daemon adopts them (buckets, flow
//! records and counters continue). The directory is flock(2)ed while a
//! daemon runs, so a second daemon with the same pins is refused.

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use monitor_common::maps::{LAYOUT_VERSION, PINNED};

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// What the daemon keeps when it stops cleanly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExit {
    /// Leave the program attached and the maps pinned: the kernel keeps
    /// enforcing until the next daemon adopts them.
    Keep,
    /// Detach from every interface and remove the pins.
    Detach,
}

/// This build's pin directory, locked for the life of the value.
pub struct PinDir {
    root: PathBuf,
    dir: PathBuf,
    /// Holds the flock.
    _lock: File,
    /// Whether pinned maps of this layout were there when we opened it.
    adopted: bool,
}

impl PinDir {
    /// Mounts bpffs if needed, creates `<root>/v<LAYOUT_VERSION>` and locks
    /// it.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        ensure_bpffs(root)?;
        let dir = root.join(format!("v{LAYOUT_VERSION}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the pin directory {}", dir.display()))?;
        let lock = File::open(&dir)
            .with_context(|| format!("opening the pin directory {}", dir.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                anyhow::bail!(
                    "another tollgate daemon is running with the pins in {} (and so on the same interfaces); stop it first (`systemctl stop tollgate`), or give this one its own `state.pin_dir` and interfaces",
                    dir.display()
                );
            }
            return Err(e).with_context(|| format!("locking {}", dir.display()));
        }
        let adopted = PINNED.iter().any(|m| dir.join(m).exists());
        Ok(Self {
            root: root.to_owned(),
            dir,
            _lock: lock,
            adopted,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this layout's maps were pinned already (a restart).
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Where the link on `iface` is pinned.
    pub fn link(&self, iface: &str) -> PathBuf {
        link_in(&self.dir, iface)
    }

    /// Links on `iface` pinned by builds with another layout, newest first:
    /// an upgrade adopts them so enforcement never pauses.
    pub fn older_links(&self, iface: &str) -> Vec<PathBuf> {
        let mut dirs = self.other_versions();
        dirs.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
        dirs.into_iter()
            .map(|(_, d)| link_in(&d, iface))
            .filter(|p| p.exists())
            .collect()
    }

    /// Pin directories of other layouts, with their version.
    pub fn other_versions(&self) -> Vec<(u32, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let v: u32 = name.strip_prefix('v')?.parse().ok()?;
                (v != LAYOUT_VERSION).then(|| (v, e.path()))
            })
            .collect()
    }

    /// Links pinned here for interfaces not in `keep`.
    pub fn stale_links(&self, keep: &[String]) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let iface = name.strip_prefix("link-")?;
                (!keep.iter().any(|k| k == iface)).then(|| e.path())
            })
            .collect()
    }

    /// Unpins this layout's maps (the next load creates them afresh).
    pub fn clear_maps(&mut self) -> anyhow::Result<()> {
        for m in PINNED {
            remove_if_there(&self.dir.join(m))?;
        }
        self.adopted = false;
        Ok(())
    }

    /// Undoes a start that failed on fresh maps: unpins them, and removes
    /// the directory and the root if that leaves them empty (a running
    /// older layout's pins are not touched).
    pub fn discard_fresh(&mut self) -> anyhow::Result<()> {
        self.clear_maps()?;
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_dir(&self.root);
        Ok(())
    }

    /// Removes every pin of this layout and the directory (after the links
    /// were detached), and the root if nothing else is in it.
    pub fn remove(self) -> anyhow::Result<()> {
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("removing the pins in {}", self.dir.display()))?;
        let _ = std::fs::remove_dir(&self.root);
        Ok(())
    }
}

fn link_in(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("link-{iface}"))
}

fn remove_if_there(p: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing the pin {}", p.display())),
    }
}

/// Makes sure `root` is (or will be created) on a bpffs, mounting one on
/// /sys/fs/bpf if that is where it belongs and nothing is mounted there.
fn ensure_bpffs(root: &Path) -> anyhow::Result<()> {
    let mut probe = root;
    while !probe.exists() {
        probe = probe
            .parent()
            .with_context(|| format!("state.pin_dir {} has no existing parent", root.display()))?;
    }
    if on_bpffs(probe)? {
        return Ok(());
    }
    let sys = Path::new("/sys/fs/bpf");
    if root.starts_with(sys) && probe.starts_with(sys) {
        let target = c"/sys/fs/bpf";
        // SAFETY: mount(2) with static, NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .context("mounting bpffs on /sys/fs/bpf (needs CAP_SYS_ADMIN once per boot; systemd mounts it normally)");
        }
        // Mounted here, the pins live as long as this mount namespace: with
        // `ip netns exec` or a private one they die with the daemon.
        tracing::warn!(
            event = "bpffs_mounted",
            "mounted bpffs on /sys/fs/bpf; if this daemon runs in a private mount namespace (ip netns exec, unshare) the pins end with it: mount bpffs on the host at boot (systemd does) so enforcement survives restarts"
        );
        return Ok(());
    }
    anyhow::bail!(
        "state.pin_dir {} is not on a BPF filesystem; put it under /sys/fs/bpf or mount one with `mount -t bpf bpf DIR`",
        root.display()
    )
}

fn on_bpffs(p: &Path) -> anyhow::Result<bool> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .with_context(|| format!("{} is not a valid path", p.display()))?;
    // SAFETY: statfs into a zeroed struct we own, with a valid path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statfs {}", p.display()));
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}
