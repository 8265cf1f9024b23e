//! BPF_MAP_LOOKUP_BATCH for the source table: a million entries read in a
//! few hundred syscalls instead of two million (aya 0.14 has no batch API,
//! so this is the syscall itself).

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
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (rc != 0).then(std::io::Error::last_os_error);
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
