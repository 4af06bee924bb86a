//! What the view shows: attributes, names, listings and bytes.

use super::*;

impl MailFs {
    // ---- attributes ----

    pub(super) fn dir_attr(&self, ino: Ino, owner: Owner, perm: u16, mtime: SystemTime) -> Attr {
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

    pub(super) fn message_attr(&self, owner: Owner, snap: &Snapshot, m: &Msg) -> Attr {
        Attr {
            ino: snap.ino(m),
            kind: Kind::File,
            size: m.size(&snap.index),
            mtime: model::system_time(model::message_mtime(m), 0),
            perm: if self.opts.writable { 0o600 } else { 0o400 },
            uid: owner.uid,
            gid: owner.gid,
            nlink: 1,
            ttl: LONG_TTL,
            entry_ttl: LONG_TTL,
        }
    }

    pub(super) fn control_bytes(
        &self,
        g: usize,
        st: &FolderState,
        c: Control,
    ) -> Result<Option<Vec<u8>>> {
        let folder = &st.folder;
        match c {
            Control::Subscriptions => {
                if !folder.is_inbox() {
                    return Ok(None);
                }
                match std::fs::read(self.overlay_dir(st).join(model::SUBSCRIPTIONS)) {
                    Ok(b) => Ok(Some(b)),
                    Err(_) => Ok(Some(self.user_tree(st.user).subscriptions_file())),
                }
            }
            Control::Maildirfolder => Ok((!folder.is_inbox()).then(Vec::new)),
            Control::Keywords => {
                if self.opts.writable {
                    // Dovecot keeps the list once testers used keywords (it only appends to ours).
                    if let Ok(theirs) = std::fs::read(self.overlay_dir(st).join(model::KEYWORDS)) {
                        return Ok(Some(theirs));
                    }
                }
                let snap = self.snapshot_of(g, st)?;
                Ok(folder.keywords_file(&snap.index))
            }
            Control::Uidlist => Ok(Some(self.uidlist(g, st)?.to_vec())),
        }
    }

    /// The `dovecot-uidlist` shown: ours, merged with Dovecot's copy in the state directory.
    /// Made again only when what it is made from changed (the snapshot, testers' changes, or
    /// Dovecot's copy): Dovecot reads it in pieces and `stat`s it between them.
    fn uidlist(&self, g: usize, st: &FolderState) -> Result<Arc<Vec<u8>>> {
        let theirs_path = self.overlay_dir(st).join(model::UIDLIST);
        let theirs_id = std::fs::symlink_metadata(&theirs_path)
            .ok()
            .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
        let snap = self.snapshot_of(g, st)?;
        let version = st.version.load(Ordering::Acquire);
        let mut cache = st.uidlist.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.as_ref() {
            let same_snap = std::ptr::eq(c.snap.as_ptr(), Arc::as_ptr(&snap));
            if same_snap && c.version == version && c.theirs == theirs_id {
                return Ok(c.bytes.clone());
            }
        }
        let theirs = theirs_id.and_then(|_| std::fs::read(&theirs_path).ok());
        let folder = &st.folder;
        let bytes = match theirs {
            // A folder with no mbox: Dovecot's own list, once it made one.
            Some(theirs) if st.path.is_none() && self.opts.writable => theirs,
            theirs if self.opts.writable => {
                let shown: Vec<Msg> = (0..snap.shown)
                    .filter(|&at| self.base_file(st, &snap, at).is_some())
                    .map(|at| snap.messages()[at])
                    .collect();
                let ours = folder.uidlist_of(&snap.index, &shown);
                overlay::merge_uidlist_keeping_theirs(&ours, theirs.as_deref())
            }
            theirs => {
                let ours = folder.uidlist_of(&snap.index, snap.messages());
                merge_uidlist(&ours, theirs.as_deref())
            }
        };
        let bytes = Arc::new(bytes);
        *cache = Some(UidlistCache {
            snap: Arc::downgrade(&snap),
            version,
            theirs: theirs_id,
            bytes: bytes.clone(),
        });
        Ok(bytes)
    }

    pub(super) fn control_attr(&self, g: usize, st: &FolderState, c: Control) -> Result<Attr> {
        let len = match c {
            Control::Uidlist => self.uidlist(g, st)?.len(),
            _ => self.control_bytes(g, st, c)?.ok_or(Errno::ENOENT)?.len(),
        };
        let mtime = self
            .snapshot_of(g, st)?
            .mtime
            .max(self.overlay_mtime(st, c.name()).unwrap_or(UNIX_EPOCH));
        let owner = self.owner(st);
        Ok(Attr {
            ino: Self::block(g) + c.offset(),
            kind: Kind::File,
            size: len as u64,
            mtime,
            perm: if self.opts.writable { 0o600 } else { 0o400 },
            uid: owner.uid,
            gid: owner.gid,
            nlink: 1,
            ttl: SHORT_TTL,
            entry_ttl: LONG_TTL,
        })
    }

    pub(super) fn overlay_mtime(&self, st: &FolderState, name: &str) -> Option<SystemTime> {
        std::fs::metadata(self.overlay_dir(st).join(name))
            .ok()?
            .modified()
            .ok()
    }

    pub(super) fn overlay_attr(&self, g: usize, st: &FolderState, name: &OsStr) -> Result<Attr> {
        let meta = std::fs::symlink_metadata(self.overlay_dir(st).join(name))?;
        if !meta.is_file() {
            return Err(Errno::ENOENT);
        }
        let owner = self.owner(st);
        Ok(Attr {
            ino: self.overlay_ino(g, name),
            kind: Kind::File,
            size: meta.len(),
            mtime: meta.modified().unwrap_or(UNIX_EPOCH),
            perm: (meta.mode() & 0o777) as u16,
            uid: owner.uid,
            gid: owner.gid,
            nlink: meta.nlink() as u32,
            ttl: SHORT_TTL,
            entry_ttl: LONG_TTL,
        })
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let node = self.decode(ino).ok_or(Errno::ENOENT)?;
        let Some(g) = node.folder() else {
            return Ok(self.dir_attr(ROOT, Owner { uid: 0, gid: 0 }, 0o555, self.started));
        };
        let st = self.state(g).ok_or(Errno::ENOENT)?;
        match node {
            Node::Root => unreachable!("handled above"),
            Node::FolderDir(_) => {
                let snap = self.snapshot_of(g, &st)?;
                Ok(self.dir_attr(ino, self.owner(&st), 0o700, snap.mtime))
            }
            Node::Sub(..) => {
                let snap = self.snapshot_of(g, &st)?;
                // Read-only: 0500, which Dovecot takes for a read-only maildir ([READ-ONLY],
                // nothing logged).
                let perm = if self.opts.writable { 0o700 } else { 0o500 };
                Ok(self.dir_attr(ino, self.owner(&st), perm, snap.mtime))
            }
            Node::Control(_, c) => self.control_attr(g, &st, c),
            Node::Message(_, slot, uid) => {
                let snap = self.snapshot_of(g, &st)?;
                if snap.slot != slot {
                    return Err(Errno::ENOENT);
                }
                let m = snap.by_uid(uid).ok_or(Errno::ENOENT)?;
                Ok(self.message_attr(self.owner(&st), &snap, m))
            }
            Node::Overlay(_, name) => self.overlay_attr(g, &st, &name),
        }
    }

    // ---- names ----

    /// The INBOX folder of the user called `name`.
    pub(super) fn user_of_name(&self, name: &OsStr) -> Option<usize> {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        t.users
            .iter()
            .find(|u| !u.gone && OsStr::new(&u.tree.name) == name)
            .and_then(|u| u.folders.first().copied())
    }

    /// The subfolder directory `name` under a user's root (`g` is the user's INBOX), if it is
    /// shown.
    pub(super) fn subfolder(&self, g: usize, name: &OsStr) -> Option<usize> {
        let sub = {
            let t = self.table.read().unwrap_or_else(|e| e.into_inner());
            let st = t.folders.get(g)?;
            let user = &t.users[st.user];
            if user.folders.first() != Some(&g) {
                return None;
            }
            *user.by_dir.get(name.to_str()?)?
        };
        let st = self.state(sub)?;
        self.shown(&st).then_some(sub)
    }

    /// The folder shown as `name` under a user's root (`g` is the user's INBOX), shown or not.
    pub(super) fn subfolder_any(&self, g: usize, name: &str) -> Option<usize> {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        let st = t.folders.get(g)?;
        let user = &t.users[st.user];
        if user.folders.first() != Some(&g) {
            return None;
        }
        user.by_dir.get(name).copied()
    }

    /// Whether a folder (not an INBOX) is shown: it is in the lists, and its mbox is there and
    /// acceptable (as last found, or as a quick look says when it was never read).
    pub(super) fn shown(&self, st: &FolderState) -> bool {
        if st.gone.load(Ordering::Relaxed) || st.deleted.load(Ordering::Relaxed) {
            return false;
        }
        if st.path.is_none() {
            return true;
        }
        if st.trashed.load(Ordering::Relaxed) {
            return true;
        }
        let recent = st
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < self.opts.recheck.max(Duration::from_secs(1)));
        if recent {
            st.present.load(Ordering::Relaxed)
        } else {
            // Through the safe open: a path through a symlink shows nothing.
            st.folder.source_present()
        }
    }

    pub(super) fn is_generated_name(&self, g: usize, name: &OsStr) -> bool {
        Subdir::from_name(name.as_bytes()).is_some()
            || Control::ALL.iter().any(|c| OsStr::new(c.name()) == name)
            || self.subfolder(g, name).is_some()
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        match self.decode(parent).ok_or(Errno::ENOENT)? {
            Node::Root => {
                self.reload_lists();
                let g = self.user_of_name(name).ok_or(Errno::ENOENT)?;
                self.getattr(Self::block(g))
            }
            Node::FolderDir(g) => {
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                if let Some(s) = Subdir::from_name(name.as_bytes()) {
                    if !self.has_sub(&st, s) {
                        return Err(Errno::ENOENT);
                    }
                    return self.getattr(Self::block(g) + sub_offset(s));
                }
                if let Some(c) = Control::ALL.iter().find(|c| OsStr::new(c.name()) == name) {
                    return self.control_attr(g, &st, *c);
                }
                if st.folder.is_inbox() {
                    self.reload_lists();
                    if let Some(sub) = self.subfolder(g, name) {
                        return self.getattr(Self::block(sub));
                    }
                }
                if !overlay_name_ok(name) {
                    return Err(Errno::ENOENT);
                }
                self.overlay_attr(g, &st, name)
            }
            Node::Sub(g, sub) => {
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                if self.opts.writable {
                    if st.trashed.load(Ordering::Relaxed) {
                        return Err(Errno::ENOENT);
                    }
                    let rel = writable::sub_path(sub, name);
                    if overlay_name_ok(name) && self.overlay_dir(&st).join(&rel).is_file() {
                        return self.overlay_attr(g, &st, &rel);
                    }
                }
                // The mbox's messages (as testers left them, on a writable mount).
                let snap = self.snapshot_of(g, &st)?;
                let at = self
                    .base_message(&st, &snap, sub, name)
                    .ok_or(Errno::ENOENT)?;
                Ok(self.message_attr(self.owner(&st), &snap, &snap.messages()[at]))
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    // ---- listing ----

    /// The entries of a directory, `.` and `..` first; for `cur/` and `new/` also the snapshot
    /// they come from.
    fn entries(&self, ino: Ino) -> Result<Handle> {
        let entry = |ino: Ino, kind: Kind, name: &str| DirEntry {
            ino,
            kind,
            name: name.into(),
        };
        let mut out = vec![entry(ino, Kind::Dir, "."), entry(ROOT, Kind::Dir, "..")];
        match self.decode(ino).ok_or(Errno::ENOENT)? {
            Node::Root => {
                self.reload_lists();
                let t = self.table.read().unwrap_or_else(|e| e.into_inner());
                for u in t.users.iter().filter(|u| !u.gone) {
                    out.push(entry(Self::block(u.folders[0]), Kind::Dir, &u.tree.name));
                }
            }
            Node::FolderDir(g) => {
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                if st.trashed.load(Ordering::Relaxed) {
                    // Being deleted: nothing left to remove.
                    return Ok(Handle {
                        entries: Arc::new(out),
                        snap: None,
                    });
                }
                for s in Subdir::ALL.into_iter().filter(|&s| self.has_sub(&st, s)) {
                    out.push(entry(Self::block(g) + sub_offset(s), Kind::Dir, s.name()));
                }
                for c in Control::ALL {
                    if self.control_bytes(g, &st, c)?.is_some() {
                        out.push(entry(Self::block(g) + c.offset(), Kind::File, c.name()));
                    }
                }
                if st.folder.is_inbox() {
                    self.reload_lists();
                    let subs: Vec<usize> = {
                        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
                        t.users[st.user].folders[1..].to_vec()
                    };
                    for sub in subs {
                        let Some(s) = self.state(sub) else { continue };
                        if self.shown(&s) {
                            out.push(entry(Self::block(sub), Kind::Dir, &s.dir()));
                        }
                    }
                }
                if let Ok(rd) = std::fs::read_dir(self.overlay_dir(&st)) {
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
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                let entries = self.sub_entries(g, &st, sub)?;
                let snap = self.snapshot_of(g, &st)?;
                return Ok(Handle {
                    entries,
                    snap: Some(snap),
                });
            }
            _ => return Err(Errno::ENOTDIR),
        }
        Ok(Handle {
            entries: Arc::new(out),
            snap: None,
        })
    }

    /// The entries of a folder's `cur/`, `new/` or `tmp/`, `.` and `..` first.
    pub(super) fn sub_entries(
        &self,
        g: usize,
        st: &FolderState,
        sub: Subdir,
    ) -> Result<Arc<Vec<DirEntry>>> {
        let ino = Self::block(g) + sub_offset(sub);
        let head = [
            DirEntry {
                ino,
                kind: Kind::Dir,
                name: ".".into(),
            },
            DirEntry {
                ino: Self::block(g),
                kind: Kind::Dir,
                name: "..".into(),
            },
        ];
        if st.trashed.load(Ordering::Relaxed) {
            return Ok(Arc::new(head.to_vec()));
        }
        let snap = self.snapshot_of(g, st)?;
        if !self.opts.writable {
            if sub == Subdir::Tmp {
                return Ok(Arc::new(head.to_vec()));
            }
            let i = usize::from(sub == Subdir::New);
            return Ok(snap.entries[i]
                .get_or_init(|| {
                    let listing = snap.listing(sub);
                    let mut v = Vec::with_capacity(listing.len() + 2);
                    v.extend(head);
                    for &at in listing {
                        let m = &snap.index.messages[at as usize];
                        let (_, name) = st.folder.message_file(&snap.index, m);
                        v.push(DirEntry {
                            ino: snap.ino(m),
                            kind: Kind::File,
                            name: name.into(),
                        });
                    }
                    Arc::new(v)
                })
                .clone());
        }
        // Writable: the mbox's messages as testers left them, then the files they added; made
        // again after each change.
        let version = st.version.load(Ordering::Acquire);
        let slot = &snap.changed_entries[sub_offset(sub) as usize - 1];
        if let Some((v, entries)) = &*slot.lock().unwrap_or_else(|e| e.into_inner()) {
            if *v == version {
                return Ok(entries.clone());
            }
        }
        let mut v: Vec<DirEntry> = head.to_vec();
        if sub != Subdir::Tmp {
            for at in 0..snap.shown {
                if let Some((s, name)) = self.base_file(st, &snap, at) {
                    if s == sub {
                        v.push(DirEntry {
                            ino: snap.ino(&snap.messages()[at]),
                            kind: Kind::File,
                            name: name.into(),
                        });
                    }
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.overlay_dir(st).join(sub.name())) {
            let mut names: Vec<OsString> = rd
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                let rel = writable::sub_path(sub, &n);
                v.push(DirEntry {
                    ino: self.overlay_ino(g, &rel),
                    kind: Kind::File,
                    name: n,
                });
            }
        }
        let v = Arc::new(v);
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((version, v.clone()));
        Ok(v)
    }

    /// The entries of an open directory (made when it was opened), or of `ino` now.
    fn handle_entries(&self, ino: Ino, fh: u64) -> Result<Handle> {
        if let Some(h) = self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
        {
            return Ok(h.clone());
        }
        self.entries(ino)
    }

    /// Entries of a directory from `offset` on (the offset of an entry is its position + 1).
    pub fn readdir(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry, u64) -> bool,
    ) -> Result<()> {
        let entries = self.handle_entries(ino, fh)?.entries;
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if add(e, i as u64 + 1) {
                break;
            }
        }
        Ok(())
    }

    /// Like [`readdir`](Self::readdir), with each entry's attributes (`.` and `..` included).
    pub fn readdirplus(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry, &Attr, u64) -> bool,
    ) -> Result<()> {
        let Handle { entries, snap } = self.handle_entries(ino, fh)?;
        let owner = match (&snap, self.decode(ino)) {
            (Some(_), Some(Node::Sub(g, _))) => self.state(g).map(|st| self.owner(&st)),
            _ => None,
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            let attr = match (&snap, owner) {
                // Messages: from the listing's own snapshot, without looking anything up.
                (Some(s), Some(owner))
                    if i >= 2 && e.ino < OVERLAY_BASE && e.ino >> 32 == u64::from(s.slot) =>
                {
                    match s.by_uid(e.ino as u32) {
                        Some(m) => self.message_attr(owner, s, m),
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
        let handle = self.entries(ino)?;
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, handle);
        Ok(fh)
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
        let node = self.decode(ino).ok_or(Errno::ENOENT)?;
        let g = node.folder().ok_or(Errno::EISDIR)?;
        let st = self.state(g).ok_or(Errno::ENOENT)?;
        match node {
            Node::Message(_, slot, uid) => {
                let snap = self.snapshot_of(g, &st)?;
                if snap.slot != slot {
                    // A message of a generation that is gone: no bytes are the right ones.
                    return Err(Errno::EIO);
                }
                let at = snap.position(uid).ok_or(Errno::EIO)?;
                self.read_message(g, &st, &snap, at, offset, size)
            }
            Node::Control(_, c) => {
                let bytes = match c {
                    Control::Uidlist => self.uidlist(g, &st)?,
                    _ => Arc::new(self.control_bytes(g, &st, c)?.ok_or(Errno::ENOENT)?),
                };
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(size as usize).min(bytes.len());
                Ok(bytes[start..end].to_vec())
            }
            Node::Overlay(_, name) => {
                let file = self.overlay_file(ino, &st, &name)?;
                read_at_most(&file, offset, size)
            }
            Node::Root | Node::FolderDir(_) | Node::Sub(..) => Err(Errno::EISDIR),
        }
    }

    /// Reads message bytes, and checks that the mbox did not change meanwhile. If it did, the
    /// message is read from a new snapshot (the same UID in the same generation is the same
    /// message), or the read fails: wrong bytes are never returned.
    pub(super) fn read_message(
        &self,
        g: usize,
        st: &FolderState,
        snap: &Arc<Snapshot>,
        at: usize,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>> {
        let m = snap.messages()[at];
        if let Some(bytes) = self.read_checked(g, st, snap, &m, offset, size)? {
            return Ok(bytes);
        }
        // The mbox changed: read the same message from a fresh snapshot, a few times if writers
        // keep changing it.
        for _ in 0..5 {
            self.mark_stale(st);
            let now = self.snapshot_of(g, st)?;
            let Some(at2) = now
                .position(m.uid)
                .filter(|&at2| now.slot == snap.slot && now.hashes[at2] == snap.hashes[at])
            else {
                break;
            };
            let m2 = now.messages()[at2];
            if let Some(bytes) = self.read_checked(g, st, &now, &m2, offset, size)? {
                return Ok(bytes);
            }
        }
        log::warn!(
            "{}: changed while message UID {} was read; the read fails",
            st.folder.display,
            m.uid
        );
        Err(Errno::EIO)
    }

    fn read_checked(
        &self,
        g: usize,
        st: &FolderState,
        snap: &Snapshot,
        m: &Msg,
        offset: u64,
        size: u32,
    ) -> Result<Option<Vec<u8>>> {
        let Some(id) = &snap.id else {
            return Ok(Some(Vec::new()));
        };
        let Some(file) = self.source_file(g, st, snap)? else {
            return Ok(None);
        };
        let total = m.size(&snap.index);
        let len = (total.saturating_sub(offset)).min(u64::from(size)) as usize;
        let mut buf = vec![0; len];
        let n = match mbox::read_served(&file, &snap.index, m, offset, &mut buf) {
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
        let intact =
            grew && snap.fp.is_some() && fingerprint(&file, id.len, snap.fp_from).ok() == snap.fp;
        Ok(intact.then_some(buf))
    }
}

/// Up to `size` bytes of `file` from `offset` (fewer at its end).
pub(super) fn read_at_most(file: &File, offset: u64, size: u32) -> Result<Vec<u8>> {
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
