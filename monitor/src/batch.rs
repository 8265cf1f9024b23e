//! BPF_MAP_LOOKUP_BATCH for the source table (a million entries read in a
//! few hundred syscalls instead of two million) and for the per-CPU
//! counter arrays (every counter of every CPU in one syscall instead of
//! one per counter). aya 0.14 has no batch API, so this is the syscall
//! itself.

use std::os::fd::{AsRawFd, OwnedFd};

use monitor_common::types::{SourceKey, SourceState};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries per syscall: large enough to amortise the call, small enough
/// to keep the buffers in cache.
const CHUNK: usize = 4096;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Calls `each` for every (key, state) in the LRU source map behind `fd`.
/// Entries evicted or inserted during the walk may be missed or seen; the
/// walk itself never fails because of them.
pub fn for_each_source(
    fd: &OwnedFd,
    each: impl FnMut(&SourceKey, &SourceState),
) -> std::io::Result<usize> {
    for_each_source_in(fd, 0, None, each)
}

/// Like `for_each_source`, for the hash buckets from `from` up to (not
/// including) `to` (`None`: the table's end), so that several threads can
/// share one walk. The batch token of a hash map is a bucket index.
///
/// A batch call returns whole buckets, skipping empty ones, and reports as
/// its token the next non-empty bucket it did not read. A call whose token
/// ends past `to` may or may not have read buckets at or past `to`; it is
/// retried with fewer entries until it does not cross, and a crossing
/// single-entry read is told apart by comparing its key with the first
/// entry at or past `to` (`first_beyond`).
pub fn for_each_source_in(
    fd: &OwnedFd,
    from: u32,
    to: Option<u32>,
    mut each: impl FnMut(&SourceKey, &SourceState),
) -> std::io::Result<usize> {
    let mut keys = vec![SourceKey::default(); CHUNK];
    let mut values = vec![SourceState::default(); CHUNK];
    let first_beyond = match to {
        Some(t) => first_key_from(fd, t)?,
        None => None,
    };
    let mut token = from;
    let mut count = CHUNK as u32;
    // Set when `count` was grown to fit a bucket (before `to`) after
    // ENOSPC: the next read returns exactly that bucket.
    let mut exact = false;
    let mut total = 0;
    loop {
        if to.is_some_and(|t| token >= t) {
            return Ok(total);
        }
        let (err, n, out) = read_from(fd, token, count, &mut keys, &mut values);
        let errno = err.as_ref().and_then(std::io::Error::raw_os_error);
        let end = errno == Some(libc::ENOENT);
        if errno == Some(libc::ENOSPC) {
            // The next non-empty bucket (`out`) holds more than `count`:
            // grow to exactly its size, one at a time.
            if to.is_some_and(|t| out >= t) {
                return Ok(total);
            }
            // A hash bucket holds a handful of entries; more than the
            // buffers would be a table this walk cannot read.
            if count as usize >= CHUNK {
                return Err(std::io::Error::other(format!(
                    "bucket {out} holds more than {CHUNK} entries"
                )));
            }
            exact = true;
            count += 1;
            continue;
        }
        if let Some(e) = err.filter(|_| !end) {
            return Err(e);
        }
        let crossed = match to {
            // Exactly one bucket, checked to be before `to`.
            Some(_) if exact => false,
            // Past the last entry, or the next unread bucket is past `to`.
            Some(t) => n > 0 && (end || out > t),
            None => false,
        };
        exact = false;
        if crossed {
            if n > 1 {
                count = (n as u32 / 2).max(1);
                continue;
            }
            // One entry, and nothing non-empty between it and `to`: ours
            // unless it is the first entry of the next range.
            if first_beyond != Some(keys[0]) {
                each(&keys[0], &values[0]);
                total += 1;
            }
            return Ok(total);
        }
        for i in 0..n {
            each(&keys[i], &values[i]);
        }
        total += n;
        if end {
            return Ok(total);
        }
        token = out;
    }
}

/// The key of the first entry in the first non-empty bucket at or past
/// `bucket`, if any.
fn first_key_from(fd: &OwnedFd, bucket: u32) -> std::io::Result<Option<SourceKey>> {
    // Small buffers: a bucket rarely holds more than a few entries; a
    // larger one is read again with room for it.
    let mut count = 8u32;
    loop {
        let mut keys = vec![SourceKey::default(); count as usize];
        let mut values = vec![SourceState::default(); count as usize];
        match read_from(fd, bucket, count, &mut keys, &mut values) {
            (Some(e), _, _) if e.raw_os_error() == Some(libc::ENOSPC) => count *= 2,
            (Some(e), _, _) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            (_, n, _) => return Ok((n > 0).then(|| keys[0])),
        }
    }
}

/// One batch read of up to `count` entries of the source map, from hash
/// bucket `from` on: the error if any (ENOENT: the table's end was
/// reached), how many entries were read, and the next bucket not read.
fn read_from(
    fd: &OwnedFd,
    from: u32,
    count: u32,
    keys: &mut [SourceKey],
    values: &mut [SourceState],
) -> (Option<std::io::Error>, usize, u32) {
    let count = count.min(keys.len() as u32).min(values.len() as u32);
    let mut out: u32 = 0;
    let mut attr = BatchAttr {
        in_batch: &from as *const u32 as u64,
        out_batch: &mut out as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count,
        map_fd: fd.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: attr points at buffers of at least `count` keys and values
    // of the map's key and value sizes (checked by the size assertions on
    // the shared types and by aya when the map was opened).
    let err = unsafe { lookup_batch(&mut attr) }.err();
    (err, attr.count.min(count) as usize, out)
}

/// One BPF_MAP_LOOKUP_BATCH call.
///
/// # Safety
/// `attr`'s key, value and token pointers must point at buffers of the
/// sizes the map and `count` imply.
unsafe fn lookup_batch(attr: &mut BatchAttr) -> std::io::Result<()> {
    // SAFETY: per the function's contract.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Every entry of the per-CPU array of `entries` `T`s behind `fd`, each
/// summed over the CPUs with `add`, in one syscall.
///
/// `T` must be the map's value type, a whole number of u64s (the kernel
/// lays per-CPU values out at 8-byte strides).
pub fn per_cpu_array_sums<T: Copy + Default>(
    fd: &OwnedFd,
    entries: u32,
    add: impl Fn(T, T) -> T,
) -> std::io::Result<Vec<T>> {
    const { assert!(std::mem::size_of::<T>().is_multiple_of(8) && std::mem::align_of::<T>() <= 8) };
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    let mut keys = vec![0u32; entries as usize];
    let mut values = vec![T::default(); entries as usize * cpus];
    let mut token_out: u32 = 0;
    let mut attr = BatchAttr {
        out_batch: &mut token_out as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: entries,
        map_fd: fd.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: `entries` u32 keys and `entries` x `cpus` values of the map's
    // value size (the caller's contract on T), as the kernel expects for a
    // per-CPU array with that many possible CPUs.
    match unsafe { lookup_batch(&mut attr) } {
        Ok(()) => {}
        // The whole array fit: the kernel reports the end as ENOENT.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    if attr.count != entries {
        return Err(std::io::Error::other(format!(
            "batch read returned {} of {entries} entries",
            attr.count
        )));
    }
    // Keys come back in order 0..entries for an array.
    Ok(values
        .chunks_exact(cpus)
        .map(|per_cpu| per_cpu.iter().copied().fold(T::default(), &add))
        .collect())
}
