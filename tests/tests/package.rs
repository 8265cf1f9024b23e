//! The Debian package (packaging/build-deb.sh, what `cargo xtask deb`
//! builds) installs, upgrades and removes cleanly: dpkg into a throwaway
//! root, maintainer scripts run chrootless against it (they honour
//! DPKG_ROOT), dependencies forced because the root is empty. `cargo xtask
//! install`/`uninstall` go through the same package.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use lab::daemon::tollgate_bin;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {said}");
    said
}

/// `cargo xtask` itself (the binary `cargo xtask test` runs as), so the
/// test drives the real install and uninstall tasks.
fn xtask() -> Command {
    let bin = tollgate_bin().with_file_name("xtask");
    assert!(
        bin.exists(),
        "{} is missing: run the suite with `cargo xtask test`",
        bin.display()
    );
    Command::new(bin)
}

fn deb(version: &str, out: &Path) -> PathBuf {
    let path = run(Command::new(repo().join("packaging/build-deb.sh"))
        .arg(tollgate_bin())
        .arg(version)
        .arg(out)
        .env("DEB_COMPRESSION", "none"));
    PathBuf::from(path.trim())
}

fn dpkg(root: &Path) -> Command {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "--force-depends"]);
    c
}

fn group_line(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join("etc/group"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("tollgate:"))
        .map(str::to_owned)
}

#[test]
fn the_debian_package_installs_upgrades_and_removes_cleanly() {
    let root = std::env::temp_dir().join(format!("tg-dpkg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let debs = root.with_extension("debs");
    // `cargo xtask install` builds the package (of the binary under test
    // here, not a release build) and installs it into the root.
    run(xtask()
        .args(["install", "--root"])
        .arg(&root)
        .arg("--binary")
        .arg(tollgate_bin())
        .arg("--out")
        .arg(&debs)
        .env("DEB_COMPRESSION", "none"));
    for f in [
        "usr/bin/tollgate",
        "lib/systemd/system/tollgate.service",
        "etc/tollgate/tollgate.toml",
        "etc/systemd/system/multi-user.target.wants/tollgate.service",
        "usr/share/man/man8/tollgate.8.gz",
        "usr/share/man/man8/tollgate-ban-add.8.gz",
        "usr/share/man/man8/tollgate-events.8.gz",
        "usr/share/bash-completion/completions/tollgate",
        "usr/share/zsh/vendor-completions/_tollgate",
        "usr/share/fish/vendor_completions.d/tollgate.fish",
        "usr/share/tollgate/monitoring/tollgate-alerts.yml",
        "usr/share/tollgate/monitoring/tollgate-alerts.test.yml",
        "usr/share/tollgate/monitoring/grafana-dashboard.json",
        "usr/share/doc/tollgate/README.md",
    ] {
        // symlink_metadata: the enablement link points at /lib/..., which
        // resolves inside the root, not here.
        assert!(
            std::fs::symlink_metadata(root.join(f)).is_ok(),
            "{f} installed"
        );
    }
    assert!(root.join("var/lib/tollgate").is_dir(), "state directory");
    assert!(group_line(&root).is_some(), "the tollgate group");
    // The installed binary is the one built, and it runs.
    let v = run(Command::new(root.join("usr/bin/tollgate")).arg("--version"));
    assert!(v.contains("tollgate"), "{v}");
    // The shipped config is valid as shipped (its group is the package's,
    // which exists in the root, not on this host: `--no-interfaces`).
    let checked = run(Command::new(root.join("usr/bin/tollgate"))
        .args(["check-config", "--no-interfaces"])
        .arg(root.join("etc/tollgate/tollgate.toml")));
    assert!(checked.contains("ok"), "{checked}");
    let shipped = tollgate::config::load(&root.join("etc/tollgate/tollgate.toml"), false).unwrap();
    let group = shipped.socket_group.expect("control.group set");
    assert!(
        group_line(&root).is_some_and(|l| l.starts_with(&format!("{group}:"))),
        "the config's control group {group} is the package's"
    );
    // The man page renders and documents a subcommand; the completions
    // know the subcommands; the alert rules pass promtool where installed.
    let page = run(Command::new("man")
        .arg("-l")
        .arg(root.join("usr/share/man/man8/tollgate-ban-add.8.gz")));
    assert!(
        page.contains("--ttl") && page.contains("How long"),
        "{page}"
    );
    let bash = std::fs::read_to_string(root.join("usr/share/bash-completion/completions/tollgate"))
        .unwrap();
    for sub in ["status", "ban", "rules", "events", "replay"] {
        assert!(bash.contains(sub), "bash completion for {sub}");
    }
    let checked = run(Command::new("promtool")
        .args(["check", "rules"])
        .arg(root.join("usr/share/tollgate/monitoring/tollgate-alerts.yml")));
    assert!(checked.contains("SUCCESS"), "{checked}");

    // An operator's edit survives the upgrade (a conffile), and so does
    // their choice to disable the service.
    let wants = root.join("etc/systemd/system/multi-user.target.wants/tollgate.service");
    run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["disable", "tollgate.service"]));
    assert!(std::fs::symlink_metadata(&wants).is_err(), "disabled");
    let conf = root.join("etc/tollgate/tollgate.toml");
    let edited = format!(
        "{}\n# edited by the operator\n",
        std::fs::read_to_string(&conf).unwrap()
    );
    std::fs::write(&conf, &edited).unwrap();
    let next = deb("99.0.0", &debs);
    run(dpkg(&root).arg("-i").arg(&next));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    assert!(
        std::fs::symlink_metadata(&wants).is_err(),
        "an upgrade does not enable a disabled service"
    );
    run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["enable", "tollgate.service"]));
    let status = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Version} ${Status}", "tollgate"]));
    assert_eq!(status.trim(), "99.0.0 install ok installed");

    // Remove keeps config and state; purge takes them and the group.
    run(xtask().args(["uninstall", "--root"]).arg(&root));
    assert!(!root.join("usr/bin/tollgate").exists());
    assert!(
        std::fs::symlink_metadata(&wants).is_err(),
        "disabled on remove"
    );
    assert!(conf.exists(), "config kept on remove");
    assert!(
        root.join("var/lib/tollgate").is_dir(),
        "state kept on remove"
    );
    run(xtask().args(["uninstall", "--purge", "--root"]).arg(&root));
    assert!(!root.join("etc/tollgate").exists(), "config purged");
    assert!(!root.join("var/lib/tollgate").exists(), "state purged");
    assert_eq!(group_line(&root), None, "group removed on purge");

    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&debs).unwrap();
}
