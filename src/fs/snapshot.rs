//! Folder snapshots: indexing an mbox, following it as it changes, giving its messages the
//! UIDs clients were (or will be) shown, and telling the kernel what changed.

use super::uids::{self, Hash};
use super::*;

/// A listing of a directory, and the change count it was made for.
pub(super) type Listing = (u64, Arc<Vec<DirEntry>>);

/// One reading of one folder.
pub struct Snapshot {
    /// Every message read so far, with the UIDVALIDITY and UIDs the view serves (see
    /// [`uids`](super::uids)). Only the first `shown` are in the view, in UID order: the last
    /// one is held back while it may still be being written.
    pub index: Arc<FolderIndex>,
    /// What identifies each shown message (its date and bytes).
    pub(super) hashes: Vec<Hash>,
    pub(super) shown: usize,
    /// The last message is held back: look again once the file has been quiet this long.
    pub(super) provisional: Option<Duration>,
    /// What the mbox itself says.
    pub(super) source_uidvalidity: u32,
    pub(super) source_next: u32,
    /// The mbox read (`None`: there is none, or it is refused).
    pub(super) id: Option<FileId>,
    /// Fingerprints of the bytes an append leaves alone, and where the last one starts.
    pub(super) fp: Option<Fingerprint>,
    pub(super) fp_from: Option<u64>,
    pub(super) slot: u32,
    /// The mtime shown for the folder's directories.
    pub(super) mtime: SystemTime,
    /// Messages in `cur/` and `new/` (positions in `index.messages`).
    pub(super) cur: Vec<u32>,
    pub(super) new: Vec<u32>,
    /// The entries of `cur/` and `new/`, made on first use.
    pub(super) entries: [OnceLock<Arc<Vec<DirEntry>>>; 2],
    /// On a writable mount, the entries of `cur/`, `new/` and `tmp/` with testers' changes,
    /// and the folder's change count they were made for.
    pub(super) changed_entries: [Mutex<Option<Listing>>; 3],
}

impl Snapshot {
    pub(super) fn listing(&self, sub: Subdir) -> &[u32] {
        match sub {
            Subdir::Cur => &self.cur,
            Subdir::New => &self.new,
            Subdir::Tmp => &[],
        }
    }

    /// The messages in the view, in UID order.
    pub fn messages(&self) -> &[Msg] {
        &self.index.messages[..self.shown]
    }

    pub(super) fn position(&self, uid: u32) -> Option<usize> {
        self.messages().binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub(super) fn by_uid(&self, uid: u32) -> Option<&Msg> {
        self.position(uid).map(|i| &self.messages()[i])
    }

    /// The inode of a shown message.
    pub(super) fn ino(&self, m: &Msg) -> Ino {
        (u64::from(self.slot) << 32) | u64::from(m.uid)
    }

    /// (served UID, identity) of every shown message.
    fn live(&self) -> Vec<(u32, Hash)> {
        self.messages()
            .iter()
            .zip(&self.hashes)
            .map(|(m, h)| (m.uid, *h))
            .collect()
    }
}

/// How long a file must be left alone before its last message is trusted to be complete, when
/// the writers' locks could not be had or the file does not end like a finished delivery.
pub const SETTLE: Duration = Duration::from_secs(1);
/// The same when the locks were had and the file ends like a finished delivery (a writer that
/// takes no lock may still be between two writes of one message).
pub const SETTLE_COMPLETE: Duration = Duration::from_millis(100);

impl MailFs {
    /// The folder's current snapshot, (re)indexing when it is due.
    pub fn snapshot(&self, g: usize) -> Result<Arc<Snapshot>> {
        let st = self.state(g).ok_or(Errno::ENOENT)?;
        self.snapshot_of(g, &st)
    }

    pub(super) fn snapshot_of(&self, g: usize, st: &FolderState) -> Result<Arc<Snapshot>> {
        let current = || st.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        let fresh = |snap: &Option<Arc<Snapshot>>| {
            let checked = *st.checked.lock().unwrap_or_else(|e| e.into_inner());
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
        let mut book = st.indexing.lock().unwrap_or_else(|e| e.into_inner());
        let old = current();
        if fresh(&old) {
            return Ok(old.expect("fresh implies a snapshot"));
        }
        let result = self.refresh(g, st, &mut book, old.as_deref());
        *st.checked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        match result {
            Ok(Some(new)) => {
                let new = Arc::new(new);
                *st.current.write().unwrap_or_else(|e| e.into_inner()) = Some(new.clone());
                if let Some(old) = &old {
                    self.invalidate(g, st, old, &new);
                }
                Ok(new)
            }
            Ok(None) => Ok(old.expect("refresh gives a snapshot when there is none")),
            Err(e) => {
                let what = format!(
                    "{}/{}: cannot read {}: {e}; {}",
                    self.user_tree(st.user).name,
                    st.folder.display,
                    st.path.as_deref().unwrap_or(Path::new("?")).display(),
                    if old.is_some() {
                        "still showing what was read before; trying again"
                    } else {
                        "trying again at the next access"
                    }
                );
                self.say(st, log::Level::Error, what);
                // Never an empty folder for one that has mail: the last reading, or an error.
                old.ok_or(Errno::EIO)
            }
        }
    }

    /// Forgets when the folder was last checked, so the next access looks at its mbox again.
    pub(super) fn mark_stale(&self, st: &FolderState) {
        *st.checked.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Where invalidations go (the mount sends them to the kernel from another thread).
    pub fn set_invalidations(&self, tx: std::sync::mpsc::Sender<Invalidation>) {
        *self.invalidations.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// Tells the kernel what changed between two snapshots of folder `g`.
    pub(super) fn invalidate(&self, g: usize, st: &FolderState, old: &Snapshot, new: &Snapshot) {
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
        let folder = &st.folder;
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
                out.push(Invalidation::Inode(old.ino(m)));
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

    /// A new snapshot if the mbox changed since `old` (or there is none yet); `None` to keep
    /// `old`. An error (the mbox cannot be read now) keeps `old` too.
    pub(super) fn refresh(
        &self,
        g: usize,
        st: &FolderState,
        book: &mut UidBook,
        old: Option<&Snapshot>,
    ) -> io::Result<Option<Snapshot>> {
        let user = self.user_tree(st.user);
        let Some(path) = st.path.as_ref() else {
            // A parent made for nested folders: no messages, ever.
            return match old {
                Some(_) => Ok(None),
                None => self.make_snapshot(g, st, book, None, old).map(Some),
            };
        };
        let (file, id) = match self.open_source(st)? {
            Source::Open(file, id) => (file, id),
            other => {
                st.present.store(false, Ordering::Relaxed);
                if let Source::Refused(why) = &other {
                    self.say(
                        st,
                        log::Level::Error,
                        format!(
                            "{}: {why}; {}/{} shows no messages",
                            path.display(),
                            user.name,
                            st.folder.display
                        ),
                    );
                } else if old.is_some_and(|o| o.id.is_some()) {
                    self.say(
                        st,
                        log::Level::Warn,
                        format!(
                            "{}: gone; {}/{} shows no messages",
                            path.display(),
                            user.name,
                            st.folder.display
                        ),
                    );
                }
                return match old {
                    Some(o) if o.id.is_none() => Ok(None),
                    _ => self.make_snapshot(g, st, book, None, old).map(Some),
                };
            }
        };
        st.present.store(true, Ordering::Relaxed);
        let file = Arc::new(file);
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(g, (id, file.clone()));
        if let Some(o) = old.filter(|o| o.id == Some(id)) {
            // Unchanged; a message held back may now be complete.
            if o.provisional.is_none() {
                return Ok(None);
            }
            let indexed = Indexed {
                index: o.source_index(),
                file,
                id,
                fp: o.fp,
                fp_from: o.fp_from,
                complete: o.provisional == Some(SETTLE_COMPLETE),
                fixed: o.shown,
            };
            return self
                .make_snapshot(g, st, book, Some(indexed), old)
                .map(Some);
        }
        let indexed = match old.and_then(|o| self.index_appended(st, path, o, &file, &id)) {
            Some(r) => r?,
            None => self.index(st, path, file)?,
        };
        self.make_snapshot(g, st, book, Some(indexed), old)
            .map(Some)
    }

    /// The next UID of Dovecot's own copy of the folder's uidlist, for the UIDVALIDITY served.
    fn their_next_uid(&self, st: &FolderState) -> Option<u32> {
        let theirs = std::fs::read(st.state_dir.join(model::UIDLIST)).ok()?;
        let head = String::from_utf8_lossy(overlay::split_first_line(&theirs).0).into_owned();
        let field = |k: char| {
            head.split(' ')
                .skip(1)
                .find(|f| f.starts_with(k))
                .and_then(|f| f[1..].parse::<u32>().ok())
        };
        let served = st
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()?
            .index
            .uidvalidity;
        (field('V') == Some(served)).then(|| field('N')).flatten()
    }

    /// The UID log of a folder, opened on first use.
    fn uid_log<'b>(
        &self,
        st: &FolderState,
        book: &'b mut UidBook,
    ) -> io::Result<&'b mut uids::Log> {
        if book.log.is_none() {
            let user = self.user_tree(st.user);
            let path = uid_log_path(
                &self.opts.state_dir,
                &user.name,
                st.folder.uw_name.as_deref(),
            );
            writable::make_private_dir(path.parent().expect("in the user's directory"))?;
            let (log, loaded) = match uids::Log::open(&path) {
                Ok(x) => x,
                Err(e) => {
                    // What was served before is unknown: a UIDVALIDITY above any earlier one.
                    let bad = path.with_extension(format!("bad-{}", unix_now()));
                    log::error!(
                        "{e}; kept as {}; {}/{} starts a new UIDVALIDITY",
                        bad.display(),
                        user.name,
                        st.folder.display
                    );
                    std::fs::rename(&path, &bad)?;
                    let (log, _) = uids::Log::open(&path)?;
                    let floor = uids::Generation {
                        uidvalidity: unix_now() as u32,
                        source_uidvalidity: 0,
                        next: 1,
                    };
                    (
                        log,
                        uids::Loaded {
                            generation: Some(floor),
                            live: Vec::new(),
                        },
                    )
                }
            };
            book.generation = loaded.generation;
            book.loaded = Some(loaded.live);
            book.log = Some(log);
        }
        Ok(book.log.as_mut().expect("opened above"))
    }

    /// Publishes what was read as a snapshot: gives each message its served UID (recorded in
    /// the state directory first), holds back a last message that may be incomplete, and keeps
    /// inodes while the UIDVALIDITY stays.
    fn make_snapshot(
        &self,
        g: usize,
        st: &FolderState,
        book: &mut UidBook,
        indexed: Option<Indexed>,
        old: Option<&Snapshot>,
    ) -> io::Result<Snapshot> {
        if st.path.is_none() {
            // No mbox (a parent made for nested folders, or a folder testers made): no UIDs of
            // ours to keep.
            let index = st.folder.empty_index(&self.opts.index);
            let slot = match old {
                Some(o) => o.slot,
                None => {
                    let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                    slots.push(g);
                    slots.len() as u32
                }
            };
            return Ok(Snapshot {
                source_uidvalidity: index.uidvalidity,
                source_next: index.uid_next,
                index: Arc::new(index),
                hashes: Vec::new(),
                shown: 0,
                provisional: None,
                id: None,
                fp: None,
                fp_from: None,
                slot,
                mtime: model::folder_mtime(None),
                cur: Vec::new(),
                new: Vec::new(),
                entries: Default::default(),
                changed_entries: Default::default(),
            });
        }
        self.uid_log(st, book)?;
        let (mut index, file, id, fp, fp_from, complete, fixed) = match indexed {
            Some(i) => (
                i.index,
                Some(i.file),
                Some(i.id),
                i.fp,
                i.fp_from,
                i.complete,
                i.fixed,
            ),
            None => (
                st.folder.empty_index(&self.opts.index),
                None,
                None,
                None,
                None,
                true,
                0,
            ),
        };
        let n = index.messages.len();
        let mut hashes: Vec<Hash> = match old {
            Some(o) if fixed > 0 => o.hashes[..fixed].to_vec(),
            _ => Vec::new(),
        };
        if let Some(file) = &file {
            hashes.extend(hash_messages(file, &index, fixed..n)?);
        }
        let live = match old {
            Some(o) => o.live(),
            None => book.loaded.take().unwrap_or_default(),
        };
        let before = book.generation;
        if self.opts.writable {
            // Dovecot gave UIDs to messages testers added: new mail of the mbox gets higher ones.
            if let (Some(n), Some(gen_now)) = (self.their_next_uid(st), book.generation.as_mut()) {
                gen_now.next = gen_now.next.max(n);
            }
        }
        let msgs: Vec<(u32, Hash)> = index
            .messages
            .iter()
            .zip(&hashes)
            .map(|(m, h)| (m.uid, *h))
            .collect();
        // Without a file, the numbering stays (its messages are only gone).
        let (source_uidvalidity, source_next) = match (&file, book.generation) {
            (None, Some(was)) => (was.source_uidvalidity, 0),
            _ => (index.uidvalidity, index.uid_next),
        };
        let mtime = model::folder_mtime(id.as_ref());
        let settle = if complete { SETTLE_COMPLETE } else { SETTLE };
        let quiet = mtime.elapsed().unwrap_or_default() >= settle;
        let assign = |upto: usize| {
            // A message held back keeps its UID for when it is shown: UIDNEXT stays below it.
            let next = match msgs.get(upto) {
                Some(&(held, _)) => source_next.min(held),
                None => source_next,
            };
            uids::assign(
                book.generation,
                &live,
                source_uidvalidity,
                next,
                &msgs[..upto],
                fixed.min(upto),
            )
        };
        let mut a = assign(n);
        let mut shown = n;
        let last_is_new = n > fixed && a.added.last().is_some_and(|&(u, _)| u == a.uids[n - 1]);
        if last_is_new && !quiet {
            a = assign(n - 1);
            shown = n - 1;
        }
        // On disk before anyone sees it. A folder that never had mail records nothing: its
        // numbering starts with its first message.
        if !(before.is_none() && shown == 0) {
            book.log
                .as_mut()
                .expect("opened above")
                .record(before, &a)?;
            book.generation = a.generation;
        }
        if let Some(note) = &a.note {
            let user = self.user_tree(st.user);
            self.say(
                st,
                log::Level::Warn,
                format!("{}/{}: {note}", user.name, st.folder.display),
            );
        }
        let now = a.generation.expect("assign gives a generation");
        for (m, &uid) in index.messages.iter_mut().zip(&a.uids) {
            m.uid = uid;
        }
        index.uidvalidity = now.uidvalidity;
        index.uid_next = now.next;
        hashes.truncate(shown);
        if !index.messages[..shown]
            .windows(2)
            .all(|w| w[0].uid < w[1].uid)
        {
            // Served UIDs out of mbox order (a message moved, or new mail got a lower UID than
            // an older one): sorted, and read whole next time.
            let mut both: Vec<(Msg, Hash)> = index.messages[..shown]
                .iter()
                .copied()
                .zip(hashes.iter().copied())
                .collect();
            both.sort_by_key(|(m, _)| m.uid);
            for (i, (m, h)) in both.into_iter().enumerate() {
                index.messages[i] = m;
                hashes[i] = h;
            }
            index.resume = None;
        }
        let slot = match old {
            Some(o) if !a.reset && o.index.uidvalidity == now.uidvalidity => o.slot,
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
        Ok(Snapshot {
            index: Arc::new(index),
            hashes,
            shown,
            provisional: (shown < n).then_some(settle),
            source_uidvalidity,
            source_next,
            id,
            fp,
            fp_from,
            slot,
            mtime,
            cur,
            new,
            entries: Default::default(),
            changed_entries: Default::default(),
        })
    }
}

impl Snapshot {
    /// The index as the mbox gives it (its UIDVALIDITY), to continue reading it: the messages
    /// already served keep their UIDs.
    pub(super) fn source_index(&self) -> FolderIndex {
        let mut index = (*self.index).clone();
        index.uidvalidity = self.source_uidvalidity;
        index.uid_next = self.source_next;
        index
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
