//! Installing and removing the SYNPROXY table with `nft -f -`, and the
//! sysctls SYNPROXY needs, in the daemon's network namespace.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use super::ruleset::{install_text, remove_text};
use crate::config::SynCookies;

/// Why the SYNPROXY table could not be put in place; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SynproxyError {
    #[error(
        "running `{command}` failed: {source}; SYN cookies need nftables: install the `nftables` package (apt-get install nftables)"
    )]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{command}` refused the SYNPROXY table ({status}): {stderr}; the kernel needs nf_tables with the synproxy and conntrack expressions (nft_synproxy, nf_conntrack)"
    )]
    Refused {
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "cannot set {key} = {want} (it is {current}): {source}; SYNPROXY needs it (a cookie ACK must be invalid to conntrack, not picked up mid-stream): set it before starting the daemon (`sysctl -w {key}={want}`, and in /etc/sysctl.d/ to keep it), or remove [syn_cookies]"
    )]
    Sysctl {
        key: &'static str,
        want: &'static str,
        current: String,
        #[source]
        source: std::io::Error,
    },
}

/// The `nft` binary to run (`nft`, found on PATH, unless a test says
/// otherwise) and where the sysctls are (`/proc/sys`).
#[derive(Debug, Clone)]
pub struct Nft {
    pub binary: PathBuf,
    pub proc_sys: PathBuf,
}

impl Default for Nft {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("nft"),
            proc_sys: PathBuf::from("/proc/sys"),
        }
    }
}

/// Cookie ACKs must be INVALID to conntrack (no entry, no mid-stream
/// pickup) for `synproxy` to see them.
const TCP_LOOSE: (&str, &str) = ("net.netfilter.nf_conntrack_tcp_loose", "0");
/// SYNPROXY carries the client's options in the timestamp; without
/// timestamps on the server, window scaling and SACK are lost.
const TCP_TIMESTAMPS: (&str, &str) = ("net.ipv4.tcp_timestamps", "1");

/// Installs (or replaces, in one transaction) the SYNPROXY table for
/// `c`'s ports and sets `nf_conntrack_tcp_loose = 0` (after the table, whose
/// conntrack expressions load `nf_conntrack`, which the sysctl belongs
/// to). Returns warnings to log (`tcp_timestamps` off). If the sysctl
/// cannot be set the table is removed again: with it on, every cookie ACK
/// would reach the socket as a stray and be reset.
///
/// Connections to the protected ports that were open before the table
/// (and the sysctl) came are not in conntrack: their packets are invalid
/// and dropped (no reset is sent, so their clients wait for a timeout);
/// this runs at daemon start, and on a reload that adds ports.
pub fn install(nft: &Nft, c: &SynCookies) -> Result<Vec<String>, SynproxyError> {
    run(nft, &install_text(c))?;
    if let Err(e) = set_sysctl(&nft.proc_sys, TCP_LOOSE) {
        let _ = run(nft, &remove_text());
        return Err(e);
    }
    let mut warnings = Vec::new();
    match read_sysctl(&nft.proc_sys, TCP_TIMESTAMPS.0) {
        Ok(v) if v == TCP_TIMESTAMPS.1 => {}
        Ok(v) => warnings.push(format!(
            "{} is {v}: SYNPROXY can carry window scaling and SACK to the server only in TCP timestamps; set it to 1",
            TCP_TIMESTAMPS.0
        )),
        Err(e) => warnings.push(format!("cannot read {}: {e}", TCP_TIMESTAMPS.0)),
    }
    Ok(warnings)
}

/// Deletes the SYNPROXY table; succeeds when there is none. The sysctl is
/// left as it is (another user of conntrack may rely on it now).
pub fn remove(nft: &Nft) -> Result<(), SynproxyError> {
    run(nft, &remove_text())
}

/// `nft -f -` with `text` on its standard input.
fn run(nft: &Nft, text: &str) -> Result<(), SynproxyError> {
    let command = format!("{} -f -", nft.binary.display());
    let spawn_error = |source| SynproxyError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(&nft.binary)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().map_err(spawn_error)?;
    if !out.status.success() {
        return Err(SynproxyError::Refused {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    if let Some(Err(e)) = written {
        return Err(spawn_error(e));
    }
    Ok(())
}

/// The file of sysctl `key` under `proc_sys`.
fn sysctl_path(proc_sys: &Path, key: &str) -> PathBuf {
    proc_sys.join(key.replace('.', "/"))
}

fn read_sysctl(proc_sys: &Path, key: &str) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(sysctl_path(proc_sys, key))?
        .trim()
        .to_owned())
}

/// Sets `key` to `want`, unless it already is (so a daemon whose
/// `/proc/sys` is read-only, as under systemd's ProtectKernelTunables,
/// works when the operator set it beforehand).
fn set_sysctl(
    proc_sys: &Path,
    (key, want): (&'static str, &'static str),
) -> Result<(), SynproxyError> {
    let current = read_sysctl(proc_sys, key);
    if current.as_deref().is_ok_and(|v| v == want) {
        return Ok(());
    }
    std::fs::write(sysctl_path(proc_sys, key), want).map_err(|source| SynproxyError::Sysctl {
        key,
        want,
        current: match current {
            Ok(v) => v,
            Err(e) => format!("unreadable: {e}"),
        },
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::CookieMode;

    /// A directory of this test's own, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tg-synproxy-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn cookies() -> SynCookies {
        SynCookies {
            ports: vec![443],
            mode: CookieMode::Always,
            mss4: 1460,
            mss6: 1440,
            wscale: 7,
            verified_ttl: Duration::from_secs(3600),
            ttl: 64,
        }
    }

    /// A fake `/proc/sys` and an `nft` that is a shell script.
    fn fake(dir: &Path, nft_script: &str, loose: &str, timestamps: &str) -> Nft {
        let sys = dir.join("sys");
        std::fs::create_dir_all(sys.join("net/netfilter")).unwrap();
        std::fs::create_dir_all(sys.join("net/ipv4")).unwrap();
        std::fs::write(sys.join("net/netfilter/nf_conntrack_tcp_loose"), loose).unwrap();
        std::fs::write(sys.join("net/ipv4/tcp_timestamps"), timestamps).unwrap();
        let bin = dir.join("nft");
        std::fs::write(&bin, format!("#!/bin/sh\n{nft_script}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        Nft {
            binary: bin,
            proc_sys: sys,
        }
    }

    #[test]
    fn install_feeds_the_ruleset_and_sets_the_sysctl() {
        let dir = TempDir::new();
        let seen = dir.path().join("seen");
        let nft = fake(
            dir.path(),
            &format!("cat >> {}", seen.display()),
            "1\n",
            "0\n",
        );
        let warnings = install(&nft, &cookies()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            install_text(&cookies())
        );
        assert_eq!(read_sysctl(&nft.proc_sys, TCP_LOOSE.0).unwrap(), "0");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("net.ipv4.tcp_timestamps is 0:"));
    }

    #[test]
    fn a_missing_nft_says_to_install_nftables() {
        let nft = Nft {
            binary: PathBuf::from("/nonexistent/nft"),
            ..Nft::default()
        };
        let e = remove(&nft).unwrap_err().to_string();
        assert!(
            e.starts_with("running `/nonexistent/nft -f -` failed: "),
            "{e}"
        );
        assert!(e.ends_with("install the `nftables` package (apt-get install nftables)"));
    }

    #[test]
    fn a_refusal_names_the_command_and_its_stderr() {
        let dir = TempDir::new();
        let nft = fake(
            dir.path(),
            "cat > /dev/null; echo 'Error: Could not process rule' >&2; exit 1",
            "0",
            "1",
        );
        let e = install(&nft, &cookies()).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "`{} -f -` refused the SYNPROXY table (exit status: 1): Error: Could not process rule; ",
                nft.binary.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn an_unsettable_sysctl_removes_the_table_again() {
        let dir = TempDir::new();
        let seen = dir.path().join("seen");
        let nft = fake(dir.path(), &format!("cat >> {}", seen.display()), "1", "1");
        // A directory where the sysctl's file should be: writing fails.
        let loose = sysctl_path(&nft.proc_sys, TCP_LOOSE.0);
        std::fs::remove_file(&loose).unwrap();
        std::fs::create_dir(&loose).unwrap();
        let e = install(&nft, &cookies()).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "cannot set net.netfilter.nf_conntrack_tcp_loose = 0 (it is unreadable: "
            ),
            "{e}"
        );
        let fed = std::fs::read_to_string(&seen).unwrap();
        assert!(fed.ends_with(&super::super::remove_text()), "{fed}");
    }

    #[test]
    fn a_sysctl_already_right_is_not_written() {
        let dir = TempDir::new();
        let nft = fake(dir.path(), "cat > /dev/null", "0\n", "1\n");
        // Root may write a read-only file: a write shows in the mtime.
        let loose = sysctl_path(&nft.proc_sys, TCP_LOOSE.0);
        let old = std::time::UNIX_EPOCH;
        std::fs::File::options()
            .write(true)
            .open(&loose)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(install(&nft, &cookies()).unwrap(), Vec::<String>::new());
        let mtime = std::fs::metadata(&loose).unwrap().modified().unwrap();
        assert_eq!(mtime, old, "the sysctl was written");
    }
}
