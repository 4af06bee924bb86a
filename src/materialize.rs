//! `mboxfs materialize DEST`: writes the model's trees as real files, exactly what the mount
//! shows (names, bytes, mtimes, control files).
//!
//! Safe to repeat: each message is written into its folder's `tmp/`, gets its mtime and owner,
//! and only then is renamed into `cur/` or `new/`, so a run killed at any point leaves no partial
//! message there. A rerun skips messages already in place (same name, same size), renames those
//! whose flags changed, removes leftovers in `tmp/` and files of messages no longer in the
//! source, and rewrites control files only when they differ. `dovecot-uidlist` is written last,
//! and never lowers an `N` that Dovecot raised. A run over a finished DEST writes nothing.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::index::{FolderIndex, Msg};
use crate::mbox::{self, IndexOptions};
use crate::model::{self, Folder, Subdir, Tree, UserTree};
use crate::source::Owner;
use crate::{parallel, sys};

/// Folders written at once by default: creating files on a journaling file system waits on the
/// disk, so more jobs than cores pay (measured by scripts/bench.sh: 5.1 s with 1 job, 1.75 s
/// with 2, 1.19 s with 4, 1.09 s with 8 on a 2-core machine).
pub const DEFAULT_JOBS: usize = 8;

/// The file that marks a DEST as made by mboxfs.
pub const MARKER: &str = ".mboxfs-materialize";

pub struct Options {
    pub jobs: usize,
    pub fsync: bool,
    pub force: bool,
    /// Progress bar (on a terminal) or periodic lines.
    pub progress: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub folders: usize,
    pub messages: u64,
    pub written: u64,
    pub written_bytes: u64,
    pub renamed: u64,
    pub removed: u64,
    pub control_written: u64,
    /// (what, why) of each failure.
    pub failures: Vec<(String, String)>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn wrote_nothing(&self) -> bool {
        self.written == 0 && self.renamed == 0 && self.removed == 0 && self.control_written == 0
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

/// Checks (or claims) DEST. Fails for a non-empty DEST that mboxfs did not make, unless forced.
fn prepare_dest(dest: &Path, force: bool) -> Result<(), String> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            let empty = entries.next().is_none();
            if !empty && !dest.join(MARKER).exists() && !force {
                return Err(format!(
                    "{} is not empty and was not made by mboxfs materialize; give --force to write into it",
                    dest.display()
                ));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dest)
                .map_err(|e| format!("{}: {e}", dest.display()))?;
        }
        Err(e) => return Err(format!("{}: {e}", dest.display())),
    }
    std::fs::write(
        dest.join(MARKER),
        "made by mboxfs materialize; safe to remove after the migration\n",
    )
    .map_err(|e| format!("{}: {e}", dest.display()))
}

/// Writes every user's tree under `dest`.
pub fn run(
    tree: &Tree,
    index_opts: &IndexOptions,
    dest: &Path,
    opts: &Options,
) -> Result<Summary, String> {
    let started = Instant::now();
    prepare_dest(dest, opts.force)?;
    let chown = sys::euid() == 0;
    // Index everything first: it gives the totals for the progress bar and fails early.
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
        let root = dest.join(&u.name);
        if let Err(e) = make_dir(&root, u.owner, chown) {
            summary
                .failures
                .push((u.name.clone(), format!("{}: {e}", root.display())));
        }
    }
    // Each folder is indexed once; the totals give the progress bar its length.
    let indexes: Vec<Result<Indexed, String>> = parallel::map(&work, opts.jobs, |(_, f)| {
        f.index(index_opts).map_err(|e| match f.source.as_ref() {
            Some(p) => format!("{}: {e}", p.display()),
            None => e.to_string(),
        })
    });
    let totals = indexes.iter().flatten().fold((0, 0), |(n, b), (ix, _)| {
        (
            n + ix.messages.len() as u64,
            b + ix.messages.iter().map(|m| m.size(ix)).sum::<u64>(),
        )
    });
    let progress = Progress::new(totals.0, totals.1, opts.progress);
    let jobs: Vec<(Work, Result<Indexed, String>)> = work.into_iter().zip(indexes).collect();
    let results = parallel::map(&jobs, opts.jobs, |((u, f), indexed)| {
        let r = match indexed {
            Ok(ix) => write_folder(u, f, ix, dest, opts, chown, &progress),
            Err(e) => Err(e.clone()),
        };
        (format!("{}/{}", u.name, f.display), r)
    });
    progress.finish();
    for (what, r) in results {
        summary.folders += 1;
        match r {
            Ok(s) => {
                summary.messages += s.messages;
                summary.written += s.written;
                summary.written_bytes += s.written_bytes;
                summary.renamed += s.renamed;
                summary.removed += s.removed;
                summary.control_written += s.control_written;
            }
            Err(e) => summary.failures.push((what, e)),
        }
    }
    for u in &tree.users {
        let root = dest.join(&u.name);
        let inbox_id = u.folders[0]
            .source
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| mbox::FileId::of(&m));
        let mtime = model::folder_mtime(inbox_id.as_ref());
        match write_control(
            &root.join(model::SUBSCRIPTIONS),
            &u.subscriptions_file(),
            mtime,
            u.owner,
            chown,
            opts.fsync,
        ) {
            Ok(true) => summary.control_written += 1,
            Ok(false) => {}
            Err(e) => summary
                .failures
                .push((u.name.clone(), format!("subscriptions: {e}"))),
        }
    }
    if !opts.fsync {
        sys::syncfs(dest).map_err(|e| format!("sync {}: {e}", dest.display()))?;
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn make_dir(path: &Path, owner: Owner, chown: bool) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !std::fs::symlink_metadata(path)?.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a directory",
                ));
            }
        }
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    if chown {
        std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))?;
    }
    Ok(())
}

fn fsync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Writes a control file through a temporary file and a rename, unless it already holds `bytes`.
/// Returns whether it wrote.
fn write_control(
    path: &Path,
    bytes: &[u8],
    mtime: SystemTime,
    owner: Owner,
    chown: bool,
    fsync: bool,
) -> io::Result<bool> {
    if std::fs::read(path).is_ok_and(|b| b == bytes) {
        return Ok(false);
    }
    let tmp = path.with_file_name(format!(
        ".{}.mboxfs-tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if chown {
            std::os::unix::fs::fchown(&f, Some(owner.uid), Some(owner.gid))?;
        }
        f.set_times(
            std::fs::FileTimes::new()
                .set_modified(mtime)
                .set_accessed(mtime),
        )?;
        if fsync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    Ok(true)
}

#[derive(Default)]
struct FolderSummary {
    messages: u64,
    written: u64,
    written_bytes: u64,
    renamed: u64,
    removed: u64,
    control_written: u64,
}

/// The base name of a message file (before `:2,`).
pub fn base_of(name: &str) -> &str {
    name.split_once(':').map_or(name, |(b, _)| b)
}

/// A folder's index and its source's identity.
type Indexed = (FolderIndex, Option<mbox::FileId>);
/// A folder to write, with its user.
type Work<'t> = (&'t UserTree, &'t Folder);

fn write_folder(
    u: &UserTree,
    f: &Folder,
    (index, source_id): &Indexed,
    dest: &Path,
    opts: &Options,
    chown: bool,
    progress: &Progress,
) -> Result<FolderSummary, String> {
    let (index, source_id) = (index, *source_id);
    let dir = dest.join(&u.name).join(&f.dir);
    let io_err = |what: &Path, e: io::Error| {
        if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
            format!(
                "{}: the disk is full ({e}); free space and run again",
                what.display()
            )
        } else {
            format!("{}: {e}", what.display())
        }
    };
    make_dir(&dir, u.owner, chown).map_err(|e| io_err(&dir, e))?;
    for s in Subdir::ALL {
        let d = dir.join(s.name());
        make_dir(&d, u.owner, chown).map_err(|e| io_err(&d, e))?;
    }
    // Leftovers of a run that was stopped: only ever partial copies.
    let tmp = dir.join("tmp");
    for e in std::fs::read_dir(&tmp)
        .map_err(|e| io_err(&tmp, e))?
        .flatten()
    {
        if model::parse_message_name(e.file_name().as_encoded_bytes()).is_some() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    // What is already there: base name -> (dir, file name).
    let mut present: HashMap<String, (Subdir, String)> = HashMap::new();
    for s in [Subdir::Cur, Subdir::New] {
        let d = dir.join(s.name());
        for e in std::fs::read_dir(&d).map_err(|e| io_err(&d, e))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            present.insert(base_of(&name).to_string(), (s, name));
        }
    }
    let source = match &f.source {
        Some(p) => Some(
            mbox::open(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .0,
        ),
        None => None,
    };
    let mut s = FolderSummary::default();
    for m in &index.messages {
        s.messages += 1;
        let (sub, name) = f.message_file(index, m);
        let base = base_of(&name).to_string();
        let size = m.size(index);
        let target = dir.join(sub.name()).join(&name);
        if let Some((have_sub, have_name)) = present.remove(&base) {
            let have = dir.join(have_sub.name()).join(&have_name);
            let intact =
                std::fs::symlink_metadata(&have).is_ok_and(|md| md.is_file() && md.len() == size);
            if intact {
                if have != target {
                    std::fs::rename(&have, &target).map_err(|e| io_err(&have, e))?;
                    s.renamed += 1;
                }
                progress.add(1, size);
                continue;
            }
            // A file cut short (power loss before the final sync): write it again.
            let _ = std::fs::remove_file(&have);
        }
        let file = source.as_ref().ok_or("a message without a source")?;
        let tmp_path = dir.join("tmp").join(&name);
        if let Err(e) = write_message(file, index, m, &tmp_path, u.owner, chown, opts.fsync) {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(io_err(&tmp_path, e));
        }
        std::fs::rename(&tmp_path, &target).map_err(|e| io_err(&target, e))?;
        if opts.fsync {
            fsync_dir(&dir.join(sub.name())).map_err(|e| io_err(&dir, e))?;
        }
        s.written += 1;
        s.written_bytes += size;
        progress.add(1, size);
    }
    // Files of messages the source no longer has (made by an earlier run).
    for (_, (sub, name)) in present {
        if model::parse_message_name(name.as_bytes()).is_some()
            && name.contains(&format!(".{:08x},", f.tag))
        {
            let p = dir.join(sub.name()).join(&name);
            std::fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
            s.removed += 1;
        }
    }
    // Control files, the uidlist last: it must never name a file that is not there.
    let mut controls = f.control_files(index);
    controls.sort_by_key(|(n, _)| *n == model::UIDLIST);
    for (name, bytes) in controls {
        let path = dir.join(name);
        let bytes = if name == model::UIDLIST {
            // Never lower the N that Dovecot may have raised; keep its GUID.
            let theirs = std::fs::read(&path).ok();
            crate::fs::merge_uidlist(&bytes, theirs.as_deref())
        } else {
            bytes
        };
        let mtime = model::folder_mtime(source_id.as_ref());
        if write_control(&path, &bytes, mtime, u.owner, chown, opts.fsync)
            .map_err(|e| io_err(&path, e))?
        {
            s.control_written += 1;
        }
    }
    if opts.fsync {
        fsync_dir(&dir).map_err(|e| io_err(&dir, e))?;
    }
    Ok(s)
}

/// Writes one message's served bytes to `path` with its mtime and owner.
fn write_message(
    source: &File,
    index: &FolderIndex,
    m: &Msg,
    path: &Path,
    owner: Owner,
    chown: bool,
    fsync: bool,
) -> io::Result<()> {
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // Each segment is copied in the kernel (copy_file_range), at explicit offsets.
    let mut at = 0u64;
    for seg in index.segments(m) {
        crate::sys::copy_range(source, seg.start, &out, at, seg.end - seg.start)?;
        at += seg.end - seg.start;
    }
    if chown {
        std::os::unix::fs::fchown(&out, Some(owner.uid), Some(owner.gid))?;
    }
    out.set_times(
        std::fs::FileTimes::new()
            .set_modified(model::system_time(m.time, 0))
            .set_accessed(model::system_time(m.time, 0)),
    )?;
    if fsync {
        out.sync_all()?;
    }
    Ok(())
}

/// The path of a user's folder in DEST.
pub fn folder_dir(dest: &Path, user: &UserTree, f: &Folder) -> PathBuf {
    dest.join(&user.name).join(&f.dir)
}
