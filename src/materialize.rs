//! `mboxfs materialize DEST`: writes the model's trees as real files, exactly what the mount
//! shows (names, bytes, mtimes, control files).
//!
//! DEST belongs to root, but each `DEST/<user>` belongs to its user, who may change anything in
//! it while this runs. So DEST is opened once (and locked: a second run refuses at once), and
//! every path below is reached from directory descriptors without following a symlink
//! ([`safe`](crate::safe)): directories are made with `mkdirat` and get their owner and mode
//! with `fchown`/`fchmod` on their own descriptor (only when they differ, so that a finished
//! DEST on a read-only file system is re-run without a write); a directory owned by someone
//! else is refused, never given to the user. Files are created with
//! `openat(O_CREAT | O_EXCL | O_NOFOLLOW)` in the folder's `tmp/` and renamed with `renameat`
//! between that folder's directory descriptors; control files in DEST are read through the
//! safe open.
//!
//! Each mbox is opened once: the index is made from that descriptor and the messages are copied
//! from it. A source that changed meanwhile (written, truncated, renamed over) is indexed again
//! and copied again, the copies of the first pass removed; one that changes twice fails the
//! folder (a FAILED line, exit status 1). Slices of another file are never left behind.
//!
//! Safe to repeat: each message is written into its folder's `tmp/`, gets its mtime and owner,
//! and only then is renamed into `cur/` or `new/`, so a run killed at any point leaves no partial
//! message there. A rerun skips messages already in place (same name, same size), renames those
//! whose flags changed, removes leftovers in `tmp/` and files of messages no longer in the
//! source, and rewrites control files only when they differ. `dovecot-uidlist` is written last,
//! and never lowers an `N` that Dovecot raised. A run over a finished DEST writes nothing.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::index::{FolderIndex, Msg};
use crate::mbox::{FileId, IndexOptions, ReadError};
use crate::model::{self, Folder, OpenSource, Subdir, Tree, UserTree};
use crate::safe::{self, Dir, DirLock, Kind};
use crate::source::Owner;
use crate::{parallel, sys};

/// Folders written at once by default: creating files on a journaling file system waits on the
/// disk, so more jobs than cores pay (measured by scripts/bench.sh: 5.1 s with 1 job, 1.75 s
/// with 2, 1.19 s with 4, 1.09 s with 8 on a 2-core machine).
pub const DEFAULT_JOBS: usize = 8;

/// The file that marks a DEST as made by mboxfs.
pub const MARKER: &str = ".mboxfs-materialize";

/// Temporary control files in a folder's `tmp/` start with this.
const CONTROL_TMP_PREFIX: &str = ".mboxfs-";

pub struct Options {
    pub jobs: usize,
    pub fsync: bool,
    pub force: bool,
    /// Progress bar (on a terminal) or periodic lines.
    pub progress: bool,
}

/// What a run did. Counts are of what is really in DEST when the run ends (a folder that
/// failed halfway, on a full disk say, counts the messages it did put in place).
#[derive(Debug, Default)]
pub struct Summary {
    pub folders: usize,
    /// What was done to the messages and control files of every folder.
    pub counts: Counts,
    /// (what, why) of each failure.
    pub failures: Vec<(String, String)>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn wrote_nothing(&self) -> bool {
        let c = &self.counts;
        c.written == 0 && c.renamed == 0 && c.removed == 0 && c.control_written == 0
    }
}

struct Progress {
    messages: AtomicU64,
    bytes: AtomicU64,
    bar: Option<indicatif::ProgressBar>,
    last_line: Mutex<Instant>,
    total_messages: u64,
    started: Instant,
}

impl Progress {
    fn new(total_messages: u64, total_bytes: u64, show: bool) -> Progress {
        use std::io::IsTerminal;
        let bar = (show && io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total_bytes);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            bar,
            last_line: Mutex::new(Instant::now()),
            total_messages,
            started: Instant::now(),
        }
    }

    fn add(&self, messages: u64, bytes: u64) {
        let m = self.messages.fetch_add(messages, Ordering::Relaxed) + messages;
        let b = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        match &self.bar {
            Some(bar) => {
                bar.set_position(b);
                bar.set_message(format!("{m}/{} messages", self.total_messages));
            }
            None => {
                let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= Duration::from_secs(10) {
                    *last = Instant::now();
                    let secs = self.started.elapsed().as_secs_f64().max(0.001);
                    log::info!(
                        "{m}/{} messages, {}, {}/s",
                        self.total_messages,
                        crate::plan::human_bytes(b),
                        crate::plan::human_bytes((b as f64 / secs) as u64)
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// DEST, open and locked for this run.
pub struct Dest {
    pub dir: Dir,
    _lock: DirLock,
}

/// Opens DEST (made by root when missing) and takes its lock: a second `materialize` on the
/// same DEST refuses at once. Fails for a DEST others may write (the users' trees are inside it,
/// and it must hold them still), and for a non-empty DEST that mboxfs did not make, unless
/// forced. Writes nothing when DEST is already marked.
pub fn prepare_dest(dest: &Path, force: bool) -> Result<Dest, String> {
    let at = |e: io::Error| format!("{}: {e}", dest.display());
    let dir = match Dir::open_trusted(dest) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dest)
                .map_err(at)?;
            Dir::open_trusted(dest).map_err(at)?
        }
        Err(e) => return Err(at(e)),
    };
    let lock = dir.try_lock(true).map_err(at)?.ok_or_else(|| {
        format!(
            "{}: another mboxfs materialize is writing it (it holds the lock on the directory); wait for it to end",
            dest.display()
        )
    })?;
    // Others may not rename or replace the users' trees in DEST: it is writable by its owner
    // alone, or sticky (as a fresh tmpfs is).
    let st = dir.stat().map_err(at)?;
    if st.uid != sys::euid() || (st.mode & 0o022 != 0 && st.mode & 0o1000 == 0) {
        return Err(format!(
            "{}: owned by uid {} with mode {:o}; DEST must belong to uid {} and be writable by it alone, or sticky (users own the trees inside it)",
            dest.display(),
            st.uid,
            st.mode,
            sys::euid()
        ));
    }
    match dir.stat_at(MARKER).map_err(at)? {
        Some(st) if st.kind == Kind::File => {}
        Some(st) => {
            return Err(format!(
                "{}: {MARKER} {}, not the file mboxfs writes",
                dest.display(),
                st.kind.describe()
            ));
        }
        None => {
            if !dir.list().map_err(at)?.is_empty() && !force {
                return Err(format!(
                    "{} is not empty and was not made by mboxfs materialize; give --force to write into it",
                    dest.display()
                ));
            }
            dir.create_new(MARKER, 0o644)
                .and_then(|mut f| {
                    f.write_all(b"made by mboxfs materialize; safe to remove after the migration\n")
                })
                .map_err(at)?;
        }
    }
    Ok(Dest { dir, _lock: lock })
}

/// Raises this process's descriptor limit to its hard limit, and returns how many sources may
/// be held open between indexing and copying (the rest are opened again and compared).
fn source_budget(jobs: usize) -> usize {
    let limit = sys::raise_open_files_limit().unwrap_or(1024);
    (usize::try_from(limit).unwrap_or(usize::MAX) / 2).saturating_sub(64 + 8 * jobs)
}

/// A folder's index, and its source: open (the descriptor the index was made from), or only
/// known by identity when too many were open.
struct Indexed {
    index: FolderIndex,
    id: Option<FileId>,
    src: Option<OpenSource>,
}

/// Writes every user's tree under `dest`.
pub fn run(
    tree: &Tree,
    index_opts: &IndexOptions,
    dest: &Path,
    opts: &Options,
) -> Result<Summary, String> {
    let started = Instant::now();
    let dest = prepare_dest(dest, opts.force)?;
    let chown = sys::euid() == 0;
    let budget = source_budget(opts.jobs);
    let work: Vec<Work> = tree
        .users
        .iter()
        .flat_map(|u| u.folders.iter().map(move |f| (u, f)))
        .filter(|(_, f)| f.refused.is_none())
        .collect();
    let mut summary = Summary::default();
    for u in &tree.users {
        for f in u.folders.iter().filter(|f| f.refused.is_some()) {
            summary.failures.push((
                format!("{}/{}", u.name, f.display),
                f.refused.clone().unwrap_or_default(),
            ));
        }
        if let Err(e) = own_dir(&dest.dir, &u.name, u.owner, chown) {
            summary.failures.push((u.name.clone(), e));
        }
    }
    // Each folder is indexed once, from the descriptor its messages are then copied from; the
    // totals give the progress bar its length.
    let held = AtomicUsize::new(0);
    let indexes: Vec<Result<Indexed, String>> = parallel::map(&work, opts.jobs, |(_, f)| {
        let (index, src) = f.index(index_opts).map_err(|e| source_error(f, &e))?;
        let id = src.as_ref().map(|s| s.id);
        let src = src.filter(|_| held.fetch_add(1, Ordering::Relaxed) < budget);
        Ok(Indexed { index, id, src })
    });
    let totals = indexes.iter().flatten().fold((0, 0), |(n, b), ix| {
        (
            n + ix.index.messages.len() as u64,
            b + ix
                .index
                .messages
                .iter()
                .map(|m| m.size(&ix.index))
                .sum::<u64>(),
        )
    });
    let inbox_ids: HashMap<&str, Option<FileId>> = work
        .iter()
        .zip(&indexes)
        .filter(|((_, f), _)| f.is_inbox())
        .filter_map(|((u, _), ix)| Some((u.name.as_str(), ix.as_ref().ok()?.id)))
        .collect();
    let progress = Progress::new(totals.0, totals.1, opts.progress);
    let jobs: Vec<(Work, Result<Indexed, String>)> = work.into_iter().zip(indexes).collect();
    let ctx = Ctx {
        dest: &dest.dir,
        index_opts,
        opts,
        chown,
        progress: &progress,
    };
    let results = parallel::map(&jobs, opts.jobs, |((u, f), indexed)| {
        let mut s = Counts::default();
        let r = match indexed {
            Ok(ix) => write_folder(&ctx, u, f, ix, &mut s),
            Err(e) => Err(e.clone()),
        };
        (format!("{}/{}", u.name, f.display), s, r)
    });
    progress.finish();
    for (what, s, r) in results {
        summary.folders += 1;
        summary.counts.add(&s);
        if let Err(e) = r {
            summary.failures.push((what, e));
        }
    }
    for u in &tree.users {
        let mtime = model::folder_mtime(inbox_ids.get(u.name.as_str()).copied().flatten().as_ref());
        let written = own_dir(&dest.dir, &u.name, u.owner, chown).and_then(|root| {
            let tmp = own_dir(&root, Subdir::Tmp.name(), u.owner, chown)?;
            let c = Control {
                dir: &root,
                tmp: &tmp,
                mtime,
                owner: chown.then_some(u.owner),
                fsync: opts.fsync,
            };
            c.write(model::SUBSCRIPTIONS, &u.subscriptions_file())
                .map_err(|e| io_err(&root.path().join(model::SUBSCRIPTIONS), e))
        });
        match written {
            Ok(true) => summary.counts.control_written += 1,
            Ok(false) => {}
            Err(e) => summary
                .failures
                .push((u.name.clone(), format!("subscriptions: {e}"))),
        }
    }
    if !opts.fsync && !summary.wrote_nothing() {
        dest.dir
            .sync_fs()
            .map_err(|e| format!("sync {}: {e}", dest.dir.path().display()))?;
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn source_error(f: &Folder, e: &ReadError) -> String {
    match f.source.as_ref() {
        Some(p) => format!("{}: {e}", p.display()),
        None => e.to_string(),
    }
}

/// `path: error`, with a hint when the disk is full.
fn io_err(what: &Path, e: io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
        format!(
            "{}: the disk is full ({e}); free space and run again",
            what.display()
        )
    } else {
        format!("{}: {e}", what.display())
    }
}

/// Makes (or opens) directory `name` in `parent` for `owner`, without following a symlink.
/// A directory that belongs to someone else than the owner (or root) is refused and left
/// alone: moved in from elsewhere by the user, it must not become hers. Owner and mode are set
/// on its descriptor, each only when it differs.
fn own_dir(parent: &Dir, name: &str, owner: Owner, chown: bool) -> Result<Dir, String> {
    let path = parent.path().join(name);
    let d = parent.make_dir(name, 0o700).map_err(|e| io_err(&path, e))?;
    let st = d.stat().map_err(|e| io_err(&path, e))?;
    if chown && st.uid != owner.uid && st.uid != sys::euid() {
        return Err(format!(
            "{}: owned by uid {}, neither its user's (uid {}) nor root's: refused, left as it is",
            path.display(),
            st.uid,
            owner.uid
        ));
    }
    safe::set_owner_mode(&d, chown.then_some((owner.uid, owner.gid)), 0o700)
        .map_err(|e| io_err(&path, e))?;
    Ok(d)
}

fn fsync_dir(d: &Dir) -> io::Result<()> {
    Ok(nix::unistd::fsync(d)?)
}

/// Creates `name` in `dir` for writing, removing a leftover of that name first (a symlink is
/// removed, never followed).
fn create_fresh(dir: &Dir, name: &str) -> io::Result<File> {
    match dir.create_new(name, 0o600) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            dir.remove_file(name)?;
            dir.create_new(name, 0o600)
        }
        r => r,
    }
}

/// How a folder's control files are written: through a temporary file in its `tmp/` and a
/// `renameat` into its directory.
struct Control<'d> {
    dir: &'d Dir,
    tmp: &'d Dir,
    mtime: SystemTime,
    owner: Option<Owner>,
    fsync: bool,
}

impl Control<'_> {
    /// What the file holds now, if it is a regular file (a symlink is not followed).
    fn read(&self, name: &str, expected: usize) -> Option<Vec<u8>> {
        self.dir
            .read_small(name, expected as u64 * 4 + (1 << 20))
            .ok()
    }

    /// Writes `name` unless it already holds `bytes`. Returns whether it wrote.
    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<bool> {
        if self.read(name, bytes.len()).is_some_and(|b| b == bytes) {
            return Ok(false);
        }
        let tmp_name = format!("{CONTROL_TMP_PREFIX}{name}");
        let r = (|| {
            let mut f = create_fresh(self.tmp, &tmp_name)?;
            f.write_all(bytes)?;
            if let Some(o) = self.owner {
                std::os::unix::fs::fchown(&f, Some(o.uid), Some(o.gid))?;
            }
            f.set_times(
                std::fs::FileTimes::new()
                    .set_modified(self.mtime)
                    .set_accessed(self.mtime),
            )?;
            if self.fsync {
                f.sync_all()?;
            }
            self.tmp.rename(&tmp_name, self.dir, name)
        })();
        if r.is_err() {
            let _ = self.tmp.remove_file(&tmp_name);
        }
        r.map(|()| true)
    }
}

/// What a run did to messages and control files (of one folder, or of all).
#[derive(Debug, Default)]
pub struct Counts {
    /// Messages in place in DEST (already there, renamed or written).
    pub messages: u64,
    pub written: u64,
    pub written_bytes: u64,
    pub renamed: u64,
    pub removed: u64,
    pub control_written: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.messages += o.messages;
        self.written += o.written;
        self.written_bytes += o.written_bytes;
        self.renamed += o.renamed;
        self.removed += o.removed;
        self.control_written += o.control_written;
    }
}

/// The base name of a message file (before `:2,`).
pub fn base_of(name: &str) -> &str {
    name.split_once(':').map_or(name, |(b, _)| b)
}

/// A folder to write, with its user.
type Work<'t> = (&'t UserTree, &'t Folder);

/// What every folder's writing shares.
struct Ctx<'a> {
    dest: &'a Dir,
    index_opts: &'a IndexOptions,
    opts: &'a Options,
    chown: bool,
    progress: &'a Progress,
}

/// A folder's directories in DEST, open.
struct FolderDirs {
    dir: Dir,
    cur: Dir,
    new: Dir,
    tmp: Dir,
}

impl FolderDirs {
    fn open(dest: &Dir, u: &UserTree, f: &Folder, chown: bool) -> Result<FolderDirs, String> {
        let root = own_dir(dest, &u.name, u.owner, chown)?;
        let dir = if f.is_inbox() {
            root
        } else {
            own_dir(&root, &f.dir, u.owner, chown)?
        };
        let sub = |s: Subdir| own_dir(&dir, s.name(), u.owner, chown);
        Ok(FolderDirs {
            cur: sub(Subdir::Cur)?,
            new: sub(Subdir::New)?,
            tmp: sub(Subdir::Tmp)?,
            dir,
        })
    }

    fn sub(&self, s: Subdir) -> &Dir {
        match s {
            Subdir::Cur => &self.cur,
            Subdir::New => &self.new,
            Subdir::Tmp => &self.tmp,
        }
    }
}

/// Message files present in `cur/` and `new/`: base name -> (dir, file name).
type Present = HashMap<String, (Subdir, String)>;

fn write_folder(
    ctx: &Ctx<'_>,
    u: &UserTree,
    f: &Folder,
    ix: &Indexed,
    s: &mut Counts,
) -> Result<(), String> {
    let d = FolderDirs::open(ctx.dest, u, f, ctx.chown)?;
    // Leftovers of a run that was stopped: only ever partial copies.
    for (name, _) in d.tmp.list().map_err(|e| io_err(d.tmp.path(), e))? {
        let b = name.as_encoded_bytes();
        if model::parse_message_name(b).is_some() || b.starts_with(CONTROL_TMP_PREFIX.as_bytes()) {
            let _ = d.tmp.remove_file(&name);
        }
    }
    // The file to copy from: the descriptor the index was made from, or (when too many were
    // open) the source opened again, which must be the same file, else it is indexed again.
    let mut reopened = None;
    let mut fresh: Option<(FolderIndex, Option<OpenSource>)> = None;
    if let (None, Some(id)) = (&ix.src, ix.id) {
        match f.open_source().map_err(|e| source_error(f, &e))? {
            Some(src) if src.id == id => reopened = Some(src),
            src => fresh = Some(reindex(ctx, f, src)?),
        }
    }
    let mut attempt = 0;
    let present = loop {
        let (index, src) = match (&fresh, &reopened) {
            (Some((i, src)), _) => (i, src.as_ref()),
            (None, Some(src)) => (&ix.index, Some(src)),
            (None, None) => (&ix.index, ix.src.as_ref()),
        };
        let mut a = Counts::default();
        let mut written = Vec::new();
        let r = copy_messages(ctx, u, f, &d, index, src, &mut a, &mut written);
        // A copy that failed may have failed because the file shrank: look at it either way.
        let changed = match src {
            Some(src) => src
                .changed()
                .map_err(|e| format!("{}: {e}", src.path.display()))?,
            None => false,
        };
        if !changed {
            s.add(&a);
            match r {
                Ok(present) => break present,
                Err(e) => return Err(e),
            }
        }
        // Copied from a file that changed meanwhile: the copies may be slices of other
        // messages. Remove them, and index the file as it is now.
        for (sub, name) in &written {
            let _ = d.sub(*sub).remove_file(name);
        }
        attempt += 1;
        let path = src
            .map(|s| s.path.display().to_string())
            .unwrap_or_default();
        if attempt == 2 {
            // What stays in place: the messages that were there already.
            s.messages += a.messages - a.written;
            s.renamed += a.renamed;
            return Err(format!(
                "{path}: changed while it was copied, twice; its new messages were not copied: run again when it is quiet"
            ));
        }
        log::warn!("{path}: changed while it was copied; reading it again");
        let src = f.open_source().map_err(|e| source_error(f, &e))?;
        fresh = Some(reindex(ctx, f, src)?);
    };
    let (index, src) = match (&fresh, &reopened) {
        (Some((i, src)), _) => (i, src.as_ref()),
        (None, Some(src)) => (&ix.index, Some(src)),
        (None, None) => (&ix.index, ix.src.as_ref()),
    };
    // Files of messages the source no longer has (made by an earlier run).
    for (_, (sub, name)) in present {
        if model::parse_message_name(name.as_bytes()).is_some()
            && name.contains(&format!(".{:08x},", f.tag))
        {
            d.sub(sub)
                .remove_file(&name)
                .map_err(|e| io_err(&d.sub(sub).path().join(&name), e))?;
            s.removed += 1;
        }
    }
    // Control files, the uidlist last: it must never name a file that is not there.
    let control = Control {
        dir: &d.dir,
        tmp: &d.tmp,
        mtime: model::folder_mtime(src.map(|s| &s.id)),
        owner: ctx.chown.then_some(u.owner),
        fsync: ctx.opts.fsync,
    };
    let mut controls = f.control_files(index);
    controls.sort_by_key(|(n, _)| *n == model::UIDLIST);
    for (name, bytes) in controls {
        let bytes = if name == model::UIDLIST {
            // Never lower the N that Dovecot may have raised; keep its GUID.
            let theirs = control.read(name, bytes.len());
            crate::fs::merge_uidlist(&bytes, theirs.as_deref())
        } else {
            bytes
        };
        if control
            .write(name, &bytes)
            .map_err(|e| io_err(&d.dir.path().join(name), e))?
        {
            s.control_written += 1;
        }
    }
    if ctx.opts.fsync {
        fsync_dir(&d.dir).map_err(|e| io_err(d.dir.path(), e))?;
    }
    Ok(())
}

/// Indexes a source opened again (or none, if it is gone).
fn reindex(
    ctx: &Ctx<'_>,
    f: &Folder,
    src: Option<OpenSource>,
) -> Result<(FolderIndex, Option<OpenSource>), String> {
    match src {
        Some(src) => {
            let index = f
                .index_source(&src, ctx.index_opts)
                .map_err(|e| source_error(f, &e))?;
            Ok((index, Some(src)))
        }
        None => Ok((f.empty_index(ctx.index_opts), None)),
    }
}

/// Puts every message of `index` in place: keeps what is there, renames what changed flags,
/// and copies the rest from `src`. Returns what is left of what was there (files of messages
/// the index does not have). Counts go to `a`, and the files written to `written`, as they
/// happen (also when it fails halfway).
#[allow(clippy::too_many_arguments)]
fn copy_messages(
    ctx: &Ctx<'_>,
    u: &UserTree,
    f: &Folder,
    d: &FolderDirs,
    index: &FolderIndex,
    src: Option<&OpenSource>,
    a: &mut Counts,
    written: &mut Vec<(Subdir, String)>,
) -> Result<Present, String> {
    let mut present = Present::new();
    for sub in [Subdir::Cur, Subdir::New] {
        let dir = d.sub(sub);
        for (name, _) in dir.list().map_err(|e| io_err(dir.path(), e))? {
            // Names that are not UTF-8 are not mboxfs's: left alone.
            if let Ok(name) = OsString::into_string(name) {
                present.insert(base_of(&name).to_string(), (sub, name));
            }
        }
    }
    for m in &index.messages {
        let (sub, name) = f.message_file(index, m);
        let base = base_of(&name).to_string();
        let size = m.size(index);
        if let Some((have_sub, have_name)) = present.remove(&base) {
            let have = d.sub(have_sub);
            let intact = have
                .stat_at(&have_name)
                .ok()
                .flatten()
                .is_some_and(|st| st.kind == Kind::File && st.size == size);
            if intact {
                if (have_sub, have_name.as_str()) != (sub, name.as_str()) {
                    have.rename(&have_name, d.sub(sub), &name)
                        .map_err(|e| io_err(&have.path().join(&have_name), e))?;
                    a.renamed += 1;
                }
                a.messages += 1;
                ctx.progress.add(1, size);
                continue;
            }
            // A file cut short (power loss before the final sync), or not a file: again.
            let _ = have.remove_file(&have_name);
        }
        let src = src.ok_or("a message without a source")?;
        write_message(d, sub, &name, &src.file, index, m, u.owner, ctx)
            .map_err(|e| io_err(&d.tmp.path().join(&name), e))?;
        written.push((sub, name));
        a.messages += 1;
        a.written += 1;
        a.written_bytes += size;
        ctx.progress.add(1, size);
    }
    Ok(present)
}

/// Writes one message's served bytes into the folder's `tmp/` with its mtime and owner, then
/// renames it into `cur/` or `new/`.
#[allow(clippy::too_many_arguments)]
fn write_message(
    d: &FolderDirs,
    sub: Subdir,
    name: &str,
    source: &File,
    index: &FolderIndex,
    m: &Msg,
    owner: Owner,
    ctx: &Ctx<'_>,
) -> io::Result<()> {
    let out = create_fresh(&d.tmp, name)?;
    let r = (|| {
        // Each segment is copied in the kernel (copy_file_range), at explicit offsets.
        let mut at = 0u64;
        for seg in index.segments(m) {
            sys::copy_range(source, seg.start, &out, at, seg.end - seg.start)?;
            at += seg.end - seg.start;
        }
        if ctx.chown {
            std::os::unix::fs::fchown(&out, Some(owner.uid), Some(owner.gid))?;
        }
        let mtime = model::message_mtime(m);
        let t = model::system_time(mtime, 0);
        out.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))?;
        // A file system that cannot hold the date keeps another: it would not be what verify
        // expects, nor what Dovecot should show.
        let stored = out.metadata()?.mtime();
        if stored != mtime {
            return Err(io::Error::other(format!(
                "the file system stored mtime {stored} instead of {mtime} (UID {}): it cannot hold this date",
                m.uid
            )));
        }
        if ctx.opts.fsync {
            out.sync_all()?;
        }
        d.tmp.rename(name, d.sub(sub), name)?;
        if ctx.opts.fsync {
            fsync_dir(d.sub(sub))?;
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = d.tmp.remove_file(name);
    }
    r
}
