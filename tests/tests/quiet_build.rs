//! The build is quiet: the eBPF build inside `monitor`'s build script
//! leaves no `cargo:warning` lines, which cargo would replay as warnings
//! on every later build (`cargo xtask demo`, `install`, `test`). Read from
//! the build script's recorded output for the binary under test.

use std::path::PathBuf;

use lab::daemon::tollgate_bin;

#[test]
fn the_ebpf_build_leaves_no_warnings_to_replay() {
    let profile = tollgate_bin().parent().unwrap().to_path_buf();
    let newest: PathBuf = std::fs::read_dir(profile.join("build"))
        .expect("the build directory")
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("monitor-") && !name.starts_with("monitor-ebpf-")
        })
        .map(|e| e.path().join("output"))
        .filter(|p| p.exists())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("monitor's build-script output");
    let output = std::fs::read_to_string(&newest).unwrap();
    let warnings: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with("cargo:warning=") || l.starts_with("cargo::warning="))
        .collect();
    assert!(
        warnings.is_empty(),
        "{} replays these on every build: {warnings:#?}",
        newest.display()
    );
    assert!(
        output.contains("cargo:rerun-if-changed="),
        "the output of a real eBPF build: {output}"
    );
}
