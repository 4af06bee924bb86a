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

    pub(super) fn message_attr(&self, g: usize, snap: &Snapshot, m: &Msg) -> Attr {
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

    pub(super) fn control_bytes(&self, g: usize, c: Control) -> Result<Option<Vec<u8>>> {
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

    pub(super) fn control_attr(&self, g: usize, c: Control) -> Result<Attr> {
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

    pub(super) fn overlay_mtime(&self, g: usize, name: &str) -> Option<SystemTime> {
        std::fs::metadata(self.overlay_dir(g).join(name))
            .ok()?
            .modified()
            .ok()
    }

    pub(super) fn overlay_attr(&self, g: usize, name: &OsStr) -> Result<Attr> {
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

    pub(super) fn user_of_name(&self, name: &OsStr) -> Option<usize> {
        self.tree
            .users
            .iter()
            .position(|u| OsStr::new(&u.name) == name)
    }

    /// The subfolder directory `name` under a user's root (`g` is the user's INBOX).
    pub(super) fn subfolder(&self, g: usize, name: &OsStr) -> Option<usize> {
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

    pub(super) fn is_generated_name(&self, g: usize, name: &OsStr) -> bool {
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

    pub(super) fn find_message<'s>(
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
    pub(super) fn dir_snapshot(&self, fh: u64) -> Option<Arc<Snapshot>> {
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

    pub(super) fn add_handle(&self, h: Handle) -> u64 {
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

    /// Reads message bytes, and checks that the mbox did not change meanwhile. If it did, the
    /// message is read from a new snapshot (it is the same message if its UID, date and size
    /// are), or the read fails: wrong bytes are never returned.
    pub(super) fn read_message(
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

    pub(super) fn read_checked(
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
