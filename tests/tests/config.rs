//! `monitor/src/config/` through `tollgate check-config`: a broken file
//! is refused with the file, line, key and value named and exit status
//! EX_USAGE (64); the example config (`etc/tollgate.toml`) checks out.

use std::{path::Path, process::Command};

use lab::daemon::tollgate_bin;

#[test]
fn check_config_refuses_a_broken_file_with_ex_usage() {
    let dir = std::env::temp_dir().join(format!("tg-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("t.toml");
    std::fs::write(
        &f,
        "interfaces = [\"lo\"]\n[[rule]]\ncidr = \"10.0.0.0/33\"\naction = \"deny\"\n",
    )
    .unwrap();
    let out = Command::new(tollgate_bin())
        .arg("check-config")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("t.toml:3: rule[1].cidr: `10.0.0.0/33` is not an address or CIDR"),
        "{err}"
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/tollgate.toml");
    let out = Command::new(tollgate_bin())
        .args(["check-config", "--no-interfaces"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
