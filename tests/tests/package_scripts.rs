//! The package's maintainer scripts on a host as systemd runs it: the
//! paths `tests/package.rs` cannot reach, since they run only with no
//! DPKG_ROOT and /run/systemd/system present. Each script runs in a
//! throwaway root (chroot, in private mount and network namespaces) built
//! from the host's /usr, with a `systemctl` that records its calls, the
//! config's pin directory on the real bpffs, and the host's account files
//! copied. Checked: prerm's stop and pin removal on remove (and neither on
//! upgrade), postinst's enable on a first install and daemon-reload and
//! try-restart on an upgrade, postrm's daemon-reload, and purge.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A throwaway root for the scripts, removed on drop (with its pins).
struct Host {
    root: PathBuf,
    pins: PathBuf,
}

impl Host {
    fn new() -> Self {
        let id = std::process::id();
        let root = std::env::temp_dir().join(format!("tg-scripts-{id}"));
        let pins = PathBuf::from(format!("/sys/fs/bpf/tg-scripts-{id}"));
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
        for f in ["passwd", "group", "shadow", "gshadow", "login.defs"] {
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

    /// Runs `script` with `args` in the root; returns the systemctl calls
    /// it made.
    fn run(&self, script: &str, args: &[&str]) -> Vec<String> {
        let calls = self.root.join("calls");
        let _ = std::fs::remove_file(&calls);
        let r = self.root.display();
        // /usr/bin, /bin and /sbin are links into /usr on Debian 12; awk is
        // an alternative (/etc/alternatives).
        let mounts = format!(
            "set -e; mount --bind /usr {r}/usr; for l in bin sbin lib lib64; do \
             [ -e {r}/$l ] || ln -s usr/$l {r}/$l; done; \
             mount --bind /sys/fs/bpf {r}/sys/fs/bpf; mount -t proc proc {r}/proc; \
             mount --bind /dev {r}/dev; mount --bind /etc/alternatives {r}/etc/alternatives; \
             exec chroot {r} /usr/bin/env PATH=/shim:/usr/sbin:/usr/bin /bin/sh /scripts/{script} {}",
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
        assert!(
            out.status.success(),
            "{script} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
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
        let _ = std::fs::remove_dir_all(&self.pins);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn maintainer_scripts_stop_restart_and_unpin_on_a_systemd_host() {
    let h = Host::new();

    // A first install: the group, enabled, not started.
    let calls = h.run("postinst", &["configure", ""]);
    assert!(h.group(), "postinst adds the tollgate group");
    assert_eq!(calls, ["--root=/ enable tollgate.service", "daemon-reload"]);

    // An upgrade: the new daemon adopts the pins, so only a try-restart.
    let calls = h.run("postinst", &["configure", "0.1.0"]);
    assert_eq!(calls, ["daemon-reload", "try-restart tollgate.service"]);
    std::fs::create_dir_all(h.pins.join("v6")).unwrap();
    let calls = h.run("prerm", &["upgrade", "99.0.0"]);
    assert!(calls.is_empty(), "an upgrade stops nothing: {calls:?}");
    assert!(h.pins.exists(), "an upgrade keeps the pins");

    // A removal: stopped, and the pins (the enforcement) go with it.
    let calls = h.run("prerm", &["remove"]);
    assert_eq!(calls, ["stop tollgate.service"]);
    assert!(!h.pins.exists(), "prerm remove unpins {}", h.pins.display());
    let calls = h.run("postrm", &["remove"]);
    assert_eq!(calls, ["daemon-reload"]);
    assert!(
        h.root.join("etc/tollgate/tollgate.toml").exists(),
        "config kept"
    );

    // A purge: config, state and group gone.
    h.run("postrm", &["purge"]);
    assert!(!h.root.join("etc/tollgate").exists());
    assert!(!h.root.join("var/lib/tollgate").exists());
    assert!(!h.group(), "purge removes the group");
}
