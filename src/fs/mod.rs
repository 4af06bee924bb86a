//! The mounted view: the [`model`](crate::model) trees as a file system, without any FUSE types
//! (the adapter in `fuse.rs` is thin, so this can be tested without FUSE in the loop).
//!
//! Layout, per user: `<user>/` is INBOX's folder directory, `<user>/.Name/` the others. A folder
//! directory holds `cur/ new/ tmp/` (read-only: 0500), the generated control files, and any file
//! Dovecot itself creates there (indexes, lock files, uidlist rewrites), which live in the state
//! directory (the "overlay"). Writes anywhere else are refused with EACCES, which is how Dovecot
//! recognises a read-only maildir (`[READ-ONLY]`, no errors logged).
//!
//! Inodes: 1 is the root; each folder has a block of 8 inodes (its directory, `cur`, `new`,
//! `tmp`, and control files); a message is `slot << 32 | uid`, where a slot is one generation of
//! one folder (a new slot when the mbox was recreated or a UID came to mean another message, so
//! the kernel never serves cached bytes of one message under another's name); overlay files
//! count down from `1 << 63`.
//!
//! The parts: `inode` (what each inode number names), `snapshot` (indexing an mbox and
//! following it as it changes), `view` (attributes, names, listings and bytes) and
//! `overlay` (Dovecot's own files, kept in the state directory).
//!
//! Each mbox is indexed on first use and looked at again (a `stat`) when its snapshot is older
//! than the recheck interval. Message bytes are read with `pread` from the snapshot's open file,
//! and the file's identity is checked after every read: bytes read while the mbox changed are
//! never returned.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::index::{FolderIndex, Msg};
use crate::mbox::{self, FileId, IndexOptions, ReadMode};
use crate::model::{self, Folder, Subdir, Tree};
use crate::source::Owner;

mod inode;
mod overlay;
mod snapshot;
mod view;

use inode::{Control, Node, OverlayInodes, sub_offset};
pub use overlay::merge_uidlist;
use overlay::{overlay_name_ok, state_path};
use snapshot::fingerprint;
pub use snapshot::{SETTLE, SETTLE_COMPLETE, Snapshot};

pub type Ino = u64;
pub const ROOT: Ino = 1;
const BLOCK: u64 = 8;
const FIRST_BLOCK: u64 = 2;
const OVERLAY_BASE: u64 = 1 << 63;

/// An errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const EXDEV: Errno = Errno(libc::EXDEV);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
}

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

pub type Result<T> = std::result::Result<T, Errno>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// What `stat` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    /// How long the kernel may keep these attributes.
    pub ttl: Duration,
    /// How long the kernel may keep the name that led here. Names that change are invalidated
    /// when the change is noticed, so this can be long.
    pub entry_ttl: Duration,
}

/// How long what does not change (or is invalidated when it does) may be cached.
const LONG_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long directory attributes are cached: their `stat` is what makes the view look at the
/// mbox again, so it must reach the view every so often.
const SHORT_TTL: Duration = Duration::from_secs(1);
/// How long the kernel may remember that a name does not exist.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Settings of a mount.
#[derive(Clone, Debug)]
pub struct FsOptions {
    pub index: IndexOptions,
    pub state_dir: PathBuf,
    /// How long a folder's snapshot is trusted before its mbox is looked at again.
    pub recheck: Duration,
    pub trust_owners: bool,
    pub lock: crate::lock::LockMode,
}

/// What the kernel must forget after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Attributes and cached pages of an inode.
    Inode(Ino),
    /// A name in a directory.
    Entry(Ino, OsString),
}

struct FolderState {
    user: usize,
    folder: usize,
    current: RwLock<Option<Arc<Snapshot>>>,
    checked: Mutex<Option<Instant>>,
    /// Held while the folder is (re)indexed, so it happens once.
    indexing: Mutex<()>,
}

/// An open `cur/` or `new/`: the snapshot its listing comes from.
enum Handle {
    Dir(Option<Arc<Snapshot>>),
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: Kind,
    pub name: OsString,
}

/// The file system.
pub struct MailFs {
    tree: Tree,
    opts: FsOptions,
    /// Folder `g` (all users' folders, in order).
    folders: Vec<FolderState>,
    /// `(user, folder) -> g`.
    first_of_user: Vec<usize>,
    /// Slot `s` belongs to folder `slots[s - 1]`.
    slots: Mutex<Vec<usize>>,
    overlay_inos: Mutex<OverlayInodes>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_handle: AtomicU64,
    invalidations: Mutex<Option<std::sync::mpsc::Sender<Invalidation>>>,
    /// Open overlay files by inode, for reads and writes that come without a file handle.
    overlay_files: Mutex<lru::LruCache<Ino, Arc<File>>>,
    started: SystemTime,
}

impl MailFs {
    pub fn new(tree: Tree, opts: FsOptions) -> io::Result<MailFs> {
        let mut folders = Vec::new();
        let mut first_of_user = Vec::new();
        for (u, user) in tree.users.iter().enumerate() {
            first_of_user.push(folders.len());
            for f in 0..user.folders.len() {
                folders.push(FolderState {
                    user: u,
                    folder: f,
                    current: RwLock::new(None),
                    checked: Mutex::new(None),
                    indexing: Mutex::new(()),
                });
            }
        }
        // The state directory is root's alone (0700), and so is each user's part in it: no user
        // lists another's. It is made from its descriptor; a folder whose part cannot be made
        // (a name too long, say) is logged, and never stops the mount for everyone.
        let state = crate::safe::Dir::open_trusted(&opts.state_dir)?;
        let st = state.stat()?;
        if st.uid != crate::sys::euid() {
            return Err(io::Error::other(format!(
                "owned by uid {}, not by this process's (uid {}): refused",
                st.uid,
                crate::sys::euid()
            )));
        }
        crate::safe::set_owner_mode(&state, None, 0o700)?;
        for user in &tree.users {
            let made = state.make_dir(&user.name, 0o700).and_then(|u| {
                crate::safe::set_owner_mode(&u, None, 0o700)?;
                Ok(u)
            });
            let udir = match made {
                Ok(d) => d,
                Err(e) => {
                    log::error!(
                        "state directory {}/{}: {e}; Dovecot cannot keep files for {0}",
                        opts.state_dir.display(),
                        user.name
                    );
                    continue;
                }
            };
            for f in user.folders.iter().filter(|f| f.refused.is_none()) {
                let rel = state_path(Path::new(""), &user.name, f);
                let name = rel.file_name().unwrap_or_default();
                let r = udir
                    .make_dir(name, 0o700)
                    .and_then(|d| crate::safe::set_owner_mode(&d, None, 0o700));
                if let Err(e) = r {
                    log::error!(
                        "state directory {}: {e}; Dovecot cannot keep files for {}/{}",
                        opts.state_dir.join(&rel).display(),
                        user.name,
                        f.display
                    );
                }
            }
        }
        Ok(MailFs {
            tree,
            opts,
            folders,
            first_of_user,
            slots: Mutex::new(Vec::new()),
            overlay_inos: Mutex::new(OverlayInodes::default()),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            invalidations: Mutex::new(None),
            overlay_files: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(256).expect("non-zero"),
            )),
            started: SystemTime::now() - Duration::from_secs(1),
        })
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    fn folder(&self, g: usize) -> &Folder {
        let s = &self.folders[g];
        &self.tree.users[s.user].folders[s.folder]
    }

    fn owner(&self, g: usize) -> Owner {
        self.tree.users[self.folders[g].user].owner
    }

    fn block(g: usize) -> Ino {
        FIRST_BLOCK + g as u64 * BLOCK
    }

    /// Free space as the state directory's file system has it.
    pub fn statfs(&self) -> (u64, u64, u64, u64, u64, u32) {
        crate::sys::statvfs(&self.opts.state_dir).unwrap_or((0, 0, 0, 0, 0, 4096))
    }
}
