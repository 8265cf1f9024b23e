//! The kernel program's clocks, read from user space.

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; the clock ids used here
    // exist on every Linux kernel Tollgate runs on.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_MONOTONIC` in nanoseconds. The XDP program reads the same clock
/// (its coarse, tick-updated variant), so ban expiries and flow times
/// computed here compare with the kernel's.
pub fn monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_MONOTONIC_COARSE`: exactly what the XDP program reads, so "is
/// this ban still in force" is answered as the kernel answers it (the fine
/// clock runs up to a tick ahead).
pub fn coarse_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC_COARSE)
}

/// How often the kernel's coarse clock advances (one tick: 4 ms at
/// HZ=250). Within a tick every packet sees the same time, so a bucket's
/// burst must cover at least one tick of its rate.
pub fn coarse_tick_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        // HZ=100, the coarsest Linux configures.
        return 10_000_000;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock time in ms since the Unix epoch (the state file and events
/// keep it: the kernel's clocks restart at boot).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
