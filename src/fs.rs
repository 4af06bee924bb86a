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
use crate::source::{self, Owner};

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

/// One generation of one folder, as indexed.
pub struct Snapshot {
    /// Every message read so far. Only the first `shown` are in the view: the last one is held
    /// back while it may still be being written.
    pub index: Arc<FolderIndex>,
    shown: usize,
    /// The last message is held back: look again once the file has been quiet this long.
    provisional: Option<Duration>,
    /// The UIDVALIDITY the mbox itself gives (the view's differs after a UID was reused).
    source_uidvalidity: u32,
    /// The source, open, for reading message bytes.
    file: Option<Arc<File>>,
    id: Option<FileId>,
    /// Fingerprints of the bytes an append leaves alone.
    fp: Option<Fingerprint>,
    slot: u32,
    /// The mtime shown for the folder's directories.
    mtime: SystemTime,
    /// Messages in `cur/` and `new/` (positions in `index.messages`).
    cur: Vec<u32>,
    new: Vec<u32>,
    /// Our `dovecot-uidlist`, made on first use.
    uidlist: std::sync::OnceLock<Vec<u8>>,
}

impl Snapshot {
    fn listing(&self, sub: Subdir) -> &[u32] {
        match sub {
            Subdir::Cur => &self.cur,
            Subdir::New => &self.new,
            Subdir::Tmp => &[],
        }
    }

    /// The messages in the view.
    pub fn messages(&self) -> &[Msg] {
        &self.index.messages[..self.shown]
    }

    fn position(&self, uid: u32) -> Option<usize> {
        self.messages().binary_search_by_key(&uid, |m| m.uid).ok()
    }

    fn by_uid(&self, uid: u32) -> Option<&Msg> {
        self.position(uid).map(|i| &self.messages()[i])
    }
}

/// Hashes of the start of the file, of the end, and of the start of the last message: if an
/// mbox grew and these are unchanged, mail was appended (anything else is a rewrite).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    head: u64,
    tail: u64,
    last: u64,
}

const FINGERPRINT_SPAN: u64 = 4096;

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn hash_range(file: &File, start: u64, len: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, start)?;
    Ok(fnv64(&buf))
}

fn fingerprint(file: &File, len: u64, last_from: Option<u64>) -> io::Result<Fingerprint> {
    let span = len.min(FINGERPRINT_SPAN);
    let last = match last_from {
        Some(at) if at < len => hash_range(file, at, (len - at).min(FINGERPRINT_SPAN))?,
        _ => 0,
    };
    Ok(Fingerprint {
        head: hash_range(file, 0, span)?,
        tail: hash_range(file, len - span, span)?,
        last,
    })
}

/// Whether `file` (of length `len`) ends with a blank line, as a finished delivery does.
fn ends_with_blank_line(file: &File, len: u64) -> bool {
    let span = len.min(4);
    let mut buf = vec![0u8; span as usize];
    file.read_exact_at(&mut buf, len - span).is_ok()
        && (buf.ends_with(b"\n\n") || buf.ends_with(b"\n\r\n"))
}

/// How long a file must be left alone before its last message is trusted to be complete, when
/// the writers' locks could not be had or the file does not end like a finished delivery.
pub const SETTLE: Duration = Duration::from_secs(1);
/// The same when the locks were had and the file ends like a finished delivery (a writer that
/// takes no lock may still be between two writes of one message).
pub const SETTLE_COMPLETE: Duration = Duration::from_millis(100);

/// What the kernel must forget after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Attributes and cached pages of an inode.
    Inode(Ino),
    /// A name in a directory.
    Entry(Ino, OsString),
}

/// A freshly read folder, before it becomes a snapshot.
struct Indexed {
    index: FolderIndex,
    file: Arc<File>,
    id: FileId,
    fp: Option<Fingerprint>,
    /// The writers' locks were had and the file ends like a finished delivery.
    complete: bool,
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

/// A node, decoded from its inode number.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Root,
    FolderDir(usize),
    Sub(usize, Subdir),
    Control(usize, Control),
    Message(usize, u32, u32),
    Overlay(usize, OsString),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Uidlist,
    Keywords,
    Maildirfolder,
    Subscriptions,
}

impl Control {
    const ALL: [Control; 4] = [
        Control::Uidlist,
        Control::Keywords,
        Control::Maildirfolder,
        Control::Subscriptions,
    ];

    fn name(self) -> &'static str {
        match self {
            Control::Uidlist => model::UIDLIST,
            Control::Keywords => model::KEYWORDS,
            Control::Maildirfolder => model::MAILDIRFOLDER,
            Control::Subscriptions => model::SUBSCRIPTIONS,
        }
    }

    fn offset(self) -> u64 {
        match self {
            Control::Uidlist => 4,
            Control::Keywords => 5,
            Control::Maildirfolder => 6,
            Control::Subscriptions => 7,
        }
    }
}

fn sub_offset(s: Subdir) -> u64 {
    match s {
        Subdir::Cur => 1,
        Subdir::New => 2,
        Subdir::Tmp => 3,
    }
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
        for user in &tree.users {
            for f in &user.folders {
                let dir = state_path(&opts.state_dir, &user.name, f);
                std::fs::create_dir_all(&dir)?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
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

    fn decode(&self, ino: Ino) -> Option<Node> {
        if ino == ROOT {
            return Some(Node::Root);
        }
        if ino >= OVERLAY_BASE {
            let map = self.overlay_inos.lock().unwrap_or_else(|e| e.into_inner());
            return map.name(ino).map(|(g, n)| Node::Overlay(g, n));
        }
        if ino >= 1 << 32 {
            let slot = (ino >> 32) as u32;
            let uid = ino as u32;
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let g = *slots.get(slot as usize - 1)?;
            return Some(Node::Message(g, slot, uid));
        }
        let rel = ino.checked_sub(FIRST_BLOCK)?;
        let g = (rel / BLOCK) as usize;
        if g >= self.folders.len() {
            return None;
        }
        Some(match rel % BLOCK {
            0 => Node::FolderDir(g),
            1 => Node::Sub(g, Subdir::Cur),
            2 => Node::Sub(g, Subdir::New),
            3 => Node::Sub(g, Subdir::Tmp),
            k => Node::Control(g, *Control::ALL.iter().find(|c| c.offset() == k)?),
        })
    }

    fn overlay_ino(&self, g: usize, name: &OsStr) -> Ino {
        self.overlay_inos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ino(g, name)
    }

    fn overlay_dir(&self, g: usize) -> PathBuf {
        let s = &self.folders[g];
        let user = &self.tree.users[s.user];
        state_path(&self.opts.state_dir, &user.name, &user.folders[s.folder])
    }

    /// The folder's current snapshot, (re)indexing when it is due.
    pub fn snapshot(&self, g: usize) -> Result<Arc<Snapshot>> {
        let state = &self.folders[g];
        let current = || {
            state
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        let fresh = |snap: &Option<Arc<Snapshot>>| {
            let checked = *state.checked.lock().unwrap_or_else(|e| e.into_inner());
            let settled = |s: &Snapshot| {
                s.provisional
                    .is_some_and(|d| s.mtime.elapsed().unwrap_or_default() >= d)
            };
            checked.is_some_and(|t| t.elapsed() < self.opts.recheck)
                && snap.as_ref().is_some_and(|s| !settled(s))
        };
        let snap = current();
        if fresh(&snap) {
            return Ok(snap.expect("fresh implies a snapshot"));
        }
        let _busy = state.indexing.lock().unwrap_or_else(|e| e.into_inner());
        let old = current();
        if fresh(&old) {
            return Ok(old.expect("fresh implies a snapshot"));
        }
        let snap = match self.refresh(g, old.as_deref()) {
            Some(new) => {
                let new = Arc::new(new);
                *state.current.write().unwrap_or_else(|e| e.into_inner()) = Some(new.clone());
                if let Some(old) = &old {
                    self.invalidate(g, old, &new);
                }
                new
            }
            None => old.expect("refresh gives a snapshot when there is none"),
        };
        *state.checked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Ok(snap)
    }

    /// Forgets when the folder was last checked, so the next access looks at its mbox again.
    fn mark_stale(&self, g: usize) {
        *self.folders[g]
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Where invalidations go (the mount sends them to the kernel from another thread).
    pub fn set_invalidations(&self, tx: std::sync::mpsc::Sender<Invalidation>) {
        *self.invalidations.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// Tells the kernel what changed between two snapshots of folder `g`.
    fn invalidate(&self, g: usize, old: &Snapshot, new: &Snapshot) {
        let Some(tx) = self
            .invalidations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return;
        };
        let block = Self::block(g);
        let mut out = vec![Invalidation::Inode(block)];
        out.extend([Subdir::Cur, Subdir::New].map(|s| Invalidation::Inode(block + sub_offset(s))));
        out.extend(
            [Control::Uidlist, Control::Keywords].map(|c| Invalidation::Inode(block + c.offset())),
        );
        let folder = self.folder(g);
        let regenerated = new.slot != old.slot;
        // Whether a message keeps its file name, without formatting names: within one generation
        // the name is decided by these fields (and the UIDVALIDITY, the same in both).
        let same_name = |a: &Snapshot, m: &Msg, b: &Snapshot| {
            !regenerated
                && a.index.uidvalidity == b.index.uidvalidity
                && b.by_uid(m.uid).is_some_and(|n| {
                    (n.flags, n.keywords, n.bare_lf, n.time)
                        == (m.flags, m.keywords, m.bare_lf, m.time)
                        && n.size(&b.index) == m.size(&a.index)
                })
        };
        for m in old.messages().iter().filter(|m| !same_name(old, m, new)) {
            let (sub, name) = folder.message_file(&old.index, m);
            out.push(Invalidation::Entry(block + sub_offset(sub), name.into()));
            if regenerated {
                out.push(Invalidation::Inode(
                    (u64::from(old.slot) << 32) | u64::from(m.uid),
                ));
            }
        }
        // Names that appeared: the kernel may remember that they did not exist.
        for m in new.messages().iter().filter(|m| !same_name(new, m, old)) {
            let (sub, name) = folder.message_file(&new.index, m);
            out.push(Invalidation::Entry(block + sub_offset(sub), name.into()));
        }
        out.push(Invalidation::Entry(block, model::KEYWORDS.into()));
        for i in out {
            if tx.send(i).is_err() {
                break;
            }
        }
    }

    fn send(&self, inv: Invalidation) {
        if let Some(tx) = self
            .invalidations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(inv);
        }
    }

    /// A new snapshot if the mbox changed since `old` (or there is none yet).
    fn refresh(&self, g: usize, old: Option<&Snapshot>) -> Option<Snapshot> {
        let folder = self.folder(g);
        let user = &self.tree.users[self.folders[g].user];
        let Some(path) = folder.source.as_ref() else {
            return match old {
                Some(_) => None,
                None => Some(self.empty_snapshot(g, old)),
            };
        };
        // The source is checked again each time: it may have become a symlink since.
        let root = if folder.is_inbox() {
            path.parent().unwrap_or(Path::new("/")).to_path_buf()
        } else {
            user.home.clone()
        };
        let id = match source::check_source(path, &root, user.source_uid, self.opts.trust_owners) {
            Ok(Some(meta)) => FileId::of(&meta),
            Ok(None) => {
                log::warn!(
                    "{}: gone; {}/{} shows no messages",
                    path.display(),
                    user.name,
                    folder.display
                );
                return Some(self.empty_snapshot(g, old));
            }
            Err(why) => {
                log::error!(
                    "{}: {why}; {}/{} shows no messages",
                    path.display(),
                    user.name,
                    folder.display
                );
                return Some(self.empty_snapshot(g, old));
            }
        };
        if let Some(o) = old {
            if o.id == Some(id) {
                // Unchanged; a message held back may now be complete.
                return o.provisional.map(|_| {
                    let indexed = Indexed {
                        index: (*o.index).clone(),
                        file: o.file.clone().expect("a provisional snapshot has a file"),
                        id,
                        fp: o.fp,
                        complete: o.provisional == Some(SETTLE_COMPLETE),
                    };
                    self.make_snapshot(g, Some(indexed), old)
                });
            }
        }
        let appended = old.and_then(|o| self.index_appended(g, path, o, &id));
        let indexed = match appended {
            Some(r) => r,
            None => self.index(g, path),
        };
        match indexed {
            Ok(indexed) => Some(self.make_snapshot(g, Some(indexed), old)),
            Err(e) => {
                log::error!(
                    "{}: {e}; {}/{} shows no messages",
                    path.display(),
                    user.name,
                    folder.display
                );
                Some(self.empty_snapshot(g, old))
            }
        }
    }

    fn index_options(&self, g: usize) -> IndexOptions {
        IndexOptions {
            mode: ReadMode::Pread,
            ..self.folder(g).index_options(&self.opts.index)
        }
    }

    /// Reads the whole mbox.
    fn index(&self, g: usize, path: &Path) -> std::result::Result<Indexed, mbox::ReadError> {
        let (file, _) = mbox::open(path)?;
        let started = Instant::now();
        let indexed = self.read_locked(Arc::new(file), path, |file, len| {
            mbox::index_file(file, len, &self.index_options(g))
        })?;
        log::info!(
            "indexed {} ({} messages, {} bytes) in {:.0?}",
            path.display(),
            indexed.index.messages.len(),
            indexed.id.len,
            started.elapsed()
        );
        Ok(indexed)
    }

    /// Reads only what was appended, if the mbox only grew since `old`; `None` otherwise.
    fn index_appended(
        &self,
        g: usize,
        path: &Path,
        old: &Snapshot,
        id: &FileId,
    ) -> Option<std::result::Result<Indexed, mbox::ReadError>> {
        let (Some(oid), Some(file), Some(fp)) = (old.id, old.file.clone(), old.fp) else {
            return None;
        };
        if oid.dev != id.dev || oid.ino != id.ino || id.len <= oid.len {
            return None;
        }
        let last_from = old.index.resume.as_ref().map(|r| r.from_line);
        if fingerprint(&file, oid.len, last_from).ok()? != fp {
            return None;
        }
        let started = Instant::now();
        let r = self.read_locked(file, path, |file, len| {
            mbox::index_appended(file, len, (*old.index).clone(), &self.index_options(g))
        });
        if let Ok(indexed) = &r {
            log::info!(
                "{}: {} bytes appended, {} messages now, read in {:.0?}",
                path.display(),
                indexed.id.len - oid.len,
                indexed.index.messages.len(),
                started.elapsed()
            );
        }
        Some(r)
    }

    /// Runs `read` on the file under the writers' read locks, and fingerprints the result.
    fn read_locked(
        &self,
        file: Arc<File>,
        path: &Path,
        read: impl FnOnce(&File, u64) -> std::result::Result<FolderIndex, mbox::ReadError>,
    ) -> std::result::Result<Indexed, mbox::ReadError> {
        let lock = crate::lock::read_lock(&file, path, self.opts.lock);
        // Measured after locking: a delivery in progress has finished.
        let id = FileId::of(&file.metadata()?);
        let index = read(&file, id.len)?;
        let last_from = index.resume.as_ref().map(|r| r.from_line);
        let fp = fingerprint(&file, id.len, last_from).ok();
        let complete = lock.is_complete() && ends_with_blank_line(&file, id.len);
        drop(lock);
        Ok(Indexed {
            index,
            file,
            id,
            fp,
            complete,
        })
    }

    fn empty_snapshot(&self, g: usize, old: Option<&Snapshot>) -> Snapshot {
        self.make_snapshot(g, None, old)
    }

    /// Publishes what was read as a snapshot: holds back a last message that may be incomplete,
    /// keeps inodes while every UID still means the same message, never lowers the next UID,
    /// and makes a new generation (a new UIDVALIDITY) when a UID would come to mean another
    /// message.
    fn make_snapshot(
        &self,
        g: usize,
        indexed: Option<Indexed>,
        old: Option<&Snapshot>,
    ) -> Snapshot {
        let (mut index, file, id, fp, complete) = match indexed {
            Some(i) => (i.index, Some(i.file), Some(i.id), i.fp, i.complete),
            None => (
                self.folder(g).empty_index(&self.opts.index),
                None,
                None,
                None,
                true,
            ),
        };
        let mtime = model::folder_mtime(id.as_ref());
        let settle = if complete { SETTLE_COMPLETE } else { SETTLE };
        let hold = !index.messages.is_empty() && mtime.elapsed().unwrap_or_default() < settle;
        let shown = index.messages.len() - usize::from(hold);
        let source_uidvalidity = index.uidvalidity;
        // A UIDVALIDITY this view already replaced stays replaced.
        if let Some(o) = old.filter(|o| o.source_uidvalidity == source_uidvalidity) {
            index.uidvalidity = o.index.uidvalidity;
        }
        let same_generation = old.is_some_and(|o| o.index.uidvalidity == index.uidvalidity);
        let reused = old.filter(|_| same_generation).is_some_and(|o| {
            let max_shown = o.messages().last().map_or(0, |m| m.uid);
            index.messages[..shown]
                .iter()
                .any(|m| match o.by_uid(m.uid) {
                    Some(p) => p.time != m.time || p.size(&o.index) != m.size(&index),
                    None => m.uid <= max_shown,
                })
        });
        let o = old.filter(|_| same_generation);
        if let Some(o) = o {
            if reused {
                let next = o.index.uidvalidity.wrapping_add(1).max(1);
                log::warn!(
                    "{}: a rewrite gave old UIDs to other messages; shown as a new generation (UIDVALIDITY {} -> {next})",
                    self.folder(g).display,
                    o.index.uidvalidity
                );
                index.uidvalidity = next;
            } else {
                index.uid_next = index.uid_next.max(o.index.uid_next);
            }
        }
        let slot = match old {
            Some(o) if same_generation && !reused => o.slot,
            _ => {
                let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                slots.push(g);
                slots.len() as u32
            }
        };
        let (mut cur, mut new) = (Vec::new(), Vec::new());
        for (i, m) in index.messages[..shown].iter().enumerate() {
            if m.is_recent() {
                new.push(i as u32)
            } else {
                cur.push(i as u32)
            }
        }
        Snapshot {
            index: Arc::new(index),
            shown,
            provisional: hold.then_some(settle),
            source_uidvalidity,
            file,
            id,
            fp,
            slot,
            mtime,
            cur,
            new,
            uidlist: std::sync::OnceLock::new(),
        }
    }

    // ---- attributes ----

    fn dir_attr(&self, ino: Ino, owner: Owner, perm: u16, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind: Kind::Dir,
            size: 4096,
            mtime,
            perm,
            uid: owner.uid,
            gid: owner.gid,
            nlink: 2,
            ttl: SHORT_TTL,
            entry_ttl: LONG_TTL,
        }
    }

    fn message_attr(&self, g: usize, snap: &Snapshot, m: &Msg) -> Attr {
        let owner = self.owner(g);
        Attr {
            ino: (u64::from(snap.slot) << 32) | u64::from(m.uid),
            kind: Kind::File,
            size: m.size(&snap.index),
            mtime: model::system_time(m.time, 0),
            perm: 0o400,
            uid: owner.uid,
            gid: owner.gid,
            nlink: 1,
            ttl: LONG_TTL,
            entry_ttl: LONG_TTL,
        }
    }

    fn control_bytes(&self, g: usize, c: Control) -> Result<Option<Vec<u8>>> {
        let folder = self.folder(g);
        match c {
            Control::Subscriptions => {
                if !folder.is_inbox() {
                    return Ok(None);
                }
                match std::fs::read(self.overlay_dir(g).join(model::SUBSCRIPTIONS)) {
                    Ok(b) => Ok(Some(b)),
                    Err(_) => Ok(Some(
                        self.tree.users[self.folders[g].user].subscriptions_file(),
                    )),
                }
            }
            Control::Maildirfolder => Ok((!folder.is_inbox()).then(Vec::new)),
            Control::Keywords => {
                let snap = self.snapshot(g)?;
                Ok(folder.keywords_file(&snap.index))
            }
            Control::Uidlist => {
                let snap = self.snapshot(g)?;
                let ours = snap
                    .uidlist
                    .get_or_init(|| folder.uidlist_of(&snap.index, snap.messages()));
                let theirs = std::fs::read(self.overlay_dir(g).join(model::UIDLIST)).ok();
                Ok(Some(merge_uidlist(ours, theirs.as_deref())))
            }
        }
    }

    fn control_attr(&self, g: usize, c: Control) -> Result<Attr> {
        let bytes = self.control_bytes(g, c)?.ok_or(Errno::ENOENT)?;
        let owner = self.owner(g);
        let mtime = self
            .snapshot(g)?
            .mtime
            .max(self.overlay_mtime(g, c.name()).unwrap_or(UNIX_EPOCH));
        Ok(Attr {
            ino: Self::block(g) + c.offset(),
            kind: Kind::File,
            size: bytes.len() as u64,
            mtime,
            perm: 0o400,
            uid: owner.uid,
            gid: owner.gid,
            nlink: 1,
            ttl: SHORT_TTL,
            entry_ttl: LONG_TTL,
        })
    }

    fn overlay_mtime(&self, g: usize, name: &str) -> Option<SystemTime> {
        std::fs::metadata(self.overlay_dir(g).join(name))
            .ok()?
            .modified()
            .ok()
    }

    fn overlay_attr(&self, g: usize, name: &OsStr) -> Result<Attr> {
        let meta = std::fs::symlink_metadata(self.overlay_dir(g).join(name))?;
        if !meta.is_file() {
            return Err(Errno::ENOENT);
        }
        let owner = self.owner(g);
        Ok(Attr {
            ino: self.overlay_ino(g, name),
            kind: Kind::File,
            size: meta.len(),
            mtime: meta.modified().unwrap_or(UNIX_EPOCH),
            perm: (meta.mode() & 0o777) as u16,
            uid: owner.uid,
            gid: owner.gid,
            nlink: 1,
            ttl: SHORT_TTL,
            entry_ttl: LONG_TTL,
        })
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        match self.decode(ino).ok_or(Errno::ENOENT)? {
            Node::Root => Ok(self.dir_attr(ROOT, Owner { uid: 0, gid: 0 }, 0o555, self.started)),
            Node::FolderDir(g) => {
                let snap = self.snapshot(g)?;
                Ok(self.dir_attr(ino, self.owner(g), 0o700, snap.mtime))
            }
            Node::Sub(g, _) => {
                let snap = self.snapshot(g)?;
                Ok(self.dir_attr(ino, self.owner(g), 0o500, snap.mtime))
            }
            Node::Control(g, c) => self.control_attr(g, c),
            Node::Message(g, slot, uid) => {
                let snap = self.snapshot(g)?;
                if snap.slot != slot {
                    return Err(Errno::ENOENT);
                }
                let m = snap.by_uid(uid).ok_or(Errno::ENOENT)?;
                Ok(self.message_attr(g, &snap, m))
            }
            Node::Overlay(g, name) => self.overlay_attr(g, &name),
        }
    }

    // ---- names ----

    fn user_of_name(&self, name: &OsStr) -> Option<usize> {
        self.tree
            .users
            .iter()
            .position(|u| OsStr::new(&u.name) == name)
    }

    /// The subfolder directory `name` under a user's root (`g` is the user's INBOX).
    fn subfolder(&self, g: usize, name: &OsStr) -> Option<usize> {
        let s = &self.folders[g];
        if s.folder != 0 {
            return None;
        }
        let user = &self.tree.users[s.user];
        user.folders
            .iter()
            .position(|f| !f.is_inbox() && f.refused.is_none() && OsStr::new(&f.dir) == name)
            .map(|f| self.first_of_user[s.user] + f)
    }

    fn is_generated_name(&self, g: usize, name: &OsStr) -> bool {
        Subdir::from_name(name.as_bytes()).is_some()
            || Control::ALL.iter().any(|c| OsStr::new(c.name()) == name)
            || self.subfolder(g, name).is_some()
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        match self.decode(parent).ok_or(Errno::ENOENT)? {
            Node::Root => {
                let u = self.user_of_name(name).ok_or(Errno::ENOENT)?;
                self.getattr(Self::block(self.first_of_user[u]))
            }
            Node::FolderDir(g) => {
                if let Some(s) = Subdir::from_name(name.as_bytes()) {
                    return self.getattr(Self::block(g) + sub_offset(s));
                }
                if let Some(c) = Control::ALL.iter().find(|c| OsStr::new(c.name()) == name) {
                    return self.control_attr(g, *c);
                }
                if let Some(sub) = self.subfolder(g, name) {
                    return self.getattr(Self::block(sub));
                }
                if !overlay_name_ok(name) {
                    return Err(Errno::ENOENT);
                }
                self.overlay_attr(g, name)
            }
            Node::Sub(g, sub) => {
                let snap = self.snapshot(g)?;
                let (m, _) = self
                    .find_message(g, &snap, sub, name)
                    .ok_or(Errno::ENOENT)?;
                Ok(self.message_attr(g, &snap, m))
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn find_message<'s>(
        &self,
        g: usize,
        snap: &'s Snapshot,
        sub: Subdir,
        name: &OsStr,
    ) -> Option<(&'s Msg, u32)> {
        let (uv, uid) = model::parse_message_name(name.as_bytes())?;
        if uv != snap.index.uidvalidity {
            return None;
        }
        let at = snap.position(uid)?;
        let m = &snap.messages()[at];
        let (want_sub, want_name) = self.folder(g).message_file(&snap.index, m);
        (want_sub == sub && OsStr::new(&want_name) == name).then_some((m, at as u32))
    }

    /// The entries of a directory, `.` and `..` first.
    pub fn list(&self, ino: Ino, dir_snap: Option<&Arc<Snapshot>>) -> Result<Vec<DirEntry>> {
        let entry = |ino: Ino, kind: Kind, name: &str| DirEntry {
            ino,
            kind,
            name: name.into(),
        };
        let mut out = vec![entry(ino, Kind::Dir, "."), entry(ROOT, Kind::Dir, "..")];
        match self.decode(ino).ok_or(Errno::ENOENT)? {
            Node::Root => {
                for (u, user) in self.tree.users.iter().enumerate() {
                    out.push(entry(
                        Self::block(self.first_of_user[u]),
                        Kind::Dir,
                        &user.name,
                    ));
                }
            }
            Node::FolderDir(g) => {
                for s in Subdir::ALL {
                    out.push(entry(Self::block(g) + sub_offset(s), Kind::Dir, s.name()));
                }
                for c in Control::ALL {
                    if self.control_bytes(g, c)?.is_some() {
                        out.push(entry(Self::block(g) + c.offset(), Kind::File, c.name()));
                    }
                }
                let s = &self.folders[g];
                if s.folder == 0 {
                    let user = &self.tree.users[s.user];
                    // A refused source is not migrated: its folder is not shown either.
                    for (f, folder) in user
                        .folders
                        .iter()
                        .enumerate()
                        .skip(1)
                        .filter(|(_, f)| f.refused.is_none())
                    {
                        out.push(entry(
                            Self::block(self.first_of_user[s.user] + f),
                            Kind::Dir,
                            &folder.dir,
                        ));
                    }
                }
                if let Ok(rd) = std::fs::read_dir(self.overlay_dir(g)) {
                    let mut names: Vec<OsString> = rd
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                        .map(|e| e.file_name())
                        .filter(|n| overlay_name_ok(n) && !self.is_generated_name(g, n))
                        .collect();
                    names.sort();
                    for n in names {
                        out.push(DirEntry {
                            ino: self.overlay_ino(g, &n),
                            kind: Kind::File,
                            name: n,
                        });
                    }
                }
            }
            Node::Sub(g, sub) => {
                let snap = match dir_snap {
                    Some(s) => s.clone(),
                    None => self.snapshot(g)?,
                };
                let folder = self.folder(g);
                for &i in snap.listing(sub) {
                    let m = &snap.index.messages[i as usize];
                    let (_, name) = folder.message_file(&snap.index, m);
                    out.push(DirEntry {
                        ino: (u64::from(snap.slot) << 32) | u64::from(m.uid),
                        kind: Kind::File,
                        name: name.into(),
                    });
                }
            }
            _ => return Err(Errno::ENOTDIR),
        }
        Ok(out)
    }

    /// Entries of a directory from `offset` on (the offset of an entry is its position + 1).
    pub fn readdir(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry, u64) -> bool,
    ) -> Result<()> {
        let snap = self.dir_snapshot(fh);
        let entries = self.list(ino, snap.as_ref())?;
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if add(e, i as u64 + 1) {
                break;
            }
        }
        Ok(())
    }

    /// The snapshot an open `cur/` or `new/` lists from.
    fn dir_snapshot(&self, fh: u64) -> Option<Arc<Snapshot>> {
        match self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
        {
            Some(Handle::Dir(s)) => s.clone(),
            _ => None,
        }
    }

    /// Like [`readdir`](Self::readdir), with each entry's attributes (`.` and `..` included).
    pub fn readdirplus(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry, &Attr, u64) -> bool,
    ) -> Result<()> {
        let snap = self.dir_snapshot(fh);
        let entries = self.list(ino, snap.as_ref())?;
        let folder_of = |ino: Ino| match self.decode(ino) {
            Some(Node::Sub(g, _)) => Some(g),
            _ => None,
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            let attr = match (folder_of(ino), &snap, e.ino >> 32) {
                // Messages: from the listing's own snapshot, without looking anything up.
                (Some(g), Some(s), slot) if slot == u64::from(s.slot) && e.name != "." => {
                    match s.by_uid(e.ino as u32) {
                        Some(m) => self.message_attr(g, s, m),
                        None => continue,
                    }
                }
                _ => match self.getattr(e.ino) {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            if add(e, &attr, i as u64 + 1) {
                break;
            }
        }
        Ok(())
    }

    pub fn opendir(&self, ino: Ino) -> Result<u64> {
        let snap = match self.decode(ino).ok_or(Errno::ENOENT)? {
            Node::Sub(g, _) => Some(self.snapshot(g)?),
            Node::Root | Node::FolderDir(_) => None,
            _ => return Err(Errno::ENOTDIR),
        };
        Ok(self.add_handle(Handle::Dir(snap)))
    }

    fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, h);
        fh
    }

    pub fn release(&self, fh: u64) {
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh);
    }

    // ---- reading ----

    /// Reads a file by inode. The mount answers `open` with ENOSYS, so that the kernel stops
    /// sending opens and releases (two round trips a message) and keeps cached pages: reads and
    /// writes come without file handles.
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>> {
        match self.decode(ino).ok_or(Errno::ENOENT)? {
            Node::Message(g, slot, uid) => {
                let snap = self.snapshot(g)?;
                if snap.slot != slot {
                    // A message of a generation that is gone: no bytes are the right ones.
                    return Err(Errno::EIO);
                }
                let at = snap.position(uid).ok_or(Errno::EIO)?;
                self.read_message(g, &snap, at as u32, offset, size)
            }
            Node::Control(g, c) => {
                let bytes = self.control_bytes(g, c)?.ok_or(Errno::ENOENT)?;
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(size as usize).min(bytes.len());
                Ok(bytes[start..end].to_vec())
            }
            Node::Overlay(g, name) => {
                let file = self.overlay_file(ino, g, &name)?;
                read_at_most(&file, offset, size)
            }
            Node::Root | Node::FolderDir(_) | Node::Sub(..) => Err(Errno::EISDIR),
        }
    }

    fn overlay_file(&self, ino: Ino, g: usize, name: &OsStr) -> Result<Arc<File>> {
        let mut cache = self.overlay_files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = cache.get(&ino) {
            return Ok(f.clone());
        }
        let f = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(self.overlay_dir(g).join(name))?,
        );
        cache.put(ino, f.clone());
        Ok(f)
    }

    /// Writes to one of Dovecot's files (nothing else can be written).
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32> {
        match self.decode(ino).ok_or(Errno::ENOENT)? {
            Node::Overlay(g, name) => {
                self.overlay_file(ino, g, &name)?
                    .write_all_at(data, offset)?;
                Ok(data.len() as u32)
            }
            _ => Err(Errno::EACCES),
        }
    }

    pub fn fsync(&self, ino: Ino) -> Result<()> {
        if let Some(Node::Overlay(g, name)) = self.decode(ino) {
            self.overlay_file(ino, g, &name)?.sync_data()?;
        }
        Ok(())
    }

    /// Reads message bytes, and checks that the mbox did not change meanwhile. If it did, the
    /// message is read from a new snapshot (it is the same message if its UID, date and size
    /// are), or the read fails: wrong bytes are never returned.
    fn read_message(
        &self,
        g: usize,
        snap: &Arc<Snapshot>,
        at: u32,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>> {
        let m = &snap.index.messages[at as usize];
        if let Some(bytes) = self.read_checked(snap, m, offset, size)? {
            return Ok(bytes);
        }
        // The mbox changed: read the same message (same UID, date and size) from a fresh
        // snapshot, a few times if writers keep changing it.
        for _ in 0..5 {
            self.mark_stale(g);
            let now = self.snapshot(g)?;
            let Some(m2) = now
                .by_uid(m.uid)
                .filter(|m2| m2.time == m.time && m2.size(&now.index) == m.size(&snap.index))
            else {
                break;
            };
            if let Some(bytes) = self.read_checked(&now, m2, offset, size)? {
                return Ok(bytes);
            }
        }
        log::warn!(
            "{}: changed while message UID {} was read; the read fails",
            self.folder(g).display,
            m.uid
        );
        Err(Errno::EIO)
    }

    fn read_checked(
        &self,
        snap: &Snapshot,
        m: &Msg,
        offset: u64,
        size: u32,
    ) -> Result<Option<Vec<u8>>> {
        let (Some(file), Some(id)) = (&snap.file, &snap.id) else {
            return Ok(Some(Vec::new()));
        };
        let total = m.size(&snap.index);
        let len = (total.saturating_sub(offset)).min(u64::from(size)) as usize;
        let mut buf = vec![0; len];
        let n = match mbox::read_served(file, &snap.index, m, offset, &mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        buf.truncate(n);
        let now = FileId::of(&file.metadata()?);
        if now == *id {
            return Ok(Some(buf));
        }
        // Mail appended since is fine: the bytes before the old end are as they were.
        let grew = now.dev == id.dev && now.ino == id.ino && now.len > id.len;
        let last_from = snap.index.resume.as_ref().map(|r| r.from_line);
        let intact =
            grew && snap.fp.is_some() && fingerprint(file, id.len, last_from).ok() == snap.fp;
        Ok(intact.then_some(buf))
    }

    // ---- writing (the overlay) ----

    fn writable_dir(&self, parent: Ino) -> Result<usize> {
        match self.decode(parent).ok_or(Errno::ENOENT)? {
            Node::FolderDir(g) => Ok(g),
            Node::Root | Node::Sub(..) => Err(Errno::EACCES),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Creates a file of Dovecot's in a folder directory.
    /// Creates a file of Dovecot's in a folder directory. Its reads and writes then come by
    /// inode, like every file's (the descriptor used for them is opened without `O_APPEND`,
    /// which would make positioned writes append).
    pub fn create(&self, parent: Ino, name: &OsStr, mode: u32, flags: i32) -> Result<Attr> {
        let g = self.writable_dir(parent)?;
        if !overlay_name_ok(name) || self.is_generated_name(g, name) {
            return Err(Errno::EACCES);
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(flags & libc::O_TRUNC != 0)
            .custom_flags(libc::O_NOFOLLOW | (flags & libc::O_EXCL))
            .mode(mode & 0o666)
            .open(self.overlay_dir(g).join(name))?;
        self.overlay_attr(g, name)
    }

    pub fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let g = self.writable_dir(parent)?;
        if self.is_generated_name(g, name) || !overlay_name_ok(name) {
            // Dovecot's own copy of a generated file may be removed; the file stays.
            if let Some(c) = Control::ALL.iter().find(|c| OsStr::new(c.name()) == name) {
                let _ = std::fs::remove_file(self.overlay_dir(g).join(c.name()));
            }
            return Err(Errno::EACCES);
        }
        std::fs::remove_file(self.overlay_dir(g).join(name))?;
        let ino = self.overlay_ino(g, name);
        self.overlay_files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop(&ino);
        self.overlay_inos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(g, name);
        Ok(())
    }

    pub fn rename(&self, parent: Ino, name: &OsStr, newparent: Ino, newname: &OsStr) -> Result<()> {
        let g = self.writable_dir(parent)?;
        let g2 = self.writable_dir(newparent)?;
        if g != g2 {
            return Err(Errno::EXDEV);
        }
        let replaceable = [model::UIDLIST, model::KEYWORDS, model::SUBSCRIPTIONS];
        if self.is_generated_name(g, name) || !overlay_name_ok(name) || !overlay_name_ok(newname) {
            return Err(Errno::EACCES);
        }
        if self.is_generated_name(g, newname)
            && !replaceable.iter().any(|r| OsStr::new(r) == newname)
        {
            return Err(Errno::EACCES);
        }
        if newname == OsStr::new(model::SUBSCRIPTIONS) && !self.folder(g).is_inbox() {
            return Err(Errno::EACCES);
        }
        let dir = self.overlay_dir(g);
        std::fs::rename(dir.join(name), dir.join(newname))?;
        // What we show for a generated name may include what Dovecot wrote there.
        if let Some(c) = Control::ALL
            .iter()
            .find(|c| OsStr::new(c.name()) == newname)
        {
            self.send(Invalidation::Inode(Self::block(g) + c.offset()));
        }
        // The inode goes with its file: open descriptors still `fstat` it.
        self.overlay_inos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rename(g, name, newname);
        Ok(())
    }

    /// Changes an overlay file's size, mode or times. Anything else is refused.
    pub fn setattr(
        &self,
        ino: Ino,
        size: Option<u64>,
        mode: Option<u32>,
        times: Option<(Option<SystemTime>, Option<SystemTime>)>,
    ) -> Result<Attr> {
        match self.decode(ino).ok_or(Errno::ENOENT)? {
            Node::Overlay(g, name) => {
                let path = self.overlay_dir(g).join(&name);
                if let Some(len) = size {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&path)?
                        .set_len(len)?;
                }
                if let Some(mode) = mode {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777))?;
                }
                if let Some((atime, mtime)) = times {
                    let f = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&path)?;
                    let mut t = std::fs::FileTimes::new();
                    if let Some(a) = atime {
                        t = t.set_accessed(a);
                    }
                    if let Some(m) = mtime {
                        t = t.set_modified(m);
                    }
                    f.set_times(t)?;
                }
                self.overlay_attr(g, &name)
            }
            _ if size.is_none() && mode.is_none() => {
                // Touching times of the read-only view: accepted, nothing changes.
                self.getattr(ino)
            }
            _ => Err(Errno::EACCES),
        }
    }

    /// Free space as the state directory's file system has it.
    pub fn statfs(&self) -> (u64, u64, u64, u64, u64, u32) {
        crate::sys::statvfs(&self.opts.state_dir).unwrap_or((0, 0, 0, 0, 0, 4096))
    }
}

/// Up to `size` bytes of `file` from `offset` (fewer at its end).
fn read_at_most(file: &File, offset: u64, size: u32) -> Result<Vec<u8>> {
    let mut buf = vec![0; size as usize];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Inode numbers of overlay files, which follow renames.
#[derive(Default)]
struct OverlayInodes {
    by_name: HashMap<(usize, OsString), Ino>,
    by_ino: HashMap<Ino, (usize, OsString)>,
    next: u64,
}

impl OverlayInodes {
    fn ino(&mut self, g: usize, name: &OsStr) -> Ino {
        let key = (g, name.to_os_string());
        if let Some(&ino) = self.by_name.get(&key) {
            return ino;
        }
        let ino = OVERLAY_BASE + self.next;
        self.next += 1;
        self.by_name.insert(key.clone(), ino);
        self.by_ino.insert(ino, key);
        ino
    }

    fn name(&self, ino: Ino) -> Option<(usize, OsString)> {
        self.by_ino.get(&ino).cloned()
    }

    fn remove(&mut self, g: usize, name: &OsStr) {
        if let Some(ino) = self.by_name.remove(&(g, name.to_os_string())) {
            self.by_ino.remove(&ino);
        }
    }

    fn rename(&mut self, g: usize, from: &OsStr, to: &OsStr) {
        self.remove(g, to);
        if let Some(ino) = self.by_name.remove(&(g, from.to_os_string())) {
            self.by_name.insert((g, to.to_os_string()), ino);
            self.by_ino.insert(ino, (g, to.to_os_string()));
        }
    }
}

/// Where a folder's overlay files live in the state directory.
fn state_path(state: &Path, user: &str, f: &Folder) -> PathBuf {
    let dir = if f.is_inbox() {
        "_INBOX"
    } else {
        f.dir.as_str()
    };
    state.join(user).join(dir)
}

/// Names Dovecot may create in a folder directory: not `.`/`..`, not hidden (a `.Name` there
/// would look like a folder).
fn overlay_name_ok(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && !b.starts_with(b".") && !b.contains(&b'/') && b.len() <= 255
}

/// Our `dovecot-uidlist`, with the header fields Dovecot added to its own copy (its `G`
/// mailbox GUID) and its `N` if higher, when it describes the same UIDVALIDITY.
pub fn merge_uidlist(ours: &[u8], theirs: Option<&[u8]>) -> Vec<u8> {
    let Some(theirs) = theirs else {
        return ours.to_vec();
    };
    let (our_head, our_rest) = split_first_line(ours);
    let (their_head, _) = split_first_line(theirs);
    let ours_f: Vec<&str> = std::str::from_utf8(our_head)
        .unwrap_or("")
        .split(' ')
        .collect();
    let theirs_f: Vec<&str> = std::str::from_utf8(their_head)
        .unwrap_or("")
        .split(' ')
        .collect();
    let field = |f: &[&str], k: char| {
        f.iter()
            .skip(1)
            .find(|x| x.starts_with(k))
            .map(|x| x[1..].to_string())
    };
    if theirs_f.first() != Some(&"3") || field(&theirs_f, 'V') != field(&ours_f, 'V') {
        return ours.to_vec();
    }
    let our_n: u64 = field(&ours_f, 'N')
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let their_n: u64 = field(&theirs_f, 'N')
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut head = format!(
        "3 V{} N{}",
        field(&ours_f, 'V').unwrap_or_default(),
        our_n.max(their_n)
    );
    for f in theirs_f.iter().skip(1) {
        if !f.starts_with('V') && !f.starts_with('N') && !f.is_empty() {
            head.push(' ');
            head.push_str(f);
        }
    }
    head.push('\n');
    let mut out = head.into_bytes();
    out.extend_from_slice(our_rest);
    out
}

fn split_first_line(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == b'\n') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidlist_merge_keeps_our_records_and_their_guid() {
        let ours = b"3 V5 N10\n3 :a\n7 :b\n";
        assert_eq!(merge_uidlist(ours, None), ours);
        assert_eq!(
            merge_uidlist(ours, Some(b"3 V5 N12 Gabcdef\n3 :a\n")),
            b"3 V5 N12 Gabcdef\n3 :a\n7 :b\n"
        );
        assert_eq!(merge_uidlist(ours, Some(b"3 V6 N12 Gabcdef\n")), ours);
        assert_eq!(merge_uidlist(ours, Some(b"garbage")), ours);
    }

    #[test]
    fn overlay_names() {
        assert!(overlay_name_ok(OsStr::new("dovecot.index.log")));
        assert!(!overlay_name_ok(OsStr::new(".Folder")));
        assert!(!overlay_name_ok(OsStr::new("..")));
    }
}
