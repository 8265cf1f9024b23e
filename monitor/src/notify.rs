//! The systemd notify protocol (sd_notify(3)): `READY=1` once every
//! interface is attached and the exporter and control socket listen,
//! `STATUS=` lines, `WATCHDOG=1` pets, `RELOADING=1`/`STOPPING=1`. A
//! datagram to `$NOTIFY_SOCKET`; without it (not under systemd) nothing.

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    time::Duration,
};

/// Sends `state` to the service manager, if there is one. Failures are
/// logged, never fatal: supervision must not take the data path down.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else {
        SocketAddr::from_pathname(&path)
    };
    let sent = addr.and_then(|a| {
        let s = UnixDatagram::unbound()?;
        s.send_to_addr(state.as_bytes(), &a)
    });
    if let Err(e) = sent {
        tracing::warn!(event = "notify_failed", "telling systemd `{state}`: {e}");
    }
}

/// How often to pet the watchdog: half of `$WATCHDOG_USEC`, if systemd
/// asked for one (and asked this process: `$WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(100)))
}
