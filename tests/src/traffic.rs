//! Bounded traffic senders: every loop is bounded in count and in time.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::netns::NetNs;

static STOP: AtomicBool = AtomicBool::new(false);

/// Makes every sender in this process stop at its next packet (the demo
/// calls it on Ctrl-C).
pub fn stop_all() {
    STOP.store(true, Ordering::Relaxed);
}

pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Pins the calling thread to CPU `cpu` (the attack tests keep attacker
/// and victim on different CPUs, as on different hosts).
pub fn pin_thread(cpu: usize) -> anyhow::Result<()> {
    set_affinity([cpu]).with_context(|| format!("pinning to CPU {cpu}"))
}

/// Runs `work` on CPUs 0 and 1 at once: two pinned threads released
/// together. BPF_PROG_TEST_RUN runs the program on the calling CPU, so
/// the two run it truly in parallel; that they did (each started before
/// the other finished) is checked, or a measurement of races would say
/// nothing about them.
pub fn on_two_cpus(work: impl Fn() + Sync) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    anyhow::ensure!(
        cpus >= 2,
        "this needs two CPUs running at once; the machine has {cpus}"
    );
    let start = std::sync::Barrier::new(2);
    let spans = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|cpu| {
                let (start, work) = (&start, &work);
                scope.spawn(move || {
                    pin_thread(cpu)?;
                    start.wait();
                    let began = Instant::now();
                    work();
                    anyhow::Ok((began, Instant::now()))
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| {
                r.join()
                    .map_err(|_| anyhow::anyhow!("a CPU's thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let (a, b) = (spans[0], spans[1]);
    anyhow::ensure!(
        a.0 < b.1 && b.0 < a.1,
        "the two CPUs never ran at the same time ({:?} and {:?} of work): nothing was shown about races; run again on an idle machine",
        a.1 - a.0,
        b.1 - b.0
    );
    Ok(())
}

/// Lets the calling thread run on every online CPU again.
pub fn unpin_thread() -> anyhow::Result<()> {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    let mut cpus = Vec::new();
    for range in online.trim().split(',') {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        cpus.extend(a.parse::<usize>()?..=b.parse::<usize>()?);
    }
    set_affinity(cpus).context("unpinning")
}

fn set_affinity(cpus: impl IntoIterator<Item = usize>) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t with the given CPUs set, for this thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What a sender did.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub packets: u64,
    pub elapsed: Duration,
}

impl Sent {
    /// The rate sent, packets per second.
    pub fn pps(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64()
    }
}

/// A UDP flow from `src` to `dst:port` inside `ns`: `count` datagrams of
/// `payload` bytes at `pps` (0 = as fast as possible), stopping early at
/// `max_time`. Runs on the calling thread.
#[expect(clippy::too_many_arguments, reason = "one flow's full description")]
pub fn udp(
    ns: &NetNs,
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    count: u64,
    pps: u64,
    payload: usize,
    max_time: Duration,
) -> anyhow::Result<Sent> {
    ns.enter(|| -> anyhow::Result<Sent> {
        let sock = UdpSocket::bind(SocketAddr::new(src, 0))
            .with_context(|| format!("binding a UDP socket to {src} in {}", ns.name()))?;
        let buf = vec![0xa5u8; payload];
        let to = SocketAddr::new(dst, port);
        let start = Instant::now();
        let interval = if pps > 0 {
            Duration::from_secs_f64(1.0 / pps as f64)
        } else {
            Duration::ZERO
        };
        // The next send time. A sender that falls behind (a busy CPU) skips
        // the backlog rather than catching up in a burst, so its rate never
        // exceeds `pps` by more than one packet.
        let mut due = Duration::ZERO;
        let mut sent = 0;
        while sent < count {
            let now = start.elapsed();
            if now >= max_time || stopped() {
                break;
            }
            if now < due {
                std::thread::sleep((due - now).min(Duration::from_millis(5)));
                continue;
            }
            due = due.max(now.saturating_sub(interval)) + interval;
            // ENOBUFS/EAGAIN under load is the sender's problem, not a
            // verdict; count only what the kernel took.
            if sock.send_to(&buf, to).is_ok() {
                sent += 1;
            }
        }
        Ok(Sent {
            packets: sent,
            elapsed: start.elapsed(),
        })
    })?
}

/// A bounded UDP port scan from `src` inside `ns`: one datagram to each
/// port of `ports` in turn, at `pps`, repeated until `count` datagrams or
/// `max_time`.
pub fn udp_scan(
    ns: &NetNs,
    src: IpAddr,
    dst: IpAddr,
    ports: std::ops::Range<u16>,
    count: u64,
    pps: u64,
    max_time: Duration,
) -> anyhow::Result<Sent> {
    ns.enter(|| -> anyhow::Result<Sent> {
        let sock = UdpSocket::bind(SocketAddr::new(src, 0))
            .with_context(|| format!("binding a UDP socket to {src} in {}", ns.name()))?;
        let start = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / pps.max(1) as f64);
        let mut sent = 0u64;
        let mut port = ports.start;
        while sent < count && start.elapsed() < max_time && !stopped() {
            let due = interval * sent as u32;
            let now = start.elapsed();
            if now < due {
                std::thread::sleep((due - now).min(Duration::from_millis(5)));
                continue;
            }
            if sock.send_to(b"scan", SocketAddr::new(dst, port)).is_ok() {
                sent += 1;
            }
            port = if port + 1 >= ports.end {
                ports.start
            } else {
                port + 1
            };
        }
        Ok(Sent {
            packets: sent,
            elapsed: start.elapsed(),
        })
    })?
}

/// Raw Ethernet frames (spoofed sources, hand-set flags) sent on `iface`
/// inside `ns` through an AF_PACKET socket: `frames` round-robin, `count`
/// in all at `pps`, stopping at `max_time`.
pub fn raw_frames(
    ns: &NetNs,
    iface: &str,
    frames: &[Vec<u8>],
    count: u64,
    pps: u64,
    max_time: Duration,
) -> anyhow::Result<Sent> {
    ns.enter(|| -> anyhow::Result<Sent> {
        let name = std::ffi::CString::new(iface)?;
        // SAFETY: plain socket calls with valid arguments; the fd is closed
        // below on every path.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        anyhow::ensure!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        let start = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / pps.max(1) as f64);
        let mut sent = 0u64;
        while sent < count && start.elapsed() < max_time && !stopped() && !frames.is_empty() {
            let due = interval * sent as u32;
            let now = start.elapsed();
            if now < due {
                std::thread::sleep((due - now).min(Duration::from_millis(5)));
                continue;
            }
            let f = &frames[(sent as usize) % frames.len()];
            let rc = unsafe {
                libc::sendto(
                    fd,
                    f.as_ptr() as *const libc::c_void,
                    f.len(),
                    0,
                    &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc >= 0 {
                sent += 1;
            }
        }
        unsafe { libc::close(fd) };
        Ok(Sent {
            packets: sent,
            elapsed: start.elapsed(),
        })
    })?
}
