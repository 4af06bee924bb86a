//! Reading a folder's mbox for the mount: opening it through the safe walk, indexing it whole or
//! only what was appended (under the writers' read locks), fingerprints that tell an append
//! from a rewrite, and the hashes that identify messages.

use super::uids::{self, Hash};
use super::*;

/// Hashes of the start of the file, of the end, and of the start of the last message: if an
/// mbox grew and these are unchanged, mail was appended (anything else is a rewrite).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fingerprint {
    pub(super) head: u64,
    pub(super) tail: u64,
    pub(super) last: u64,
}

pub(super) const FINGERPRINT_SPAN: u64 = 4096;

pub(super) fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(super) fn hash_range(file: &File, start: u64, len: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, start)?;
    Ok(fnv64(&buf))
}

pub(super) fn fingerprint(
    file: &File,
    len: u64,
    last_from: Option<u64>,
) -> io::Result<Fingerprint> {
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
pub(super) fn ends_with_blank_line(file: &File, len: u64) -> bool {
    let span = len.min(4);
    let mut buf = vec![0u8; span as usize];
    file.read_exact_at(&mut buf, len - span).is_ok()
        && (buf.ends_with(b"\n\n") || buf.ends_with(b"\n\r\n"))
}

/// A freshly read folder, before it becomes a snapshot.
pub(super) struct Indexed {
    /// With the mbox's own UIDVALIDITY and, for messages read now, its UIDs.
    pub(super) index: FolderIndex,
    pub(super) file: Arc<File>,
    pub(super) id: FileId,
    pub(super) fp: Option<Fingerprint>,
    pub(super) fp_from: Option<u64>,
    /// The writers' locks were had and the file ends like a finished delivery.
    pub(super) complete: bool,
    /// The first messages, already served and unchanged.
    pub(super) fixed: usize,
}

/// What was found where a folder's mbox should be.
pub(super) enum Source {
    Open(File, FileId),
    /// Not there (yet, or any more).
    Missing,
    /// There, but not to be read (and why).
    Refused(String),
}

/// Identities of messages `range` of `index`: a hash of each one's date and served bytes.
pub(super) fn hash_messages(
    file: &File,
    index: &FolderIndex,
    range: std::ops::Range<usize>,
) -> io::Result<Vec<Hash>> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = Vec::with_capacity(range.len());
    for m in &index.messages[range] {
        // An MMDF message without From_ line is dated with the file's mtime, which moves.
        let date_from_file = m.flags & crate::scan::flag::DATE_FROM_FILE != 0;
        let mut h = uids::Hasher::new(if date_from_file { 0 } else { m.time });
        for seg in index.segments(m) {
            let mut at = seg.start;
            while at < seg.end {
                let n = ((seg.end - at) as usize).min(buf.len());
                file.read_exact_at(&mut buf[..n], at)?;
                h.update(&buf[..n]);
                at += n as u64;
            }
        }
        out.push(h.finish());
    }
    Ok(out)
}

impl MailFs {
    /// Opens a folder's mbox through the safe walk (no symbolic link followed below the admin's
    /// directory) and checks it on the descriptor that is then read (see
    /// [`Folder::open_source`](crate::model::Folder::open_source)).
    pub(super) fn open_source(&self, st: &FolderState) -> io::Result<Source> {
        match st.folder.open_source() {
            Ok(Some(src)) => Ok(Source::Open(src.file, src.id)),
            Ok(None) => Ok(Source::Missing),
            Err(mbox::ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                Ok(Source::Missing)
            }
            Err(mbox::ReadError::Io(e)) => Err(e),
            Err(mbox::ReadError::NotMbox(why)) => Ok(Source::Refused(why)),
        }
    }

    /// The open mbox of a snapshot: from the open-file cache, or opened again (and checked to
    /// be the same file). `None`: it is not that file any more.
    pub(super) fn source_file(
        &self,
        g: usize,
        st: &FolderState,
        snap: &Snapshot,
    ) -> io::Result<Option<Arc<File>>> {
        let Some(id) = snap.id else {
            return Ok(None);
        };
        let same = |a: &FileId| a.dev == id.dev && a.ino == id.ino;
        if let Some((have, f)) = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&g)
        {
            if same(have) {
                return Ok(Some(f.clone()));
            }
        }
        if st.path.is_none() {
            return Ok(None);
        }
        match self.open_source(st)? {
            Source::Open(file, now) if same(&now) => {
                let file = Arc::new(file);
                self.sources
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .put(g, (now, file.clone()));
                Ok(Some(file))
            }
            _ => Ok(None),
        }
    }

    pub(super) fn index_options(&self, st: &FolderState) -> IndexOptions {
        IndexOptions {
            mode: ReadMode::Pread,
            ..st.folder.index_options(&self.opts.index)
        }
    }

    /// Reads the whole mbox.
    pub(super) fn index(
        &self,
        st: &FolderState,
        path: &Path,
        file: Arc<File>,
    ) -> io::Result<Indexed> {
        let started = Instant::now();
        let indexed = self.read_locked(st, file, path, 0, |file, len| {
            mbox::index_file(file, len, &self.index_options(st))
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
    pub(super) fn index_appended(
        &self,
        st: &FolderState,
        path: &Path,
        old: &Snapshot,
        file: &Arc<File>,
        id: &FileId,
    ) -> Option<io::Result<Indexed>> {
        let (Some(oid), Some(fp), Some(resume)) = (old.id, old.fp, old.index.resume.as_ref())
        else {
            return None;
        };
        if oid.dev != id.dev || oid.ino != id.ino || id.len <= oid.len {
            return None;
        }
        if fingerprint(file, oid.len, Some(resume.from_line)).ok()? != fp {
            return None;
        }
        let fixed = resume.messages;
        let started = Instant::now();
        let r = self.read_locked(st, file.clone(), path, fixed, |file, len| {
            mbox::index_appended(file, len, old.source_index(), &self.index_options(st))
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
    pub(super) fn read_locked(
        &self,
        st: &FolderState,
        file: Arc<File>,
        path: &Path,
        fixed: usize,
        read: impl FnOnce(&File, u64) -> std::result::Result<FolderIndex, mbox::ReadError>,
    ) -> io::Result<Indexed> {
        let lock = crate::lock::read_lock(&file, path, self.opts.lock);
        if self.opts.lock != crate::lock::LockMode::None {
            let warned = st.lock_warned.swap(!lock.is_complete(), Ordering::Relaxed);
            if !lock.is_complete() && !warned {
                log::warn!(
                    "{}: a writer held its lock for over {:?}; reading without locks (its last \
                     message is shown once the file has been quiet for {:?}); said once until \
                     the lock is had again",
                    path.display(),
                    crate::lock::LOCK_WAIT,
                    SETTLE
                );
            }
        }
        // Measured after locking: a delivery in progress has finished.
        let id = FileId::of(&file.metadata()?);
        let index = read(&file, id.len).map_err(|e| match e {
            mbox::ReadError::Io(e) => e,
            mbox::ReadError::NotMbox(why) => io::Error::new(io::ErrorKind::InvalidData, why),
        })?;
        let last_from = index.resume.as_ref().map(|r| r.from_line);
        let fp = fingerprint(&file, id.len, last_from).ok();
        let complete = lock.is_complete() && ends_with_blank_line(&file, id.len);
        drop(lock);
        Ok(Indexed {
            index,
            file,
            id,
            fp,
            fp_from: last_from,
            complete,
            fixed,
        })
    }
}
