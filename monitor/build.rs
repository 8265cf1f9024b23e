use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// Builds the XDP programs with the nightly toolchain for the BPF target;
/// the object lands in OUT_DIR and is embedded by `loader/mod.rs`.
fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("monitor has no parent directory"))?
        .join("monitor-ebpf");
    // aya-build watches the eBPF crate; the shared crate is compiled into
    // the program too.
    println!(
        "cargo:rerun-if-changed={}",
        root.with_file_name("monitor-common").display()
    );
    let root = root
        .to_str()
        .context("the monitor-ebpf path is not UTF-8")?
        .to_owned();
    // aya-build relays every line the eBPF crate's cargo writes to stderr
    // as a build-script warning, which cargo replays on every later build
    // of this crate ("Compiling monitor-ebpf", "Finished"): a quiet cargo
    // writes only what matters (compiler warnings and errors still come
    // through its JSON messages).
    // SAFETY: the build script is single-threaded here.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [Package {
            name: "monitor-ebpf",
            root_dir: &root,
            ..Default::default()
        }],
        Toolchain::default(),
    )
    .context(
        "building the XDP programs failed; is the toolchain installed? run `cargo xtask setup`",
    )
}
