//! BPF_MAP_LOOKUP_BATCH for the per-CPU counter arrays (every counter of
//! every CPU in one syscall instead of one per counter), hash maps, and
//! stretches of an array. aya 0.14 has no batch API, so this is the
//! syscall itself. (The source table's flow records are read through
//! their mmap-ed slots instead, see `sources`.)

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
    let mut token_out = 0u64;
    // SAFETY: `entries` u32 keys and `entries` x `cpus` values of the map's
    // value size (the caller's contract on T), as the kernel expects for a
    // per-CPU array with that many possible CPUs. The whole array fits, so
    // the kernel reports its end (ENOENT) with it.
    let (got, _) = unsafe { step(fd, None, &mut token_out, &mut keys, &mut values) }?;
    if got != entries as usize {
        return Err(std::io::Error::other(format!(
            "batch read returned {got} of {entries} entries"
        )));
    }
    // Keys come back in order 0..entries for an array.
    Ok(values
        .chunks_exact(cpus)
        .map(|per_cpu| per_cpu.iter().copied().fold(T::default(), &add))
        .collect())
}

/// Entries `0..count` of the array of `T`s behind `fd`, `chunk` per
/// BPF_MAP_LOOKUP_BATCH call instead of one syscall per entry. `T` must
/// be the map's value type, a whole number of u64s.
pub fn array_values<T: Copy + Default>(
    fd: &OwnedFd,
    count: u32,
    chunk: u32,
) -> std::io::Result<Vec<T>> {
    const { assert!(std::mem::size_of::<T>().is_multiple_of(8) && std::mem::align_of::<T>() <= 8) };
    let mut out = Vec::with_capacity(count as usize);
    // An array's batch token is the last key read (u32, in a u64).
    let (mut token_in, mut token_out) = (0u64, 0u64);
    while (out.len() as u32) < count {
        let n = chunk.max(1).min(count - out.len() as u32) as usize;
        let (mut keys, mut values) = (vec![0u32; n], vec![T::default(); n]);
        let from = (!out.is_empty()).then_some(&mut token_in);
        // SAFETY: u32 keys and values of the map's value type (the
        // caller's contract on T).
        let (got, end) = unsafe { step(fd, from, &mut token_out, &mut keys, &mut values) }?;
        out.extend_from_slice(&values[..got]);
        if end || got == 0 {
            break;
        }
        token_in = token_out;
    }
    Ok(out)
}

/// One BPF_MAP_LOOKUP_BATCH into `keys` and `values` (as many entries as
/// `keys` holds), after the position `token_in` holds (from the start if
/// none), leaving the next in `token_out`: how many came, and whether the
/// map ended with them (ENOENT).
///
/// # Safety
/// `K` and `V` must be the map's key and value types, and `values` hold a
/// value per key (per possible CPU, for a per-CPU map).
unsafe fn step<K, V>(
    fd: &OwnedFd,
    token_in: Option<&mut u64>,
    token_out: &mut u64,
    keys: &mut [K],
    values: &mut [V],
) -> std::io::Result<(usize, bool)> {
    let mut attr = BatchAttr {
        in_batch: token_in.map_or(0, |t| t as *mut u64 as u64),
        out_batch: token_out as *mut u64 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: keys.len() as u32,
        map_fd: fd.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: buffers of the map's key and value types, as many as
    // `count` says (the caller's contract); the tokens are 8 bytes, room
    // for any map's token.
    let end = match unsafe { lookup_batch(&mut attr) } {
        Ok(()) => false,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
        Err(e) => return Err(e),
    };
    Ok(((attr.count as usize).min(keys.len()), end))
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
    let mut chunk = chunk.max(1) as usize;
    // The hash map's batch token is a bucket number (u32, in a u64).
    let (mut token_in, mut token_out) = (0u64, 0u64);
    let mut first = true;
    loop {
        let (mut keys, mut values) = (vec![K::default(); chunk], vec![V::default(); chunk]);
        let from = (!first).then_some(&mut token_in);
        // SAFETY: keys of K and values of V, the map's key and value types
        // (the caller's contract).
        let (n, end) = match unsafe { step(fd, from, &mut token_out, &mut keys, &mut values) } {
            Ok(r) => r,
            // One bucket holds more entries than fit: ask for more at once.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && chunk < 1 << 20 => {
                chunk *= 2;
                continue;
            }
            Err(e) => return Err(e),
        };
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        // The end of the map: the last entries came with it.
        if end {
            return Ok(out);
        }
        token_in = token_out;
        first = false;
    }
}
