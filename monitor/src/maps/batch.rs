//! BPF_MAP_LOOKUP_BATCH for the per-CPU counter arrays: every counter of
//! every CPU in one syscall instead of one per counter. aya 0.14 has no
//! batch API, so this is the syscall itself. (The source table is read
//! through its mmap-ed slots instead, see `sources`.)

use std::os::fd::{AsRawFd, OwnedFd};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

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

/// Every value of the hash (or LRU hash) map behind `fd`, whose keys are
/// `K` and values `V` (see `hash_entries`).
pub fn hash_values<K: Copy + Default, V: Copy + Default>(
    fd: &OwnedFd,
    chunk: u32,
) -> std::io::Result<Vec<V>> {
    Ok(hash_entries::<K, V>(fd, chunk)?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// Every entry of the hash (or LRU hash) map behind `fd`, whose keys are
/// `K` and values `V`, read `chunk` entries per BPF_MAP_LOOKUP_BATCH call
/// instead of two syscalls per entry. Entries added or removed during
/// the read may or may not be seen.
pub fn hash_entries<K: Copy + Default, V: Copy + Default>(
    fd: &OwnedFd,
    chunk: u32,
) -> std::io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    let mut chunk = chunk.max(1);
    // The hash map's batch token is a bucket number (u32); room for a u64.
    let mut token_in: u64 = 0;
    let mut token_out: u64 = 0;
    let mut first = true;
    loop {
        let mut keys = vec![K::default(); chunk as usize];
        let mut values = vec![V::default(); chunk as usize];
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &mut token_in as *mut u64 as u64
            },
            out_batch: &mut token_out as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `chunk` keys of K and values of V, the map's key and
        // value types (the caller's contract); the tokens are 8 bytes.
        let done = match unsafe { lookup_batch(&mut attr) } {
            Ok(()) => false,
            // The end of the map: the last entries came with it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            // One bucket holds more entries than fit: ask for more at once.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && chunk < 1 << 20 => {
                chunk *= 2;
                continue;
            }
            Err(e) => return Err(e),
        };
        let n = (attr.count as usize).min(values.len());
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        if done {
            return Ok(out);
        }
        token_in = token_out;
        first = false;
    }
}
