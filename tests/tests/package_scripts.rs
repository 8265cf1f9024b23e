//! The package's maintainer scripts on a host as systemd runs it: the
//! paths `tests/package.rs` cannot reach, since they run only with no
//! DPKG_ROOT and /run/systemd/system present. Each script runs in a
//! throwaway root (chroot, in private mount and network namespaces) built
//! from the host's /usr (read-only), with a `systemctl` that records its
//! calls, the config's pin directory on a bpffs of the namespace's own,
//! and the host's account files copied (not its password hashes). Checked: prerm's stop and pin removal on remove (and neither on
//! upgrade), postinst's enable on a first install and daemon-reload and
//! try-restart on an upgrade, postrm's daemon-reload, and purge.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A throwaway root for the scripts, removed on drop.
struct Host {
    root: PathBuf,
    pins: PathBuf,
}

impl Host {
    fn new() -> Self {
        let id = std::process::id();
        let root = std::env::temp_dir().join(format!("tg-scripts-{id}"));
        // On the namespace's own bpffs (see `run`), never the host's.
        let pins = PathBuf::from("/sys/fs/bpf/tg-scripts");
        let _ = std::fs::remove_dir_all(&root);
        for d in [
            "usr",
            "etc/tollgate",
            "etc/alternatives",
            "run/systemd/system",
            "var/lib/tollgate",
            "sys/fs/bpf",
            "tmp",
            "proc",
            "dev",
            "scripts",
            "shim",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in ["passwd", "group", "login.defs"] {
            let host = Path::new("/etc").join(f);
            if host.exists() {
                let text = std::fs::read_to_string(&host).unwrap();
                // The host may have the package's group already.
                let kept: String = text
                    .lines()
                    .filter(|l| !l.starts_with("tollgate:"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                std::fs::write(root.join("etc").join(f), kept).unwrap();
            }
        }
        // groupadd and groupdel keep these in step; the host's hashes stay
        // out of the throwaway root.
        for f in ["shadow", "gshadow"] {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(root.join("etc").join(f))
                .unwrap();
        }
        std::fs::write(
            root.join("etc/tollgate/tollgate.toml"),
            format!("[state]\npin_dir = \"{}\"\n", pins.display()),
        )
        .unwrap();
        for s in ["prerm", "postinst", "postrm"] {
            std::fs::copy(
                repo().join("packaging/debian").join(s),
                root.join("scripts").join(s),
            )
            .unwrap();
        }
        // systemctl as the scripts call it: its arguments, one call a line.
        std::fs::write(
            root.join("shim/systemctl"),
            "#!/bin/sh\necho \"$*\" >> /calls\n",
        )
        .unwrap();
        assert!(
            Command::new("chmod")
                .arg("+x")
                .arg(root.join("shim/systemctl"))
                .status()
                .unwrap()
                .success()
        );
        Self { root, pins }
    }

    /// Runs `script` with `args` in the root, its pin directory there first
    /// if `pinned`; returns the systemctl calls it made and whether the pin
    /// directory is there after it.
    fn run(&self, script: &str, args: &[&str], pinned: bool) -> (Vec<String>, bool) {
        let calls = self.root.join("calls");
        let _ = std::fs::remove_file(&calls);
        let r = self.root.display();
        let pins = self.pins.display();
        // /usr/bin, /bin and /sbin are links into /usr on Debian 12; awk is
        // an alternative (/etc/alternatives). Both bound read-only, and a
        // bpffs of the namespace's own for the pins: the scripts can touch
        // nothing of the host's.
        let mounts = format!(
            "set -e; for d in /usr /etc/alternatives; do mount --bind $d {r}$d; \
             mount -o remount,bind,ro {r}$d; done; for l in bin sbin lib lib64; do \
             [ -e {r}/$l ] || ln -s usr/$l {r}/$l; done; \
             mount -t bpf bpf {r}/sys/fs/bpf; mount -t proc proc {r}/proc; \
             mount --bind /dev {r}/dev; \
             if {pinned}; then mkdir -p {r}{pins}/v6; fi; \
             chroot {r} /usr/bin/env PATH=/shim:/usr/sbin:/usr/bin /bin/sh /scripts/{script} {}; \
             if [ -d {r}{pins} ]; then echo pins-left; fi",
            args.join(" ")
        );
        let out = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "sh",
                "-c",
                &mounts,
            ])
            .output()
            .expect("running unshare (util-linux)");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{script} {args:?} failed: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let calls = std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        (calls, said.lines().any(|l| l == "pins-left"))
    }

    fn group(&self) -> bool {
        std::fs::read_to_string(self.root.join("etc/group"))
            .unwrap()
            .lines()
            .any(|l| l.starts_with("tollgate:"))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn maintainer_scripts_stop_restart_and_unpin_on_a_systemd_host() {
    let h = Host::new();

    // A first install: the group, enabled, not started.
    let (calls, _) = h.run("postinst", &["configure", ""], false);
    assert!(h.group(), "postinst adds the tollgate group");
    assert_eq!(calls, ["--root=/ enable tollgate.service", "daemon-reload"]);

    // An upgrade: the new daemon adopts the pins, so only a try-restart.
    let (calls, _) = h.run("postinst", &["configure", "0.1.0"], false);
    assert_eq!(calls, ["daemon-reload", "try-restart tollgate.service"]);
    let (calls, pins_left) = h.run("prerm", &["upgrade", "99.0.0"], true);
    assert!(calls.is_empty(), "an upgrade stops nothing: {calls:?}");
    assert!(pins_left, "an upgrade keeps the pins");

    // A removal: stopped, and the pins (the enforcement) go with it.
    let (calls, pins_left) = h.run("prerm", &["remove"], true);
    assert_eq!(calls, ["stop tollgate.service"]);
    assert!(!pins_left, "prerm remove unpins {}", h.pins.display());
    let (calls, _) = h.run("postrm", &["remove"], false);
    assert_eq!(calls, ["daemon-reload"]);
    assert!(
        h.root.join("etc/tollgate/tollgate.toml").exists(),
        "config kept"
    );

    // A purge: config, state and group gone.
    h.run("postrm", &["purge"], false);
    assert!(!h.root.join("etc/tollgate").exists());
    assert!(!h.root.join("var/lib/tollgate").exists());
    assert!(!h.group(), "purge removes the group");
}
