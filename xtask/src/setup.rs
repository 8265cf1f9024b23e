//! Installing what the project needs, idempotently: each step checks
//! before it installs, so a second run costs a few probes.

use std::process::Command;

use crate::exec::{exec, is_root, output, probe};

/// Flattened into the other tasks' options, so its argument group gets a
/// name of its own (clap names it after the struct, and every task's is
/// `Options`).
#[derive(clap::Args, Default)]
#[group(id = "setup")]
pub struct Options {
    /// Command prefix for steps that need root when not root.
    #[arg(long, default_value = "sudo -E")]
    pub runner: String,
}

/// Debian packages and the command each provides (to probe for it).
const PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip"),
    ("tshark", "tshark"),
    ("xdp-tools", "xdp-filter"),
    ("bpftool", "bpftool"),
    ("hping3", "hping3"),
    ("netsniff-ng", "trafgen"),
    ("tcpreplay", "tcpreplay"),
    ("iputils-ping", "ping"),
    ("prometheus", "promtool"),
    ("linux-perf", "perf"),
    ("systemd", "systemd-analyze"),
    ("util-linux", "setpriv"),
    // The package test reads the installed man pages.
    ("man-db", "man"),
    // The SYN-cookie lab: a real web server, the kernel's SYNPROXY and a
    // real client.
    ("nginx", "nginx"),
    ("nftables", "nft"),
    ("curl", "curl"),
    // Receive offload on the flood lab's veths (`lab::flood_lab`), and
    // the bench's flood table (its receiver's counters; iptables'
    // hashlimit as a defence to compare with).
    ("ethtool", "ethtool"),
    ("iptables", "iptables"),
    // A real CrowdSec Local API for the fleet tests (`lab::crowdsec`), and
    // its firewall bouncer for the bench to compare with.
    ("crowdsec", "crowdsec"),
    ("crowdsec-firewall-bouncer", "crowdsec-firewall-bouncer"),
];

/// Debian's invoke-rc.d asks this script whether a package may start its
/// service; exit status 101 means "no" (policy-rc.d(8)).
const POLICY_RC: &str = "/usr/sbin/policy-rc.d";

/// nginx's package starts the service on 0.0.0.0:80 and [::]:80; the lab
/// runs its own instances on lab addresses only. The default config's pid
/// file names a stray one.
const NGINX_PID: &str = "/run/nginx.pid";

/// bpf-linker is built against the LLVM that matches the nightly's (22).
const LLVM: &str = "22";

fn root_cmd(runner: &str, program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut parts = runner.split_whitespace();
        let mut c = Command::new(parts.next().unwrap_or("sudo"));
        c.args(parts).arg(program);
        c
    }
}

fn has(cmd: &str) -> bool {
    probe(Command::new("sh").args(["-c", &format!("command -v {cmd}")]))
}

fn apt_install(o: &Options, pkgs: &[&str]) -> anyhow::Result<()> {
    if pkgs.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {}", pkgs.join(" "));
    let _no_starts = NoServiceStarts::new(&o.runner)?;
    exec(root_cmd(&o.runner, "apt-get").args(["update", "-qq"]))?;
    exec(
        root_cmd(&o.runner, "apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(pkgs),
    )
}

/// While it lives, packages may not start services (a policy-rc.d that
/// exits 101). Only a script this guard wrote is removed on drop; a
/// machine that already had one (a container image) keeps it.
struct NoServiceStarts {
    runner: String,
    wrote: bool,
}

impl NoServiceStarts {
    fn new(runner: &str) -> anyhow::Result<Self> {
        let wrote = !std::path::Path::new(POLICY_RC).exists();
        if wrote {
            let script = format!(
                "printf '#!/bin/sh\\n# cargo xtask setup: no service starts while installing\\nexit 101\\n' > {POLICY_RC} && chmod 755 {POLICY_RC}"
            );
            exec(root_cmd(runner, "sh").args(["-c", &script]))?;
        }
        Ok(Self {
            runner: runner.to_owned(),
            wrote,
        })
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.wrote
            && let Err(e) = exec(root_cmd(&self.runner, "rm").args(["-f", POLICY_RC]))
        {
            eprintln!("setup: could not remove {POLICY_RC}: {e:#}");
        }
    }
}

/// Stops and disables the packaged nginx service if it runs (an install
/// before this setup existed, or by hand): it would hold port 80 on every
/// address. Probes first, so a second run does nothing.
fn stop_packaged_nginx(o: &Options) -> anyhow::Result<()> {
    let systemd = std::path::Path::new("/run/systemd/system").exists();
    if systemd && probe(Command::new("systemctl").args(["is-enabled", "--quiet", "nginx.service"]))
    {
        eprintln!("setup: disabling the packaged nginx service");
        exec(root_cmd(&o.runner, "systemctl").args(["disable", "--now", "nginx.service"]))?;
    }
    let running = std::fs::read_to_string(NGINX_PID)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
    if running {
        eprintln!("setup: stopping the packaged nginx ({NGINX_PID})");
        exec(root_cmd(&o.runner, "nginx").args(["-s", "stop"]))?;
    }
    Ok(())
}

/// Debian's crowdsec registers with the central API in its post-install
/// step, which cannot reach the internet here; with this file present it
/// installs offline (its hub from /usr/share/crowdsec/hub). The tests run
/// their own Local API on a config of their own.
const CROWDSEC_ONLINE: &str = "/etc/crowdsec/online_api_credentials.yaml";

fn crowdsec_offline(o: &Options) -> anyhow::Result<()> {
    if has("crowdsec") || std::path::Path::new(CROWDSEC_ONLINE).exists() {
        return Ok(());
    }
    let script = format!(
        "mkdir -p /etc/crowdsec && printf '# cargo xtask setup: no central API (offline install)\n' > {CROWDSEC_ONLINE}"
    );
    exec(root_cmd(&o.runner, "sh").args(["-c", &script]))
}

/// The packaged CrowdSec services: the tests run a Local API of their
/// own in a namespace, and a firewall bouncer started by the package
/// would put nftables rules on the host. Disabled where systemd runs
/// (probed first, so a second run does nothing).
fn disable_packaged_crowdsec(o: &Options) -> anyhow::Result<()> {
    if !std::path::Path::new("/run/systemd/system").exists() {
        return Ok(());
    }
    for unit in ["crowdsec.service", "crowdsec-firewall-bouncer.service"] {
        if probe(Command::new("systemctl").args(["is-enabled", "--quiet", unit])) {
            eprintln!("setup: disabling the packaged {unit}");
            exec(root_cmd(&o.runner, "systemctl").args(["disable", "--now", unit]))?;
        }
    }
    Ok(())
}

/// The bench's chart draws its labels in this font (fonts-dejavu-core).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

pub fn run(o: &Options) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, cmd)| !has(cmd))
        .map(|(p, _)| *p)
        .collect();
    if !std::path::Path::new(FONT).exists() {
        missing.push("fonts-dejavu-core");
    }
    if missing.contains(&"crowdsec") {
        crowdsec_offline(o)?;
    }
    apt_install(o, &missing)?;
    if has("nginx") {
        stop_packaged_nginx(o)?;
    }
    disable_packaged_crowdsec(o)?;

    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("setup: installing the nightly toolchain (the XDP programs need build-std)");
        exec(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to nightly");
        exec(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }

    if !has("bpf-linker") {
        let llvm_bin = format!("/usr/lib/llvm-{LLVM}/bin");
        if !std::path::Path::new(&llvm_bin).join("llvm-config").exists() {
            apt_install(
                o,
                &[&format!("llvm-{LLVM}-dev"), &format!("libpolly-{LLVM}-dev")],
            )?;
        }
        eprintln!("setup: building bpf-linker against LLVM {LLVM} (about a minute)");
        let path = format!("{llvm_bin}:{}", std::env::var("PATH").unwrap_or_default());
        exec(
            Command::new("cargo")
                .env("PATH", path)
                .args([
                    "install",
                    "bpf-linker",
                    "--no-default-features",
                    "--features",
                ])
                .arg(format!("llvm-{LLVM}")),
        )?;
    }
    // XDP programs are pinned and tests read /sys/fs/bpf on some paths;
    // bpffs is mounted by systemd normally, and by us where it is not.
    if !probe(Command::new("sh").args(["-c", "mount | grep -q ' /sys/fs/bpf type bpf'"])) {
        exec(root_cmd(&o.runner, "mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    }
    eprintln!("setup: ready");
    Ok(())
}
