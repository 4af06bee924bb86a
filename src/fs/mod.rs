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
//! The parts:
//! - `inode`: what each inode number names;
//! - `reading`: opening a folder's mbox through the safe walk, indexing it whole or only what was
//!   appended, under the writers' locks;
//! - `snapshot`: the folder as last read, with the UIDs served (`uids`: the promise to clients'
//!   caches, kept in the state directory);
//! - `view`: attributes, names, listings and bytes;
//! - `overlay`: Dovecot's own files, kept in the state directory, and `quota`, the bound on them;
//! - `writable` and `changes`: what testers do on a `--writable` mount, and where it is kept.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::index::{FolderIndex, Msg};
use crate::mbox::{self, FileId, IndexOptions, ReadMode};
use crate::model::{self, Folder, Subdir, Tree, UserTree};
use crate::source::Owner;

mod changes;
mod inode;
mod overlay;
mod quota;
mod reading;
mod snapshot;
mod uids;
mod view;
mod writable;

pub use changes::{Counts as TesterChanges, count as count_changes, discard as discard_changes};
use inode::{Control, Node, OverlayInodes, sub_offset};
pub use overlay::merge_uidlist;
use overlay::overlay_name_ok;
pub use quota::parse_size;
use reading::{Fingerprint, Indexed, Source, fingerprint, hash_messages};
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
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
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
    /// How many mbox files are kept open at once; the others are opened again when read.
    pub max_open: usize,
    /// Testers may change mail (kept in the state directory, never in the mbox files).
    pub writable: bool,
    /// What Dovecot and testers may write into the state directory per user, in bytes (0: no
    /// bound).
    pub state_quota: u64,
}

/// Reads the user and folder lists again, and lays out the trees.
pub struct Lists {
    /// The list files: a change to any of them makes the view read them again.
    pub files: Vec<PathBuf>,
    /// Also read them again this often (folders found under the homes, without a folderlist).
    pub every: Option<Duration>,
    pub load: Box<dyn Fn() -> std::result::Result<Tree, String> + Send + Sync>,
}

/// What the kernel must forget after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Attributes and cached pages of an inode.
    Inode(Ino),
    /// A name in a directory.
    Entry(Ino, OsString),
}

/// One folder of the view. Folders are never removed from the table (their inode numbers stay
/// theirs); one that leaves the lists, or that testers deleted, is only hidden.
struct FolderState {
    user: usize,
    /// As the lists made it (a folder testers created has no source).
    folder: Folder,
    /// The mbox, where there is one (present or not yet).
    path: Option<PathBuf>,
    /// Where its overlay files are: Dovecot's files, and on a writable mount the messages
    /// testers added (in `cur/ new/ tmp/`).
    state_dir: PathBuf,
    /// Made by a tester (the id of its state directory), not from the lists.
    created: Option<u32>,
    /// The directory name shown now (testers may rename a folder).
    shown_dir: RwLock<String>,
    /// No longer in the lists.
    gone: AtomicBool,
    /// Deleted by a tester.
    deleted: AtomicBool,
    /// Being deleted by Dovecot (renamed out of the way): shown empty.
    trashed: AtomicBool,
    /// The mbox was there and acceptable when last looked at.
    present: AtomicBool,
    current: RwLock<Option<Arc<Snapshot>>>,
    checked: Mutex<Option<Instant>>,
    /// Held while the folder is (re)indexed, so it happens once; holds the UID log.
    indexing: Mutex<UidBook>,
    /// What was last said about this folder in the log (said once, until it changes).
    said: Mutex<String>,
    /// A warning that the writers' locks could not be had was logged (until they are had).
    lock_warned: AtomicBool,
    /// Testers' changes to its messages (writable mounts; read on first use).
    changes: Mutex<Option<changes::MessageChanges>>,
    /// Counts testers' changes to its listings (writable mounts): a listing made for an
    /// earlier count is made again.
    version: AtomicU64,
    /// Its directory in the state directory was made.
    state_made: AtomicBool,
    /// The `dovecot-uidlist` last shown, and what it was made from.
    uidlist: Mutex<Option<UidlistCache>>,
}

/// A `dovecot-uidlist` as shown, with what it was made from.
struct UidlistCache {
    /// Weak: the cache keeps no old snapshot alive (and, while it holds this, the snapshot's
    /// memory is not reused, so the pointer names it).
    snap: std::sync::Weak<Snapshot>,
    /// Testers' change count.
    version: u64,
    /// Dovecot's copy: inode, size, mtime.
    theirs: Option<(u64, u64, i64, i64)>,
    bytes: Arc<Vec<u8>>,
}

impl FolderState {
    fn new(
        user: usize,
        folder: Folder,
        path: Option<PathBuf>,
        state_dir: PathBuf,
        created: Option<u32>,
    ) -> FolderState {
        FolderState {
            user,
            shown_dir: RwLock::new(folder.dir.clone()),
            folder,
            path,
            state_dir,
            created,
            gone: AtomicBool::new(true),
            deleted: AtomicBool::new(false),
            trashed: AtomicBool::new(false),
            present: AtomicBool::new(false),
            current: RwLock::new(None),
            checked: Mutex::new(None),
            indexing: Mutex::new(UidBook::default()),
            said: Mutex::new(String::new()),
            lock_warned: AtomicBool::new(false),
            changes: Mutex::new(None),
            version: AtomicU64::new(0),
            state_made: AtomicBool::new(false),
            uidlist: Mutex::new(None),
        }
    }

    /// Testers changed what its listings show.
    fn changed(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The directory name shown now.
    fn dir(&self) -> String {
        self.shown_dir
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A folder's served UIDs: its log in the state directory, and the generation in force.
#[derive(Default)]
struct UidBook {
    log: Option<uids::Log>,
    generation: Option<uids::Generation>,
    /// What the log held when it was opened, until the first snapshot takes over.
    loaded: Option<Vec<(u32, uids::Hash)>>,
}

/// One user of the view.
struct UserEntry {
    tree: Arc<UserTree>,
    /// The user's folders (INBOX first).
    folders: Vec<usize>,
    /// Folder directories (`.Name`) shown, by name.
    by_dir: HashMap<String, usize>,
    gone: bool,
    /// Testers' folder changes (writable mounts).
    folder_log: Option<changes::FolderLog>,
}

/// The users and folders, which only grow.
#[derive(Default)]
struct Table {
    users: Vec<UserEntry>,
    folders: Vec<Arc<FolderState>>,
}

/// An open directory: its entries, made once when it was opened, so that reading it in pieces
/// costs what each piece returns.
#[derive(Clone)]
struct Handle {
    entries: Arc<Vec<DirEntry>>,
    /// For `cur/` and `new/`: the snapshot the entries come from.
    snap: Option<Arc<Snapshot>>,
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
    opts: FsOptions,
    lists: Option<Lists>,
    /// When the lists were last looked at and last read, and their identities then.
    lists_seen: Mutex<(Instant, Instant, Vec<Option<FileId>>)>,
    table: RwLock<Table>,
    /// Slot `s` belongs to folder `slots[s - 1]`.
    slots: Mutex<Vec<usize>>,
    overlay_inos: Mutex<OverlayInodes>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_handle: AtomicU64,
    invalidations: Mutex<Option<std::sync::mpsc::Sender<Invalidation>>>,
    /// Open overlay files by inode, for reads and writes that come without a file handle.
    overlay_files: Mutex<lru::LruCache<Ino, Arc<File>>>,
    /// Open mbox files by folder, at most `max_open` of them.
    sources: Mutex<lru::LruCache<usize, (FileId, Arc<File>)>>,
    /// What each user has in the state directory.
    usage: Mutex<quota::Usage>,
    /// Held for the life of the mount: one mount per state directory.
    _state_lock: File,
    started: SystemTime,
}

impl MailFs {
    /// A view of `tree`; with `lists`, users and folders added to the lists later appear too.
    pub fn new(tree: Tree, opts: FsOptions, lists: Option<Lists>) -> io::Result<MailFs> {
        std::fs::create_dir_all(&opts.state_dir)?;
        // Root's alone: what is in it is written by root on the users' behalf, and no user lists
        // another's part (each is made 0700 too).
        let owner = std::fs::metadata(&opts.state_dir)?.uid();
        if owner != crate::sys::euid() {
            return Err(io::Error::other(format!(
                "owned by uid {owner}, not by this process's (uid {}): refused",
                crate::sys::euid()
            )));
        }
        std::fs::set_permissions(&opts.state_dir, std::fs::Permissions::from_mode(0o700))?;
        let state_lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(opts.state_dir.join(".mboxfs.lock"))?;
        if !crate::lock::try_exclusive(&state_lock) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "another mboxfs mount uses this state directory",
            ));
        }
        let lists_seen = lists
            .as_ref()
            .map_or_else(Vec::new, |l| l.files.iter().map(|f| list_id(f)).collect());
        let max_open = std::num::NonZeroUsize::new(opts.max_open.max(1)).expect("non-zero");
        let fs = MailFs {
            opts,
            lists,
            lists_seen: Mutex::new((Instant::now(), Instant::now(), lists_seen)),
            table: RwLock::new(Table::default()),
            slots: Mutex::new(Vec::new()),
            overlay_inos: Mutex::new(OverlayInodes::default()),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            invalidations: Mutex::new(None),
            overlay_files: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(256).expect("non-zero"),
            )),
            sources: Mutex::new(lru::LruCache::new(max_open)),
            usage: Mutex::new(quota::Usage::default()),
            _state_lock: state_lock,
            started: SystemTime::now() - Duration::from_secs(1),
        };
        fs.merge(tree);
        Ok(fs)
    }

    /// The users the view shows, by name.
    pub fn user_names(&self) -> Vec<String> {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        t.users
            .iter()
            .filter(|u| !u.gone)
            .map(|u| u.tree.name.clone())
            .collect()
    }

    /// Folder `g`.
    fn state(&self, g: usize) -> Option<Arc<FolderState>> {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        t.folders.get(g).cloned()
    }

    fn user_tree(&self, u: usize) -> Arc<UserTree> {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        t.users[u].tree.clone()
    }

    fn owner(&self, st: &FolderState) -> Owner {
        self.user_tree(st.user).owner
    }

    fn block(g: usize) -> Ino {
        FIRST_BLOCK + g as u64 * BLOCK
    }

    /// Adds what `tree` has and the table has not; hides what the table has and `tree` has not.
    /// Returns the directory entries that appeared or went (for the kernel to forget).
    fn merge(&self, tree: Tree) -> Vec<Invalidation> {
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        let mut changed = Vec::new();
        let mut listed_users = std::collections::HashSet::new();
        for user in tree.users {
            let user = Arc::new(user);
            let u = match t.users.iter().position(|e| e.tree.name == user.name) {
                Some(u) => u,
                None => {
                    t.users.push(UserEntry {
                        tree: user.clone(),
                        folders: Vec::new(),
                        by_dir: HashMap::new(),
                        gone: true,
                        folder_log: None,
                    });
                    t.users.len() - 1
                }
            };
            listed_users.insert(u);
            if std::mem::replace(&mut t.users[u].gone, false) {
                changed.push(Invalidation::Entry(ROOT, user.name.clone().into()));
            }
            let user_state = self.opts.state_dir.join(&user.name);
            let mut listed = std::collections::HashSet::new();
            for (i, f) in user.folders.iter().enumerate() {
                // The same folder: the same source under the same name the lists give it.
                let existing = t.users[u].folders.iter().copied().find(|&g| {
                    let old = &t.folders[g];
                    old.created.is_none()
                        && old.folder.dir == f.dir
                        && old.folder.uw_name == f.uw_name
                        && (i == 0 || old.path == f.path)
                });
                let g = match existing {
                    Some(g) => g,
                    None => {
                        // Opened through the folder's safe walk (`Folder::open_source`).
                        let path = if i == 0 {
                            Some(user.inbox.clone())
                        } else {
                            f.path.clone()
                        };
                        let state_dir = user_state.join(if i == 0 { "_INBOX" } else { &f.dir });
                        let g = t.folders.len();
                        t.folders.push(Arc::new(FolderState::new(
                            u,
                            f.clone(),
                            path,
                            state_dir,
                            None,
                        )));
                        t.users[u].folders.push(g);
                        if i > 0 {
                            match t.users[u].by_dir.get(&f.dir) {
                                Some(_) => log::warn!(
                                    "{}: folder {} is not shown: a folder made by a tester has its name",
                                    user.name,
                                    f.display
                                ),
                                None => {
                                    t.users[u].by_dir.insert(f.dir.clone(), g);
                                }
                            }
                        }
                        g
                    }
                };
                if t.folders[g].gone.swap(false, Ordering::Relaxed) && i > 0 {
                    let inbox = t.users[u].folders[0];
                    changed.push(Invalidation::Entry(
                        Self::block(inbox),
                        t.folders[g].dir().into(),
                    ));
                }
                listed.insert(g);
            }
            for &g in &t.users[u].folders {
                let st = &t.folders[g];
                if st.created.is_none()
                    && !listed.contains(&g)
                    && !st.gone.swap(true, Ordering::Relaxed)
                {
                    let inbox = t.users[u].folders[0];
                    changed.push(Invalidation::Entry(Self::block(inbox), st.dir().into()));
                }
            }
            t.users[u].tree = user;
            if self.opts.writable && t.users[u].folder_log.is_none() {
                self.replay_folder_log(&mut t, u);
            }
        }
        for (u, e) in t.users.iter_mut().enumerate() {
            if !listed_users.contains(&u) && !std::mem::replace(&mut e.gone, true) {
                changed.push(Invalidation::Entry(ROOT, e.tree.name.clone().into()));
            }
        }
        changed
    }

    /// Applies testers' folder changes (created, renamed, deleted folders) to user `u`.
    fn replay_folder_log(&self, t: &mut Table, u: usize) {
        let name = t.users[u].tree.name.clone();
        let path = changes::user_dir(&self.opts.state_dir, &name).join("folders");
        let log = match changes::FolderLog::open(&path) {
            Ok(l) => l,
            Err(e) => {
                log::error!("{name}: testers' folder changes cannot be read ({e}); not shown");
                return;
            }
        };
        for ev in &log.events {
            match ev {
                changes::FolderEvent::Created { dir, id } => {
                    if t.users[u].by_dir.contains_key(dir) {
                        continue;
                    }
                    let g = self.add_created(t, u, dir, *id);
                    t.folders[g].gone.store(false, Ordering::Relaxed);
                }
                changes::FolderEvent::Renamed { from, to } => {
                    let entry = &mut t.users[u];
                    if entry.by_dir.contains_key(to) {
                        continue;
                    }
                    if let Some(g) = entry.by_dir.remove(from) {
                        entry.by_dir.insert(to.clone(), g);
                        *t.folders[g]
                            .shown_dir
                            .write()
                            .unwrap_or_else(|e| e.into_inner()) = to.clone();
                    }
                }
                changes::FolderEvent::Deleted { dir } => {
                    if let Some(g) = t.users[u].by_dir.remove(dir) {
                        t.folders[g].deleted.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        t.users[u].folder_log = Some(log);
    }

    /// A folder made by a tester, shown as `dir`; its files are in the state directory.
    fn add_created(&self, t: &mut Table, u: usize, dir: &str, id: u32) -> usize {
        let user = t.users[u].tree.clone();
        let folder = Folder::created(&user.name, dir);
        let state_dir = self
            .opts
            .state_dir
            .join(&user.name)
            .join(changes::CREATED_DIR)
            .join(id.to_string());
        let g = t.folders.len();
        t.folders.push(Arc::new(FolderState::new(
            u,
            folder,
            None,
            state_dir,
            Some(id),
        )));
        t.users[u].folders.push(g);
        t.users[u].by_dir.insert(dir.to_string(), g);
        g
    }

    /// Reads the lists again when they changed (at most once per recheck interval).
    fn reload_lists(&self) {
        let Some(lists) = &self.lists else {
            return;
        };
        {
            let mut seen = self.lists_seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.0.elapsed() < self.opts.recheck.max(Duration::from_millis(200)) {
                return;
            }
            let ids: Vec<Option<FileId>> = lists.files.iter().map(|f| list_id(f)).collect();
            let due = lists.every.is_some_and(|every| seen.1.elapsed() >= every);
            let changed = ids != seen.2;
            seen.0 = Instant::now();
            if !changed && !due {
                return;
            }
            seen.1 = Instant::now();
            seen.2 = ids;
        }
        match (lists.load)() {
            Ok(tree) => {
                for p in tree.all_problems() {
                    if p.severity >= crate::source::Severity::Warning {
                        log::warn!("{p}");
                    }
                }
                let changed = self.merge(tree);
                if !changed.is_empty() {
                    log::info!("lists read again: {} names appeared or went", changed.len());
                }
                for inv in changed {
                    self.send(inv);
                }
            }
            Err(e) => {
                log::error!("the lists changed but cannot be read: {e}; keeping the old ones")
            }
        }
    }

    /// Reads every folder once, in the background after mounting, so that the first client to
    /// open a folder does not wait for its mbox to be read. Folders already read are skipped;
    /// one being read by a client is waited for, not read twice.
    pub fn warm_up(&self) {
        let started = Instant::now();
        let mut g = 0;
        let mut read = 0;
        while let Some(st) = self.state(g) {
            let fresh = st
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_none();
            if fresh && !st.gone.load(Ordering::Relaxed) && st.path.is_some() {
                let _ = self.snapshot_of(g, &st);
                read += 1;
            }
            g += 1;
        }
        log::info!(
            "{read} folders read in {:.1?} after mounting",
            started.elapsed()
        );
    }

    /// Logs `what` about a folder once (again only after something else was said).
    fn say(&self, st: &FolderState, level: log::Level, what: String) {
        let mut said = st.said.lock().unwrap_or_else(|e| e.into_inner());
        if *said != what {
            log::log!(level, "{what}");
            *said = what;
        }
    }

    /// Free space as the state directory's file system has it.
    pub fn statfs(&self) -> (u64, u64, u64, u64, u64, u32) {
        crate::sys::statvfs(&self.opts.state_dir).unwrap_or((0, 0, 0, 0, 0, 4096))
    }
}

/// The file of a base folder's records in the state directory: `<key>.uids` (served UIDs) and
/// `<key>.changes` (testers' changes), the key naming its mbox (INBOX, or its UW name).
fn folder_file(state: &Path, user: &str, uw_name: Option<&[u8]>, ext: &str) -> PathBuf {
    let key = xxhash_rust::xxh3::xxh3_64(uw_name.unwrap_or(b"INBOX"));
    changes::user_dir(state, user).join(format!("{key:016x}.{ext}"))
}

/// The file of a folder's served UIDs in the state directory.
fn uid_log_path(state: &Path, user: &str, uw_name: Option<&[u8]>) -> PathBuf {
    folder_file(state, user, uw_name, "uids")
}

/// The UIDVALIDITY a mount with this state directory serves for a folder, if it served it.
pub fn served_uidvalidity(state: &Path, user: &str, uw_name: Option<&[u8]>) -> Option<u32> {
    uids::read_generation(&uid_log_path(state, user, uw_name)).map(|g| g.uidvalidity)
}

/// The identity of a list file (`None` if it cannot be looked at).
fn list_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| FileId::of(&m))
}
