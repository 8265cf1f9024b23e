//! The group database: whether a group exists (`control.group`) and
//! whether a user belongs to it (who may use the control socket).

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
