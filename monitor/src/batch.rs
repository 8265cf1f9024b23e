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
    mut each: impl FnMut(&SourceKey, &SourceState),
) -> std::io::Result<usize> {
    let mut keys = vec![SourceKey::default(); CHUNK];
    let mut values = vec![SourceState::default(); CHUNK];
    // Hash maps use a u32 bucket index as the batch token.
    let mut token_in: u32 = 0;
    let mut token_out: u32 = 0;
    let mut first = true;
    let mut total = 0;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &token_in as *const u32 as u64
            },
            out_batch: &mut token_out as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at buffers of `count` keys and values of the
        // map's key and value sizes (checked by the size assertions on the
        // shared types and by aya when the map was opened).
        let err = unsafe { lookup_batch(&mut attr) }.err();
        let n = attr.count as usize;
        for i in 0..n.min(CHUNK) {
            each(&keys[i], &values[i]);
        }
        total += n;
        match err {
            None => {}
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(total),
            Some(e) => return Err(e),
        }
        token_in = token_out;
        first = false;
    }
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
