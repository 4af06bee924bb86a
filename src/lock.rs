//! The read lock taken while an mbox is indexed, so that a delivery or a UW-IMAP rewrite in
//! progress is never indexed half-done.
//!
//! UW-IMAP's c-client takes `flock()` and a `<mbox>.lock` dotlock; Postfix (Debian's default)
//! `fcntl()` and the dotlock. A shared `flock` plus a shared open-file-description `fcntl` lock
//! hold off both, and write nothing. The dotlock creates a file next to the mbox, so it is
//! opt-in.
//!
//! The locks are taken all together or not at all: when one of them is held by a writer, the
//! others are let go at once and the whole set is tried again after a short, growing pause
//! (1 ms up to 25 ms). So a writer waits for at most one read of ours, never for our wait on
//! another lock. When the set cannot be had within [`LOCK_WAIT`], the mbox is read without
//! locks; the mount then holds back its last message until the file has been quiet for a second
//! (see `fs::SETTLE`), and checks after every read that the bytes did not change.
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

/// How long the set of locks is tried for.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);
/// A dotlock older than this is stale (c-client's rule is 5 minutes).
const STALE_DOTLOCK: Duration = Duration::from_secs(300);
/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_millis(25);

/// Locks held until dropped.
pub struct ReadLock<'f> {
    file: &'f File,
    held: bool,
    /// The directory the dotlock was made in, and its name there.
    dotlock: Option<(Dir, OsString)>,
    /// How long it took to get them (or to give up).
    pub waited: Duration,
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

/// Takes an exclusive `flock` without waiting; whether it was had.
pub fn try_exclusive(file: &File) -> bool {
    flock(file, libc::LOCK_EX | libc::LOCK_NB)
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

/// Tries to make the dotlock `name` in `dir`: `Some(true)` made, `Some(false)` held by someone,
/// `None` cannot be made at all (no permission...).
fn make_dotlock(dir: &Dir, name: &OsString, path: &Path) -> Option<bool> {
    match dir.create_new(name, 0o644) {
        Ok(_) => Some(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let stale = dir
                .stat_at(name)
                .ok()
                .flatten()
                .is_some_and(|st| now - st.mtime > STALE_DOTLOCK.as_secs() as i64);
            if stale {
                log::warn!(
                    "{}: dotlock {} is over 5 minutes old; not waiting for it",
                    path.display(),
                    name.to_string_lossy()
                );
                None
            } else {
                Some(false)
            }
        }
        Err(e) => {
            log::warn!(
                "{}: cannot make dotlock {}: {e}; going on without it",
                path.display(),
                name.to_string_lossy()
            );
            None
        }
    }
}

/// Takes the read locks of `mode` on `file` (at `path`): all of them, or none after
/// [`LOCK_WAIT`].
pub fn read_lock<'f>(file: &'f File, path: &Path, mode: LockMode) -> ReadLock<'f> {
    read_lock_within(file, path, mode, LOCK_WAIT)
}

fn read_lock_within<'f>(
    file: &'f File,
    path: &Path,
    mode: LockMode,
    wait: Duration,
) -> ReadLock<'f> {
    let started = Instant::now();
    let mut lock = ReadLock {
        file,
        held: false,
        dotlock: None,
        waited: Duration::ZERO,
    };
    if mode == LockMode::None {
        return lock;
    }
    let mut dotlock = (mode == LockMode::Dotlock)
        .then(|| match dotlock_dir(file, path) {
            Ok(d) => Some(d),
            Err(e) => {
                log::warn!("{}: no dotlock: {e}; going on without it", path.display());
                None
            }
        })
        .flatten();
    let mut use_dotlock = dotlock.is_some();
    let mut pause = Duration::from_millis(1);
    loop {
        let mut made_dotlock = false;
        let dotlock_ok = match (&dotlock, use_dotlock) {
            (Some((dir, name)), true) => match make_dotlock(dir, name, path) {
                Some(made) => {
                    made_dotlock = made;
                    made
                }
                None => {
                    use_dotlock = false;
                    true
                }
            },
            _ => true,
        };
        if dotlock_ok {
            let f = flock(file, libc::LOCK_SH | libc::LOCK_NB);
            let c = f && ofd_lock(file, libc::F_RDLCK as libc::c_short);
            if f && c {
                lock.held = true;
                lock.dotlock = dotlock.take().filter(|_| made_dotlock);
                break;
            }
            if f {
                flock(file, libc::LOCK_UN);
            }
        }
        if made_dotlock {
            if let Some((dir, name)) = &dotlock {
                let _ = dir.remove_file(name);
            }
        }
        if started.elapsed() >= wait {
            break;
        }
        std::thread::sleep(pause.min(wait.saturating_sub(started.elapsed())));
        pause = (pause * 2).min(MAX_PAUSE);
    }
    lock.waited = started.elapsed();
    lock
}

impl ReadLock<'_> {
    /// Whether the locks asked for were had (so no writer honouring them is mid-write).
    pub fn is_complete(&self) -> bool {
        self.held
    }
}

impl Drop for ReadLock<'_> {
    fn drop(&mut self) {
        if self.held {
            ofd_lock(self.file, libc::F_UNLCK as libc::c_short);
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
    fn takes_all_or_nothing_and_gives_up_in_time() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("box");
        std::fs::write(&p, "x").unwrap();
        let writer = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let reader = File::open(&p).unwrap();
        // A writer's flock: ours is not had, and neither is our fcntl lock (a Postfix-style
        // writer is not held off for nothing).
        assert!(flock(&writer, libc::LOCK_EX | libc::LOCK_NB));
        let t = Instant::now();
        let l = read_lock_within(&reader, &p, LockMode::Fcntl, Duration::from_millis(200));
        assert!(!l.is_complete());
        assert!(t.elapsed() >= Duration::from_millis(200));
        let writer2 = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        assert!(ofd_lock(&writer2, libc::F_WRLCK as libc::c_short));
        ofd_lock(&writer2, libc::F_UNLCK as libc::c_short);
        drop(l);
        flock(&writer, libc::LOCK_UN);
        // Free: both, and the dotlock, at once.
        let l = read_lock(&reader, &p, LockMode::Dotlock);
        assert!(l.is_complete());
        assert!(l.waited < Duration::from_millis(100));
        assert!(d.path().join("box.lock").exists());
        assert!(!ofd_lock(&writer, libc::F_WRLCK as libc::c_short));
        assert!(!flock(&writer, libc::LOCK_EX | libc::LOCK_NB));
        drop(l);
        assert!(!d.path().join("box.lock").exists());
        // A path that does not lead to the open file (here: renamed away) gets no dotlock.
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::rename(&p, d.path().join("sub/box")).unwrap();
        let l = read_lock(&reader, &p, LockMode::Dotlock);
        assert!(l.is_complete() && l.dotlock.is_none());
        drop(l);
        assert!(!d.path().join("box.lock").exists());
        std::fs::rename(d.path().join("sub/box"), &p).unwrap();
        assert!(ofd_lock(&writer, libc::F_WRLCK as libc::c_short));
        // A writer's fcntl lock: our flock is let go while we wait.
        let l = std::thread::scope(|s| {
            let h = s.spawn(|| {
                read_lock_within(&reader, &p, LockMode::Fcntl, Duration::from_millis(300))
            });
            std::thread::sleep(Duration::from_millis(50));
            // Our flock is only ever held for an instant while we wait.
            let other = File::open(&p).unwrap();
            let had = (0..20).any(|_| {
                std::thread::sleep(Duration::from_millis(2));
                flock(&other, libc::LOCK_EX | libc::LOCK_NB)
            });
            assert!(had, "flock held while waiting for fcntl");
            flock(&other, libc::LOCK_UN);
            h.join().unwrap()
        });
        assert!(!l.is_complete());
    }
}
