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
];

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
    exec(root_cmd(&o.runner, "apt-get").args(["update", "-qq"]))?;
    exec(
        root_cmd(&o.runner, "apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(pkgs),
    )
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, cmd)| !has(cmd))
        .map(|(p, _)| *p)
        .collect();
    apt_install(o, &missing)?;

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
