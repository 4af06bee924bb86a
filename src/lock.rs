//! The read lock taken while an mbox is indexed, so that a delivery or a UW-IMAP rewrite in
//! progress is never indexed half-done.
//!
//! UW-IMAP takes `flock()` and a `<mbox>.lock` dotlock; Postfix (Debian's default) `fcntl()` and
//! the dotlock. A shared `flock` plus a shared open-file-description `fcntl` lock hold off
//! both, and write nothing. The dotlock creates a file next to the mbox, so it is opt-in. Every
//! wait is bounded: a lock not had within [`LOCK_WAIT`] is given up (and logged), so that
//! delivery is never blocked for long and the mount never hangs.
//!
//! The dotlock is made in the directory that holds the open mbox, through a descriptor of that
//! directory (checked to hold the very file that is open), and removed through the same
//! descriptor: a symlink swapped into the path never lets root create or remove a file
//! elsewhere.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::safe::{Dir, Kind};

/// Which locks are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    None,
    /// `flock(LOCK_SH)` and an OFD `fcntl(F_RDLCK)`.
    Fcntl,
    /// Those, and a `<mbox>.lock` dotlock.
    Dotlock,
}

/// How long a lock is waited for.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);
/// A dotlock older than this is stale (c-client's rule is 5 minutes).
const STALE_DOTLOCK: Duration = Duration::from_secs(300);

/// Locks held until dropped.
pub struct ReadLock<'f> {
    file: &'f File,
    flock: bool,
    fcntl: bool,
    /// The directory the dotlock was made in, and its name there.
    dotlock: Option<(Dir, OsString)>,
}

fn ofd_lock(file: &File, kind: libc::c_short) -> bool {
    // SAFETY: `flock` is plain data; zeroed then filled.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: the descriptor is open and `fl` is a valid, live struct.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) == 0 }
}

fn flock(file: &File, op: libc::c_int) -> bool {
    // SAFETY: the descriptor is open.
    unsafe { libc::flock(file.as_raw_fd(), op) == 0 }
}

/// Takes the read locks of `mode` on `file` (at `path`), waiting at most [`LOCK_WAIT`] for each.
pub fn read_lock<'f>(file: &'f File, path: &Path, mode: LockMode) -> ReadLock<'f> {
    let mut lock = ReadLock {
        file,
        flock: false,
        fcntl: false,
        dotlock: None,
    };
    if mode == LockMode::None {
        return lock;
    }
    let deadline = Instant::now() + LOCK_WAIT;
    if mode == LockMode::Dotlock {
        match dotlock_dir(file, path) {
            Ok((dir, name)) => loop {
                match dir.create_new(&name, 0o644) {
                    Ok(_) => {
                        lock.dotlock = Some((dir, name));
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs() as i64);
                        let stale = dir
                            .stat_at(&name)
                            .ok()
                            .flatten()
                            .is_some_and(|st| now - st.mtime > STALE_DOTLOCK.as_secs() as i64);
                        if stale || Instant::now() >= deadline {
                            log::warn!(
                                "{}: dotlock {} held; reading without it",
                                path.display(),
                                name.to_string_lossy()
                            );
                            break;
                        }
                    }
                    Err(e) => {
                        log::warn!(
                            "{}: cannot make dotlock: {e}; reading without it",
                            path.display()
                        );
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            },
            Err(e) => log::warn!("{}: no dotlock: {e}; reading without it", path.display()),
        }
    }
    loop {
        lock.flock = lock.flock || flock(file, libc::LOCK_SH | libc::LOCK_NB);
        lock.fcntl = lock.fcntl || ofd_lock(file, libc::F_RDLCK as libc::c_short);
        if (lock.flock && lock.fcntl) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if !(lock.flock && lock.fcntl) {
        log::warn!(
            "{}: locked by a writer for over {LOCK_WAIT:?}; reading anyway",
            path.display()
        );
    }
    lock
}

/// The directory holding the open mbox `file` (named `path`), and its dotlock's name there. The
/// directory must hold `file` itself under that name, checked on its descriptor.
fn dotlock_dir(file: &File, path: &Path) -> std::io::Result<(Dir, OsString)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(crate::safe::refused("no directory to make it in"));
    };
    let dir = Dir::open_trusted(parent)?;
    let meta = file.metadata()?;
    let same = dir
        .stat_at(name)?
        .is_some_and(|st| st.kind == Kind::File && (st.dev, st.ino) == (meta.dev(), meta.ino()));
    if !same {
        return Err(crate::safe::refused(
            "its directory no longer holds the file being read (renamed, or a link on the way)",
        ));
    }
    let mut lock = name.to_os_string();
    lock.push(".lock");
    Ok((dir, lock))
}

impl ReadLock<'_> {
    /// Whether every lock asked for was had (so no writer of those kinds is mid-write).
    pub fn is_complete(&self) -> bool {
        self.flock && self.fcntl
    }
}

impl Drop for ReadLock<'_> {
    fn drop(&mut self) {
        if self.fcntl {
            ofd_lock(self.file, libc::F_UNLCK as libc::c_short);
        }
        if self.flock {
            flock(self.file, libc::LOCK_UN);
        }
        if let Some((dir, name)) = &self.dotlock {
            let _ = dir.remove_file(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_writer_then_gives_up() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("box");
        std::fs::write(&p, "x").unwrap();
        let writer = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        assert!(flock(&writer, libc::LOCK_EX | libc::LOCK_NB));
        let reader = File::open(&p).unwrap();
        let t = Instant::now();
        let l = read_lock(&reader, &p, LockMode::Fcntl);
        assert!(!l.flock && l.fcntl);
        assert!(t.elapsed() >= LOCK_WAIT);
        drop(l);
        flock(&writer, libc::LOCK_UN);
        let l = read_lock(&reader, &p, LockMode::Dotlock);
        assert!(l.flock && l.fcntl && l.dotlock.is_some());
        assert!(d.path().join("box.lock").exists());
        drop(l);
        assert!(!d.path().join("box.lock").exists());
        // A path that does not lead to the open file (here: renamed away) gets no dotlock.
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::rename(&p, d.path().join("sub/box")).unwrap();
        let l = read_lock(&reader, &p, LockMode::Dotlock);
        assert!(l.dotlock.is_none() && l.flock);
        drop(l);
        assert!(!d.path().join("box.lock").exists());
        std::fs::rename(d.path().join("sub/box"), &p).unwrap();
        // A writer's fcntl lock now conflicts with ours.
        let l = read_lock(&reader, &p, LockMode::Fcntl);
        assert!(!ofd_lock(&writer, libc::F_WRLCK as libc::c_short));
        drop(l);
        assert!(ofd_lock(&writer, libc::F_WRLCK as libc::c_short));
    }
}
