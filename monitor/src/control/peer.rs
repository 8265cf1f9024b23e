//! Who is on the other end of the control socket (SO_PEERCRED), and the
//! group database lookups that decide whether they may use it.

/// The peer's credentials on a Unix socket (SO_PEERCRED).
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

pub fn peer_credentials(fd: std::os::fd::RawFd) -> std::io::Result<Peer> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writing; fd is a connected socket.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Peer {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Group id of `name`, if the group exists.
pub fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam returns a pointer into static storage or null; we
    // read one field right away.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        None
    } else {
        Some(unsafe { (*g).gr_gid })
    }
}

/// Whether the user `uid` is a member of group `gid` (primary or
/// supplementary), read from the group database.
pub fn user_in_group(uid: u32, primary_gid: u32, gid: u32) -> bool {
    if primary_gid == gid {
        return true;
    }
    // SAFETY: getpwuid/getgrgid return static storage or null; read at once.
    unsafe {
        let pw = libc::getpwuid(uid);
        let gr = libc::getgrgid(gid);
        if pw.is_null() || gr.is_null() {
            return false;
        }
        let user = std::ffi::CStr::from_ptr((*pw).pw_name);
        let mut m = (*gr).gr_mem;
        while !m.is_null() && !(*m).is_null() {
            if std::ffi::CStr::from_ptr(*m) == user {
                return true;
            }
            m = m.add(1);
        }
    }
    false
}
