//! Dovecot's own files (indexes, locks, uidlist rewrites), kept in the state directory.

use super::*;

impl MailFs {
    /// Where a folder's overlay files are (made on first use).
    pub(super) fn overlay_dir(&self, st: &FolderState) -> PathBuf {
        if !st.state_made.load(Ordering::Relaxed) {
            match writable::make_private_dir(&st.state_dir) {
                Ok(()) => st.state_made.store(true, Ordering::Relaxed),
                Err(e) => log::error!("state directory {}: {e}", st.state_dir.display()),
            }
        }
        st.state_dir.clone()
    }

    pub(super) fn overlay_file(
        &self,
        ino: Ino,
        st: &FolderState,
        name: &OsStr,
    ) -> Result<Arc<File>> {
        let mut cache = self.overlay_files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = cache.get(&ino) {
            return Ok(f.clone());
        }
        let f = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(self.overlay_dir(st).join(name))?,
        );
        cache.put(ino, f.clone());
        Ok(f)
    }

    /// Writes to one of Dovecot's files (nothing else can be written).
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32> {
        match self.decode(ino).ok_or(Errno::ENOENT)? {
            Node::Overlay(g, name) => {
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                let path = self.overlay_dir(&st).join(&name);
                self.charge_growth(&st, &path, offset + data.len() as u64)?;
                self.overlay_file(ino, &st, &name)?
                    .write_all_at(data, offset)?;
                Ok(data.len() as u32)
            }
            Node::Control(g, c) if self.opts.writable => {
                // Dovecot appends to its uidlist in place: from now on the folder's copy in the
                // state directory is written, and read back merged with ours.
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                let path = self.overlay_dir(&st).join(c.name());
                if !path.exists() {
                    let bytes = self.control_bytes(g, &st, c)?.ok_or(Errno::ENOENT)?;
                    self.charge_growth(&st, &path, bytes.len() as u64)?;
                    std::fs::write(&path, bytes)?;
                }
                self.charge_growth(&st, &path, offset + data.len() as u64)?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)?
                    .write_all_at(data, offset)?;
                st.changed();
                Ok(data.len() as u32)
            }
            _ => Err(Errno::EACCES),
        }
    }

    pub fn fsync(&self, ino: Ino) -> Result<()> {
        if let Some(Node::Overlay(g, name)) = self.decode(ino) {
            let st = self.state(g).ok_or(Errno::ENOENT)?;
            self.overlay_file(ino, &st, &name)?.sync_data()?;
        }
        Ok(())
    }
    // ---- writing (the overlay) ----

    pub(super) fn writable_dir(&self, parent: Ino) -> Result<(usize, Arc<FolderState>)> {
        match self.decode(parent).ok_or(Errno::ENOENT)? {
            Node::FolderDir(g) => Ok((g, self.state(g).ok_or(Errno::ENOENT)?)),
            Node::Root | Node::Sub(..) => Err(Errno::EACCES),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Creates a file of Dovecot's in a folder directory (or, writable, a message file in
    /// `cur/ new/ tmp/`). Its reads and writes then come by inode, like every file's (the
    /// descriptor used for them is opened without `O_APPEND`, which would make positioned
    /// writes append).
    pub fn create(&self, parent: Ino, name: &OsStr, mode: u32, flags: i32) -> Result<Attr> {
        if let Ok((g, st, sub)) = self.writable_sub(parent) {
            return self.create_message_file(g, &st, sub, name, mode, flags);
        }
        let (g, st) = self.writable_dir(parent)?;
        if self.opts.writable
            && name == OsStr::new(model::MAILDIRFOLDER)
            && !st.folder.is_inbox()
            && flags & libc::O_EXCL == 0
        {
            // A folder made by CREATE: the marker is there already.
            return self.control_attr(g, &st, Control::Maildirfolder);
        }
        if !overlay_name_ok(name) || self.is_generated_name(g, name) {
            return Err(Errno::EACCES);
        }
        self.create_overlay_file(&st, &self.overlay_dir(&st).join(name), mode, flags)?;
        self.overlay_attr(g, &st, name)
    }

    /// Makes (or, with `O_TRUNC`, empties) a file of the state directory as `create` asks,
    /// charged to its user; its reads and writes then come by inode.
    pub(super) fn create_overlay_file(
        &self,
        st: &FolderState,
        path: &Path,
        mode: u32,
        flags: i32,
    ) -> Result<()> {
        self.charge_creation(st, path, flags)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(flags & libc::O_TRUNC != 0)
            .custom_flags(libc::O_NOFOLLOW | (flags & libc::O_EXCL))
            .mode(mode & 0o666)
            .open(path)?;
        Ok(())
    }

    pub fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        if let Ok((g, st, sub)) = self.writable_sub(parent) {
            return self.unlink_message(g, &st, sub, name);
        }
        let (g, st) = self.writable_dir(parent)?;
        if self.is_generated_name(g, name) || !overlay_name_ok(name) {
            // Dovecot's own copy of a generated file may be removed; the file stays.
            if let Some(c) = Control::ALL.iter().find(|c| OsStr::new(c.name()) == name) {
                let _ = std::fs::remove_file(self.overlay_dir(&st).join(c.name()));
            }
            return Err(Errno::EACCES);
        }
        let path = self.overlay_dir(&st).join(name);
        self.refund_file(&st, &path);
        std::fs::remove_file(&path)?;
        self.forget_overlay(g, name);
        Ok(())
    }

    pub fn rename(&self, parent: Ino, name: &OsStr, newparent: Ino, newname: &OsStr) -> Result<()> {
        if let (Ok((g, st, from)), Ok((g2, _, to))) =
            (self.writable_sub(parent), self.writable_sub(newparent))
        {
            if g != g2 {
                return Err(Errno::EXDEV);
            }
            return self.rename_message(g, &st, (from, name), (to, newname));
        }
        let (g, st) = self.writable_dir(parent)?;
        if self.opts.writable && parent == newparent && st.folder.is_inbox() {
            if let (Some(from), Some(to)) = (name.to_str(), newname.to_str()) {
                if from.starts_with('.') && self.subfolder_any(g, from).is_some() {
                    return self.rename_folder(&st, from, to);
                }
            }
        }
        let (g2, _) = self.writable_dir(newparent)?;
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
        if newname == OsStr::new(model::SUBSCRIPTIONS) && !st.folder.is_inbox() {
            return Err(Errno::EACCES);
        }
        let dir = self.overlay_dir(&st);
        self.refund_file(&st, &dir.join(newname));
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

    /// Another name for one of Dovecot's files, in the same folder directory (Dovecot rotates
    /// its transaction log this way).
    pub fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        if self.writable_sub(newparent).is_ok() {
            return self.link_message(ino, newparent, newname);
        }
        let Some(Node::Overlay(g, name)) = self.decode(ino) else {
            return Err(Errno::EACCES);
        };
        let (g2, st) = self.writable_dir(newparent)?;
        if g != g2 {
            return Err(Errno::EXDEV);
        }
        if !overlay_name_ok(newname) || self.is_generated_name(g, newname) {
            return Err(Errno::EACCES);
        }
        let dir = self.overlay_dir(&st);
        std::fs::hard_link(dir.join(&name), dir.join(newname))?;
        self.overlay_inos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .link(g, &name, newname);
        self.overlay_attr(g, &st, newname)
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
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                let path = self.overlay_dir(&st).join(&name);
                if let Some(len) = size {
                    let old = path.symlink_metadata().map_or(0, |m| m.len());
                    self.charge(&st, quota::cost(len) as i64 - quota::cost(old) as i64)?;
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
                self.overlay_attr(g, &st, &name)
            }
            _ if size.is_none() && mode.is_none() => {
                // Touching times of the read-only view: accepted, nothing changes.
                self.getattr(ino)
            }
            _ => Err(Errno::EACCES),
        }
    }
}

/// Names Dovecot may create in a folder directory: not `.`/`..`, not hidden (a `.Name` there
/// would look like a folder).
pub(super) fn overlay_name_ok(name: &OsStr) -> bool {
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

/// On a writable mount: our records (the mbox's messages still shown), Dovecot's records of the
/// files testers added (its UIDs, at or above our next UID), in UID order, under the header of
/// [`merge_uidlist`].
pub(super) fn merge_uidlist_keeping_theirs(ours: &[u8], theirs: Option<&[u8]>) -> Vec<u8> {
    let merged = merge_uidlist(ours, theirs);
    let Some(theirs) = theirs else {
        return merged;
    };
    if merged.as_slice() == ours && split_first_line(ours).0 != split_first_line(theirs).0 {
        // Another UIDVALIDITY (or not a uidlist): theirs is out of date.
        let (oh, _) = split_first_line(ours);
        let (th, _) = split_first_line(theirs);
        let v = |h: &[u8]| {
            String::from_utf8_lossy(h)
                .split(' ')
                .find(|f| f.starts_with('V'))
                .map(str::to_string)
        };
        if v(oh) != v(th) {
            return merged;
        }
    }
    let (head, our_records) = split_first_line(&merged);
    let base = |line: &[u8]| -> Option<(u32, Vec<u8>)> {
        let text = std::str::from_utf8(line).ok()?;
        let uid = text.split(' ').next()?.parse().ok()?;
        let name = text.rsplit_once(':')?.1;
        Some((uid, name.split(':').next()?.as_bytes().to_vec()))
    };
    let mut records: Vec<(u32, &[u8])> = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut uids = std::collections::HashSet::new();
    for line in our_records.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if let Some((uid, name)) = base(line) {
            names.insert(name);
            uids.insert(uid);
            records.push((uid, line));
        }
    }
    let (_, their_records) = split_first_line(theirs);
    for line in their_records
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
    {
        if let Some((uid, name)) = base(line) {
            if !names.contains(&name) && !uids.contains(&uid) {
                records.push((uid, line));
            }
        }
    }
    records.sort_by_key(|(uid, _)| *uid);
    let mut out = head.to_vec();
    out.push(b'\n');
    for (_, line) in records {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

pub(super) fn split_first_line(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == b'\n') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn uidlist_merge_keeps_our_records_and_their_guid() {
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
    pub(super) fn overlay_names() {
        assert!(overlay_name_ok(OsStr::new("dovecot.index.log")));
        assert!(!overlay_name_ok(OsStr::new(".Folder")));
        assert!(!overlay_name_ok(OsStr::new("..")));
    }
}
