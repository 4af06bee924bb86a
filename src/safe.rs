//! Opening what local users control, as root, with no path trusted between check and use.
//!
//! The trust model:
//! - The admin's paths are trusted and opened normally (symlinks followed): DEST, the state
//!   directory, the lists given on the command line, and the fixed part of a source pattern,
//!   the directory that holds the user component (`/var/spool/mail` of `/var/spool/mail/%u`,
//!   `/home` of `/home/%u`). An [`Anchored`] path keeps that split.
//! - Everything below is the user's: it is walked from a directory descriptor one name at a
//!   time and no symbolic link is followed, neither on the way nor at the end
//!   (`openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, or where the
//!   kernel lacks it, `openat(O_NOFOLLOW)` for each component). `..` and absolute paths are
//!   refused before any call.
//! - One exception, for homes moved elsewhere by the admin: a user component that is a
//!   symbolic link owned by root, in a directory owned by root that no one else may write, is
//!   followed once. The user cannot change such a link, so it is the admin's: its target's
//!   directory is opened like the fixed part of a pattern, and its last component (the home
//!   itself) is opened without following symlinks. A link made by anyone else, or in a
//!   directory others may write, is refused.
//!
//! Every check (type, owner, size, identity) is made on the opened descriptor (`fstat`), never
//! on a path. Files are opened `O_NONBLOCK | O_NOCTTY | O_CLOEXEC`, so that a FIFO or a device
//! never blocks, and anything but a regular file is refused where a file is expected. Files and
//! directories are created under a directory descriptor (`mkdirat`,
//! `openat(O_CREAT | O_EXCL | O_NOFOLLOW)`), renamed between directory descriptors
//! (`renameat`), and get their owner and mode on their own descriptor (`fchown`, `fchmod`).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode};
use nix::unistd::{Gid, Uid};

/// The reason given for a symbolic link met where none may be.
pub const SYMLINK_REFUSED: &str = "is a symbolic link: refused, not followed";

/// An error that refuses something, with the reason (no errno).
pub fn refused(why: impl Into<String>) -> io::Error {
    io::Error::other(why.into())
}

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Device,
}

impl Kind {
    fn of_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            _ => Kind::Device,
        }
    }

    /// `is a directory`, `is a FIFO`...: why it is not read as a file.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "is a regular file",
            Kind::Dir => "is a directory",
            Kind::Symlink => "is a symbolic link",
            Kind::Fifo => "is a FIFO",
            Kind::Socket => "is a socket",
            Kind::Device => "is a device",
        }
    }
}

/// What `fstat` says about a descriptor (or `fstatat` without following, about a name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    /// Permission bits (with set-id and sticky bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl Stat {
    fn of(st: &FileStat) -> Stat {
        Stat {
            kind: Kind::of_mode(st.st_mode),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            nlink: st.st_nlink,
            dev: st.st_dev,
            ino: st.st_ino,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
        }
    }

    /// `fstat` of an open descriptor.
    pub fn of_fd(fd: impl AsFd) -> io::Result<Stat> {
        Ok(Stat::of(&nix::sys::stat::fstat(fd)?))
    }
}

/// Whether `openat2` works here (Linux 5.6; a seccomp filter may also refuse it).
fn have_openat2() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    if FORCE_FALLBACK.load(Ordering::Relaxed) {
        return false;
    }
    *HAVE.get_or_init(|| {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
        match nix::fcntl::openat2(nix::fcntl::AT_FDCWD, "/", how) {
            Ok(_) => true,
            Err(e) => {
                log::debug!("openat2 is not available ({e}); walking one name at a time");
                false
            }
        }
    })
}

/// Tests use the per-component walk even where `openat2` works.
static FORCE_FALLBACK: AtomicBool = AtomicBool::new(false);

#[cfg(test)]
pub(crate) fn force_fallback(on: bool) {
    FORCE_FALLBACK.store(on, Ordering::Relaxed);
}

/// The normal components of a relative path (`.` dropped); `..`, absolute paths and empty
/// names are refused.
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(refused(format!(
                    "{}: '..' or an absolute path where a path below a directory is expected: refused",
                    rel.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Flags every open gets.
fn base_flags() -> OFlag {
    OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY
}

/// Flags for a directory met on the way.
fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | base_flags()
}

/// Opens `comps` below `dir` with `flags` for the last one, following no symlink.
fn open_beneath(
    dir: BorrowedFd<'_>,
    comps: &[&OsStr],
    flags: OFlag,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    let flags = flags | base_flags();
    if comps.is_empty() {
        return nix::fcntl::openat(dir, ".", flags, mode);
    }
    if have_openat2() {
        let rel: PathBuf = comps.iter().collect();
        let how = OpenHow::new().flags(flags).mode(mode).resolve(
            ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        // EAGAIN: a rename elsewhere raced the lookup; the kernel asks to try again.
        let mut tries = 0;
        loop {
            match nix::fcntl::openat2(dir, rel.as_path(), how) {
                Err(Errno::EAGAIN) if tries < 16 => tries += 1,
                r => return r,
            }
        }
    }
    let mut cur: Option<OwnedFd> = None;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let at = cur.as_ref().map_or(dir, |f| f.as_fd());
        let fd = if last {
            nix::fcntl::openat(at, *c, flags, mode)?
        } else {
            nix::fcntl::openat(at, *c, dir_flags(), Mode::empty())?
        };
        cur = Some(fd);
    }
    Ok(cur.expect("at least one component"))
}

/// A directory, open. Everything below it is reached from this descriptor.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// For messages only; never opened again.
    path: PathBuf,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Dir {
    /// Opens a directory the admin named (DEST, the state directory, the fixed part of a
    /// pattern). Symlinks in it are followed: the admin's paths are trusted.
    pub fn open_trusted(path: &Path) -> io::Result<Dir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        )?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path it was reached by, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another descriptor of the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// `fstat` of the directory.
    pub fn stat(&self) -> io::Result<Stat> {
        Stat::of_fd(self)
    }

    /// What `name` (one component) is, without following it; `None` if it does not exist.
    pub fn stat_at(&self, name: impl AsRef<OsStr>) -> io::Result<Option<Stat>> {
        let name = one_name(name.as_ref())?;
        match nix::sys::stat::fstatat(self, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Stat::of(&st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Why opening `comps` failed, in words: which component is a symbolic link or not a
    /// directory. Only for the message; decided again by walking one name at a time.
    fn explain(&self, comps: &[&OsStr], e: Errno) -> io::Error {
        if !matches!(e, Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV) {
            return e.into();
        }
        let mut cur = match self.try_clone() {
            Ok(d) => d,
            Err(_) => return e.into(),
        };
        for (i, c) in comps.iter().enumerate() {
            let shown = || {
                let p: PathBuf = comps[..=i].iter().collect();
                self.path.join(p)
            };
            let last = i + 1 == comps.len();
            match cur.stat_at(c) {
                Ok(Some(st)) if st.kind == Kind::Symlink => {
                    return if last {
                        refused(SYMLINK_REFUSED)
                    } else {
                        refused(format!("{} {SYMLINK_REFUSED}", shown().display()))
                    };
                }
                Ok(Some(st)) if st.kind != Kind::Dir && !last => {
                    return refused(format!("{} {}", shown().display(), st.kind.describe()));
                }
                Ok(Some(st)) if st.kind != Kind::Dir && e == Errno::ENOTDIR => {
                    return refused(st.kind.describe());
                }
                Ok(Some(_)) if !last => match cur.open_dir(c) {
                    Ok(d) => cur = d,
                    Err(_) => break,
                },
                _ => break,
            }
        }
        if e == Errno::ELOOP {
            refused(format!(
                "a symbolic link on the way (it changed while it was looked at): {SYMLINK_REFUSED}"
            ))
        } else {
            e.into()
        }
    }

    /// Opens the directory `rel` below this one, following no symlink.
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<Dir> {
        let rel = rel.as_ref();
        let comps = components(rel)?;
        match open_beneath(self.as_fd(), &comps, dir_flags(), Mode::empty()) {
            Ok(fd) => Ok(Dir {
                fd,
                path: self.path.join(rel),
            }),
            Err(e) => Err(self.explain(&comps, e)),
        }
    }

    /// Opens the regular file `rel` below this one for reading, following no symlink. A FIFO,
    /// a device or anything else is refused (it is never read, and opening it never blocks).
    /// With `noatime`, its access time is left alone where the kernel allows it.
    pub fn open_file(&self, rel: impl AsRef<Path>, noatime: bool) -> io::Result<File> {
        let rel = rel.as_ref();
        let comps = components(rel)?;
        if comps.is_empty() {
            return Err(refused(Kind::Dir.describe()));
        }
        // Not even opened when it is plainly not a file (a device's open may do something).
        if let [parent @ .., last] = comps.as_slice() {
            if let Ok(Some(st)) = self.open_dir_comps(parent).and_then(|d| d.stat_at(last)) {
                if st.kind == Kind::Symlink {
                    return Err(refused(SYMLINK_REFUSED));
                }
                if st.kind != Kind::File {
                    return Err(refused(format!("{}: refused", st.kind.describe())));
                }
            }
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK;
        let fd = match open_beneath(
            self.as_fd(),
            &comps,
            flags
                | if noatime {
                    OFlag::O_NOATIME
                } else {
                    OFlag::empty()
                },
            Mode::empty(),
        ) {
            // O_NOATIME is for the owner and root only.
            Err(Errno::EPERM) if noatime => {
                open_beneath(self.as_fd(), &comps, flags, Mode::empty())
            }
            r => r,
        }
        .map_err(|e| self.explain(&comps, e))?;
        let file = File::from(fd);
        let st = Stat::of_fd(&file)?;
        if st.kind != Kind::File {
            return Err(refused(format!("{}: refused", st.kind.describe())));
        }
        Ok(file)
    }

    fn open_dir_comps(&self, comps: &[&OsStr]) -> io::Result<Dir> {
        if comps.is_empty() {
            return self.try_clone();
        }
        let rel: PathBuf = comps.iter().collect();
        self.open_dir(rel)
    }

    /// Reads the regular file `rel` whole, refusing one of more than `limit` bytes.
    pub fn read_small(&self, rel: impl AsRef<Path>, limit: u64) -> io::Result<Vec<u8>> {
        read_bounded(self.open_file(rel, false)?, limit)
    }

    /// The names in the directory (without `.` and `..`), with their type when the file system
    /// gives it for free.
    pub fn list(&self) -> io::Result<Vec<(OsString, Option<Kind>)>> {
        let mut d = nix::dir::Dir::openat(self, ".", dir_flags(), Mode::empty())?;
        let mut out = Vec::new();
        for e in d.iter() {
            let e = e?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            use nix::dir::Type;
            let kind = e.file_type().map(|t| match t {
                Type::File => Kind::File,
                Type::Directory => Kind::Dir,
                Type::Symlink => Kind::Symlink,
                Type::Fifo => Kind::Fifo,
                Type::Socket => Kind::Socket,
                Type::CharacterDevice | Type::BlockDevice => Kind::Device,
            });
            out.push((OsStr::from_bytes(name).to_os_string(), kind));
        }
        Ok(out)
    }

    /// Makes directory `name` (one component) with `mode` unless it exists, and opens it
    /// without following symlinks. Nothing is written when it exists.
    pub fn make_dir(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<Dir> {
        let name = one_name(name.as_ref())?;
        match self.open_dir(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match nix::sys::stat::mkdirat(self, name, Mode::from_bits_truncate(mode)) {
                    Ok(()) | Err(Errno::EEXIST) => self.open_dir(name),
                    Err(e) => Err(e.into()),
                }
            }
            r => r,
        }
    }

    /// Creates file `name` (one component) for writing: it must not exist, and a symlink
    /// there is not followed.
    pub fn create_new(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<File> {
        let name = one_name(name.as_ref())?;
        let fd = nix::fcntl::openat(
            self,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | base_flags(),
            Mode::from_bits_truncate(mode),
        )?;
        Ok(File::from(fd))
    }

    /// Renames `name` here to `to_name` in `to`.
    pub fn rename(
        &self,
        name: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        let (name, to_name) = (one_name(name.as_ref())?, one_name(to_name.as_ref())?);
        Ok(nix::fcntl::renameat(self, name, to, to_name)?)
    }

    /// Removes the name `name` (not a directory). A symlink is removed, not followed.
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = one_name(name.as_ref())?;
        Ok(nix::unistd::unlinkat(
            self,
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )?)
    }

    /// Takes `flock` on the directory without waiting: `Ok(None)` if another process holds a
    /// conflicting one. Held until the returned guard is dropped.
    pub fn try_lock(&self, exclusive: bool) -> io::Result<Option<DirLock>> {
        use nix::fcntl::{Flock, FlockArg};
        let arg = if exclusive {
            FlockArg::LockExclusiveNonblock
        } else {
            FlockArg::LockSharedNonblock
        };
        // A descriptor of its own, so that the lock is not shared with this `Dir`'s.
        let fd = nix::fcntl::openat(self, ".", dir_flags(), Mode::empty())?;
        match Flock::lock(fd, arg) {
            Ok(l) => Ok(Some(DirLock { _lock: l })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e.into()),
        }
    }

    /// Flushes the file system the directory is on (`syncfs`).
    pub fn sync_fs(&self) -> io::Result<()> {
        Ok(nix::unistd::syncfs(self)?)
    }
}

/// An `flock` on a directory, released when dropped.
pub struct DirLock {
    _lock: nix::fcntl::Flock<OwnedFd>,
}

/// `name` as one path component (no `/`, not `.`/`..`, not empty).
fn one_name(name: &OsStr) -> io::Result<&OsStr> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(refused(format!(
            "{} is not a single file name: refused",
            excerpt(b)
        )));
    }
    Ok(name)
}

/// Sets owner and mode of an open file or directory, each only when it differs (so that
/// nothing is written when all is already right). Returns whether anything changed.
pub fn set_owner_mode(fd: impl AsFd, owner: Option<(u32, u32)>, mode: u32) -> io::Result<bool> {
    let st = Stat::of_fd(fd.as_fd())?;
    let mut changed = false;
    if let Some((uid, gid)) = owner {
        if (st.uid, st.gid) != (uid, gid) {
            nix::unistd::fchown(
                fd.as_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )?;
            changed = true;
        }
    }
    if st.mode != mode {
        nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))?;
        changed = true;
    }
    Ok(changed)
}

fn read_bounded(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let size = file.metadata()?.len();
    if size > limit {
        return Err(too_big(size, limit));
    }
    let mut out = Vec::with_capacity(size as usize);
    // Bounded even if it grows while it is read.
    file.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(too_big(out.len() as u64, limit));
    }
    Ok(out)
}

fn too_big(size: u64, limit: u64) -> io::Error {
    refused(format!(
        "is {size} bytes, more than the {limit} allowed: refused"
    ))
}

/// Reads a list file the admin named (symlinks followed, as for any admin path), refusing
/// anything but a regular file, and one of more than `limit` bytes. A FIFO or a device is
/// refused at once, never read.
pub fn read_admin_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let file = File::from(fd);
    let st = Stat::of_fd(&file)?;
    if st.kind != Kind::File {
        return Err(refused(format!("{}: refused", st.kind.describe())));
    }
    read_bounded(file, limit)
}

/// A short excerpt of bytes from a file users control, fit to print: quoted, control
/// characters escaped (as `{:?}` does), at most 60 characters, and the length when it was cut.
pub fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 60;
    let text = String::from_utf8_lossy(bytes);
    let cut: String = text.chars().take(MAX).collect();
    if cut.len() < text.len() {
        format!("{cut:?}... ({} bytes)", bytes.len())
    } else {
        format!("{cut:?}")
    }
}

/// A path split where trust ends: `base` is the admin's (opened normally), `rel` is the
/// user's and walked without following symlinks (its first component by the rule for links
/// made by root, see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchored {
    pub base: PathBuf,
    pub rel: PathBuf,
}

impl Anchored {
    /// Splits `pattern` (with `%u` for the user) before its first component that holds `%u`;
    /// a pattern without `%u` is split before its last component.
    pub fn from_pattern(pattern: &str, user: &str) -> Anchored {
        let path = Path::new(pattern);
        let comps: Vec<Component<'_>> = path.components().collect();
        let at = comps
            .iter()
            .position(|c| c.as_os_str().as_bytes().windows(2).any(|w| w == b"%u"))
            .unwrap_or(comps.len().saturating_sub(1));
        let expand =
            |c: &Component<'_>| OsString::from(c.as_os_str().to_string_lossy().replace("%u", user));
        let base: PathBuf = comps[..at].iter().map(expand).collect();
        let rel: PathBuf = comps[at..].iter().map(expand).collect();
        Anchored {
            base: if base.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                base
            },
            rel,
        }
    }

    /// The whole path, for messages.
    pub fn path(&self) -> PathBuf {
        self.base.join(&self.rel)
    }

    /// The same anchor, `more` further down.
    pub fn join(&self, more: impl AsRef<Path>) -> Anchored {
        Anchored {
            base: self.base.clone(),
            rel: self.rel.join(more),
        }
    }

    /// The directory to walk from, and what to walk there: the base and `rel`, or for a user
    /// component that is a link made by root, its target's directory and the rest.
    fn start(&self) -> io::Result<(Dir, PathBuf)> {
        let base = Dir::open_trusted(&self.base)?;
        let comps = components(&self.rel)?;
        let Some((first, rest)) = comps.split_first() else {
            return Ok((base, PathBuf::new()));
        };
        let Some(st) = base.stat_at(first)? else {
            return Ok((base, self.rel.clone()));
        };
        if st.kind != Kind::Symlink {
            return Ok((base, self.rel.clone()));
        }
        let holder = base.stat()?;
        let me = crate::sys::euid();
        let admin = |uid: u32| uid == 0 || uid == me;
        if !(admin(st.uid) && admin(holder.uid) && holder.mode & 0o022 == 0) {
            return Err(refused(format!(
                "{} {SYMLINK_REFUSED} (only a link made by root in a directory no one else may write is followed)",
                base.path.join(first).display()
            )));
        }
        let target = PathBuf::from(OsStr::from_bytes(
            nix::fcntl::readlinkat(&base, *first)?.as_bytes(),
        ));
        let target = base.path.join(target);
        let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(refused(format!(
                "{} is a symbolic link to {}, which is not a file or directory name: refused",
                base.path.join(first).display(),
                target.display()
            )));
        };
        let mut rel = PathBuf::from(name);
        rel.extend(rest);
        Ok((Dir::open_trusted(dir)?, rel))
    }

    /// Opens the directory, following no symlink below the base.
    pub fn open_dir(&self) -> io::Result<Dir> {
        let (dir, rel) = self.start()?;
        let mut d = dir.open_dir(&rel)?;
        d.path = self.path();
        Ok(d)
    }

    /// Opens the regular file for reading, following no symlink below the base.
    pub fn open_file(&self, noatime: bool) -> io::Result<File> {
        let (dir, rel) = self.start()?;
        dir.open_file(&rel, noatime)
    }

    /// What the last component is, without opening it: its directory is reached without
    /// following a symlink, and it is not followed either. `None`: it does not exist.
    pub fn stat(&self) -> io::Result<Option<Stat>> {
        let (dir, rel) = self.start()?;
        let comps = components(&rel)?;
        let Some((last, parent)) = comps.split_last() else {
            return dir.stat().map(Some);
        };
        match dir.open_dir_comps(parent) {
            Ok(d) => d.stat_at(last),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn both(test: impl Fn()) {
        force_fallback(false);
        test();
        force_fallback(true);
        test();
        force_fallback(false);
    }

    #[test]
    fn walks_refuse_symlinks_anywhere() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("a/b")).unwrap();
        std::fs::write(p.join("a/b/f"), "x").unwrap();
        std::fs::create_dir_all(p.join("elsewhere")).unwrap();
        std::fs::write(p.join("elsewhere/f"), "secret").unwrap();
        symlink(p.join("elsewhere"), p.join("a/l")).unwrap();
        symlink(p.join("elsewhere/f"), p.join("a/b/lf")).unwrap();
        both(|| {
            let root = Dir::open_trusted(p).unwrap();
            assert_eq!(root.read_small("a/b/f", 10).unwrap(), b"x");
            assert_eq!(root.open_dir("a/./b").unwrap().path(), p.join("a/./b"));
            let e = root.open_file("a/l/f", false).unwrap_err().to_string();
            assert!(e.contains("a/l is a symbolic link"), "{e}");
            let e = root.open_dir("a/l").unwrap_err().to_string();
            assert!(e.contains(SYMLINK_REFUSED), "{e}");
            let e = root.open_file("a/b/lf", false).unwrap_err().to_string();
            assert!(e.contains(SYMLINK_REFUSED), "{e}");
            assert!(root.open_file("a/../elsewhere/f", false).is_err());
            assert!(root.open_file("/etc/passwd", false).is_err());
            let e = root.open_file("a/b/f/g", false).unwrap_err().to_string();
            assert!(e.contains("is a regular file"), "{e}");
            let e = root.open_file("a/b", false).unwrap_err().to_string();
            assert!(e.contains("is a directory"), "{e}");
            assert_eq!(
                root.open_file("a/b/none", false).unwrap_err().kind(),
                io::ErrorKind::NotFound
            );
        });
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&d.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        symlink("/dev/zero", d.path().join("zero")).unwrap();
        let root = Dir::open_trusted(d.path()).unwrap();
        let t = std::time::Instant::now();
        let e = root.read_small("fifo", 100).unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
        let e = root.read_small("zero", 100).unwrap_err().to_string();
        assert!(e.contains(SYMLINK_REFUSED), "{e}");
        let e = read_admin_file(Path::new("/dev/zero"), 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("device"), "{e}");
        let e = read_admin_file(&d.path().join("fifo"), 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("FIFO"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        std::fs::write(d.path().join("big"), vec![b'x'; 101]).unwrap();
        let e = root.read_small("big", 100).unwrap_err().to_string();
        assert!(e.contains("101 bytes, more than the 100"), "{e}");
    }

    #[test]
    fn creates_renames_and_removes_under_descriptors() {
        let d = tempfile::tempdir().unwrap();
        let root = Dir::open_trusted(d.path()).unwrap();
        let a = root.make_dir("a", 0o700).unwrap();
        let again = root.make_dir("a", 0o700).unwrap();
        assert_eq!(a.stat().unwrap().ino, again.stat().unwrap().ino);
        use std::io::Write;
        a.create_new("f", 0o600).unwrap().write_all(b"hi").unwrap();
        assert!(a.create_new("f", 0o600).is_err());
        symlink("/etc/passwd", d.path().join("a/l")).unwrap();
        assert!(a.create_new("l", 0o600).is_err());
        assert!(root.make_dir("a/b", 0o700).is_err());
        symlink(d.path(), d.path().join("dl")).unwrap();
        let e = root.make_dir("dl", 0o700).unwrap_err().to_string();
        assert!(e.contains(SYMLINK_REFUSED), "{e}");
        a.rename("f", &root, "g").unwrap();
        assert_eq!(std::fs::read(d.path().join("g")).unwrap(), b"hi");
        a.remove_file("l").unwrap();
        assert!(std::fs::symlink_metadata(d.path().join("a/l")).is_err());
        let mut names: Vec<_> = root.list().unwrap();
        names.sort();
        assert_eq!(
            names,
            [
                ("a".into(), Some(Kind::Dir)),
                ("dl".into(), Some(Kind::Symlink)),
                ("g".into(), Some(Kind::File))
            ]
        );
        assert!(set_owner_mode(&a, None, 0o750).unwrap());
        assert!(!set_owner_mode(&a, None, 0o750).unwrap());
        assert_eq!(a.stat().unwrap().mode, 0o750);
        let lock = root.try_lock(true).unwrap();
        assert!(lock.is_some());
        assert!(root.try_lock(false).unwrap().is_none());
        drop(lock);
        assert!(root.try_lock(false).unwrap().is_some());
    }

    #[test]
    fn patterns_split_where_the_user_starts() {
        let a = Anchored::from_pattern("/var/spool/mail/%u", "alice");
        assert_eq!(
            (a.base.as_path(), a.rel.as_path()),
            (Path::new("/var/spool/mail"), Path::new("alice"))
        );
        let a = Anchored::from_pattern("/srv/%u/home/%u.d", "bob").join("mail/Sent");
        assert_eq!(
            (a.base.as_path(), a.rel.as_path()),
            (Path::new("/srv"), Path::new("bob/home/bob.d/mail/Sent"))
        );
        let a = Anchored::from_pattern("/var/mail/inbox", "x");
        assert_eq!(a.path(), Path::new("/var/mail/inbox"));
        assert_eq!(a.rel, Path::new("inbox"));
    }

    #[test]
    fn a_home_linked_by_root_is_followed_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("home")).unwrap();
        std::fs::create_dir_all(p.join("data/alice/mail")).unwrap();
        std::fs::write(p.join("data/alice/mail/Sent"), "x").unwrap();
        symlink(p.join("data/alice"), p.join("home/alice")).unwrap();
        symlink("../data/alice", p.join("home/rel")).unwrap();
        let at = Anchored::from_pattern(&format!("{}/home/%u", p.display()), "alice");
        // The link and its directory are ours (root's, in the tests), and no one else's.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p.join("home"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(at.join("mail/Sent").open_file(false).is_ok());
        assert!(at.open_dir().is_ok());
        let rel = Anchored::from_pattern(&format!("{}/home/%u", p.display()), "rel");
        assert!(rel.join("mail/Sent").open_file(false).is_ok());
        // A directory others may write: the link is refused.
        std::fs::set_permissions(p.join("home"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = at
            .join("mail/Sent")
            .open_file(false)
            .unwrap_err()
            .to_string();
        assert!(e.contains(SYMLINK_REFUSED), "{e}");
        // A link below the home is never followed.
        std::fs::set_permissions(p.join("home"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            at.join("mail/Sent").stat().unwrap().map(|s| s.kind),
            Some(Kind::File)
        );
        assert_eq!(at.join("mail/none").stat().unwrap(), None);
        assert_eq!(at.join("none/x").stat().unwrap(), None);
        symlink(p.join("data/alice/mail"), p.join("data/alice/m")).unwrap();
        assert!(at.join("m/Sent").open_file(false).is_err());
        assert!(at.join("m/Sent").stat().is_err());
        assert_eq!(
            at.join("m").stat().unwrap().map(|s| s.kind),
            Some(Kind::Symlink)
        );
    }

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt(b"abc"), "\"abc\"");
        let long = excerpt(&[b'x'; 1000]);
        assert!(
            long.ends_with("\"... (1000 bytes)") && long.len() < 100,
            "{long}"
        );
        assert_eq!(excerpt(b"a\x1b[2Jb\n"), "\"a\\u{1b}[2Jb\\n\"");
    }
}
