//! The few libc calls std does not wrap: the passwd and group databases, and `syncfs`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::path::Path;

/// A user from the passwd database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passwd {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Looks a user up by name (`getpwnam_r`).
pub fn user_by_name(name: &str) -> Option<Passwd> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: `passwd` is plain data that getpwnam_r fills in; zeroed is a valid start value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: the name is NUL-terminated, the buffer is
    // `buf.len()` bytes long, and `pw`/`result` are live locals.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success `pw_dir` points to a NUL-terminated string inside `buf`.
    let home = unsafe { CStr::from_ptr(pw.pw_dir) }
        .to_string_lossy()
        .into_owned();
    Some(Passwd {
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        home,
    })
}

/// Looks a group up by name (`getgrnam_r`) and returns its gid.
pub fn group_by_name(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: `group` is plain data that getgrnam_r fills in.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `user_by_name`.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut gr,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(gr.gr_gid)
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Raises the soft limit on open files to the hard limit; returns the soft limit now.
pub fn raise_open_files_limit() -> io::Result<u64> {
    // SAFETY: `rlimit` is plain data that getrlimit fills in.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a live, initialised local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}

/// Flushes the file system holding `path` (`syncfs`).
pub fn syncfs(path: &Path) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `statvfs`: (blocks, free blocks, available blocks, files, free files, block size).
pub fn statvfs(path: &Path) -> io::Result<(u64, u64, u64, u64, u64, u32)> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: `statvfs` is plain data the call fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a live local.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        st.f_blocks,
        st.f_bfree,
        st.f_bavail,
        st.f_files,
        st.f_ffree,
        st.f_bsize as u32,
    ))
}

/// Copies `len` bytes from `src` at `src_at` to `dst` at `dst_at`, in the kernel where it can
/// (`copy_file_range`), else through a buffer.
pub fn copy_range(
    src: &std::fs::File,
    src_at: u64,
    dst: &std::fs::File,
    dst_at: u64,
    len: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let (mut from, mut to, mut left) = (src_at as i64, dst_at as i64, len);
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the call, and the offsets are live locals that
        // the kernel updates.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut from,
                dst.as_raw_fd(),
                &mut to,
                chunk,
                0,
            )
        };
        if n > 0 {
            left -= n as u64;
            continue;
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the mbox shrank while it was copied",
            ));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // Not possible between these two files: copy through memory.
            Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                let mut buf = vec![0u8; (left as usize).min(1 << 20)];
                while left > 0 {
                    let n = buf.len().min(left as usize);
                    src.read_exact_at(&mut buf[..n], from as u64)?;
                    dst.write_all_at(&buf[..n], to as u64)?;
                    from += n as i64;
                    to += n as i64;
                    left -= n as u64;
                }
            }
            _ => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_ranges() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), b"0123456789").unwrap();
        let src = std::fs::File::open(d.path().join("a")).unwrap();
        let dst = std::fs::File::create(d.path().join("b")).unwrap();
        copy_range(&src, 2, &dst, 0, 3).unwrap();
        copy_range(&src, 7, &dst, 3, 2).unwrap();
        assert_eq!(std::fs::read(d.path().join("b")).unwrap(), b"23478");
        assert!(copy_range(&src, 8, &dst, 5, 5).is_err());
    }

    #[test]
    fn root_exists() {
        let root = user_by_name("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(group_by_name("root"), Some(0));
        assert_eq!(user_by_name("no-such-user-here"), None);
    }
}
