//! Folder snapshots: indexing an mbox, following it as it changes, and telling the kernel what
//! changed.

use super::*;

/// One generation of one folder, as indexed.
pub struct Snapshot {
    /// Every message read so far. Only the first `shown` are in the view: the last one is held
    /// back while it may still be being written.
    pub index: Arc<FolderIndex>,
    pub(super) shown: usize,
    /// The last message is held back: look again once the file has been quiet this long.
    pub(super) provisional: Option<Duration>,
    /// The UIDVALIDITY the mbox itself gives (the view's differs after a UID was reused).
    pub(super) source_uidvalidity: u32,
    /// The source, open, for reading message bytes.
    pub(super) file: Option<Arc<File>>,
    pub(super) id: Option<FileId>,
    /// Fingerprints of the bytes an append leaves alone.
    pub(super) fp: Option<Fingerprint>,
    pub(super) slot: u32,
    /// The mtime shown for the folder's directories.
    pub(super) mtime: SystemTime,
    /// Messages in `cur/` and `new/` (positions in `index.messages`).
    pub(super) cur: Vec<u32>,
    pub(super) new: Vec<u32>,
    /// Our `dovecot-uidlist`, made on first use.
    pub(super) uidlist: std::sync::OnceLock<Vec<u8>>,
}

impl Snapshot {
    pub(super) fn listing(&self, sub: Subdir) -> &[u32] {
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

    pub(super) fn position(&self, uid: u32) -> Option<usize> {
        self.messages().binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub(super) fn by_uid(&self, uid: u32) -> Option<&Msg> {
        self.position(uid).map(|i| &self.messages()[i])
    }
}

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

/// How long a file must be left alone before its last message is trusted to be complete, when
/// the writers' locks could not be had or the file does not end like a finished delivery.
pub const SETTLE: Duration = Duration::from_secs(1);
/// The same when the locks were had and the file ends like a finished delivery (a writer that
/// takes no lock may still be between two writes of one message).
pub const SETTLE_COMPLETE: Duration = Duration::from_millis(100);

/// A freshly read folder, before it becomes a snapshot.
pub(super) struct Indexed {
    pub(super) index: FolderIndex,
    pub(super) file: Arc<File>,
    pub(super) id: FileId,
    pub(super) fp: Option<Fingerprint>,
    /// The writers' locks were had and the file ends like a finished delivery.
    pub(super) complete: bool,
}

impl MailFs {
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
    pub(super) fn mark_stale(&self, g: usize) {
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
    pub(super) fn invalidate(&self, g: usize, old: &Snapshot, new: &Snapshot) {
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

    pub(super) fn send(&self, inv: Invalidation) {
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
    pub(super) fn refresh(&self, g: usize, old: Option<&Snapshot>) -> Option<Snapshot> {
        let folder = self.folder(g);
        let user = &self.tree.users[self.folders[g].user];
        let Some(path) = folder.source.as_ref() else {
            return match old {
                Some(_) => None,
                None => Some(self.empty_snapshot(g, old)),
            };
        };
        // The source is opened again each time through the safe walk (no symlink followed) and
        // checked on the opened file: it may have become a symlink since. The file indexed and
        // read is the one checked.
        let src = match folder.open_source() {
            Ok(Some(src)) => src,
            Ok(None) => return Some(self.empty_snapshot(g, old)),
            Err(mbox::ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
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
        let id = src.id;
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
            None => self.index(g, path, src.file),
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

    pub(super) fn index_options(&self, g: usize) -> IndexOptions {
        IndexOptions {
            mode: ReadMode::Pread,
            ..self.folder(g).index_options(&self.opts.index)
        }
    }

    /// Reads the whole mbox, from the file `refresh` opened and checked.
    pub(super) fn index(
        &self,
        g: usize,
        path: &Path,
        file: File,
    ) -> std::result::Result<Indexed, mbox::ReadError> {
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
    pub(super) fn index_appended(
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
    pub(super) fn read_locked(
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

    pub(super) fn empty_snapshot(&self, g: usize, old: Option<&Snapshot>) -> Snapshot {
        self.make_snapshot(g, None, old)
    }

    /// Publishes what was read as a snapshot: holds back a last message that may be incomplete,
    /// keeps inodes while every UID still means the same message, never lowers the next UID,
    /// and makes a new generation (a new UIDVALIDITY) when a UID would come to mean another
    /// message.
    pub(super) fn make_snapshot(
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
}
