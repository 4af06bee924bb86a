//! What testers may change on a mount made with `--writable`, done the way Dovecot does it on a
//! maildir (traced with strace on Dovecot 2.3.19):
//!
//! - CREATE: `mkdir .Name`, then `mkdir cur new tmp` and `maildirfolder` inside;
//! - RENAME: `rename .Old .New` (each child folder too);
//! - DELETE: the messages are expunged, `rename .Name ..DOVECOT-TRASHED`, its contents removed,
//!   `rmdir`;
//! - APPEND: a file made in `tmp/`, then renamed into `new/` or `cur/`;
//! - COPY and MOVE: `link` of the message into the other folder's `tmp/`, renamed into `cur/`
//!   or `new/` (and for MOVE, `unlink` of the original);
//! - STORE: `rename` within `cur/` (flags are the letters after `:2,`); SELECT moves `new/` to
//!   `cur/`;
//! - EXPUNGE: `unlink`.
//!
//! Messages testers add are files in the state directory. Changes to the mbox's messages are
//! recorded by message (see [`changes`](super::changes)); no mbox is ever written.

use std::io::Write as _;

use super::changes::{self, Change, FolderEvent};
use super::*;

/// The name Dovecot gives a folder it is deleting.
const TRASHED: &str = "..DOVECOT-TRASHED";

impl MailFs {
    /// The changes testers made to a base folder's messages (read on first use).
    pub(super) fn with_changes<R>(
        &self,
        st: &FolderState,
        f: impl FnOnce(&mut changes::MessageChanges) -> R,
    ) -> io::Result<R> {
        let mut slot = st.changes.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let user = self.user_tree(st.user);
            let path = folder_file(
                &self.opts.state_dir,
                &user.name,
                st.folder.uw_name.as_deref(),
                "changes",
            );
            make_private_dir(path.parent().expect("in the user's directory"))?;
            *slot = Some(changes::MessageChanges::open(&path)?);
        }
        Ok(f(slot.as_mut().expect("opened above")))
    }

    /// What testers did to a base message (writable mounts), if anything.
    pub(super) fn change_of(&self, st: &FolderState, h: uids::Hash) -> Option<Change> {
        if !self.opts.writable || st.path.is_none() {
            return None;
        }
        match self.with_changes(st, |c| c.by_hash.get(&h).cloned()) {
            Ok(c) => c,
            Err(e) => {
                self.say(
                    st,
                    log::Level::Error,
                    format!(
                        "{}: testers' changes cannot be read: {e}",
                        st.folder.display
                    ),
                );
                None
            }
        }
    }

    /// Where message `at` of a snapshot is shown, and its file name; `None` if testers removed
    /// it.
    pub(super) fn base_file(
        &self,
        st: &FolderState,
        snap: &Snapshot,
        at: usize,
    ) -> Option<(Subdir, String)> {
        let m = &snap.messages()[at];
        match self.change_of(st, snap.hashes[at]) {
            None => Some(st.folder.message_file(&snap.index, m)),
            Some(Change::Gone) => None,
            Some(Change::Moved(sub, flags)) => {
                let base = st.folder.base_name(&snap.index, m);
                let name = if sub == Subdir::Cur || !flags.is_empty() {
                    format!("{base}:2,{flags}")
                } else {
                    base
                };
                Some((sub, name))
            }
        }
    }

    /// The user-root folder `g` (an INBOX), when the mount is writable.
    fn writable_root(&self, parent: Ino) -> Result<(usize, Arc<FolderState>)> {
        if !self.opts.writable {
            return Err(Errno::EACCES);
        }
        match self.decode(parent).ok_or(Errno::ENOENT)? {
            Node::FolderDir(g) => {
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                if st.folder.is_inbox() && st.created.is_none() {
                    Ok((g, st))
                } else {
                    Err(Errno::EACCES)
                }
            }
            _ => Err(Errno::EACCES),
        }
    }

    /// `cur/`, `new/` or `tmp/` of a folder, when the mount is writable.
    pub(super) fn writable_sub(&self, parent: Ino) -> Result<(usize, Arc<FolderState>, Subdir)> {
        if !self.opts.writable {
            return Err(Errno::EACCES);
        }
        match self.decode(parent).ok_or(Errno::ENOENT)? {
            Node::Sub(g, sub) => {
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                if st.trashed.load(Ordering::Relaxed) {
                    return Err(Errno::ENOENT);
                }
                Ok((g, st, sub))
            }
            _ => Err(Errno::EACCES),
        }
    }

    /// Where a folder's `cur/`, `new/` or `tmp/` files are kept (made on first use).
    pub(super) fn overlay_sub(&self, st: &FolderState, sub: Subdir) -> io::Result<PathBuf> {
        let dir = self.overlay_dir(st).join(sub.name());
        make_private_dir(&dir)?;
        Ok(dir)
    }

    /// `mkdir`: a new folder in a user's root; `cur`, `new` or `tmp` of a folder (which exist).
    pub fn mkdir(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        if !self.opts.writable {
            return Err(Errno::EACCES);
        }
        if let Some(Node::FolderDir(g)) = self.decode(parent) {
            if let Some(s) = Subdir::from_name(name.as_bytes()) {
                // A folder testers made gets its `cur/ new/ tmp/` as Dovecot makes them (it takes
                // one that is already there for a folder that already exists).
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                if self.has_sub(&st, s) {
                    return Err(Errno::EEXIST);
                }
                self.overlay_sub(&st, s)?;
                st.changed();
                return self.getattr(Self::block(g) + sub_offset(s));
            }
        }
        let (_, root) = self.writable_root(parent)?;
        let dir = name.to_str().ok_or(Errno::EACCES)?;
        if !folder_name_ok(dir) {
            return Err(Errno::EACCES);
        }
        let g = {
            let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
            let u = root.user;
            if t.users[u].by_dir.contains_key(dir) {
                return Err(Errno::EEXIST);
            }
            let id = t.users[u]
                .folders
                .iter()
                .filter_map(|&g| t.folders[g].created)
                .max()
                .map_or(1, |m| m + 1);
            let log = t.users[u].folder_log.as_mut().ok_or(Errno::EACCES)?;
            log.record(FolderEvent::Created {
                dir: dir.to_string(),
                id,
            })?;
            let g = self.add_created(&mut t, u, dir, id);
            t.folders[g].gone.store(false, Ordering::Relaxed);
            g
        };
        let st = self.state(g).ok_or(Errno::EIO)?;
        make_private_dir(&st.state_dir)?;
        log::info!(
            "{}: a tester made folder {}",
            self.user_tree(st.user).name,
            st.folder.display
        );
        self.getattr(Self::block(g))
    }

    /// Whether a folder has its `cur/`, `new/` or `tmp/` (a folder testers made has them once
    /// Dovecot made them).
    pub(super) fn has_sub(&self, st: &FolderState, sub: Subdir) -> bool {
        st.created.is_none() || st.state_dir.join(sub.name()).is_dir()
    }

    /// `rmdir`: a folder Dovecot is deleting (or an empty one); `cur`, `new`, `tmp` of a folder
    /// being deleted.
    pub fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        if !self.opts.writable {
            return Err(Errno::EACCES);
        }
        if let Some(Node::FolderDir(g)) = self.decode(parent) {
            if Subdir::from_name(name.as_bytes()).is_some() {
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                return if st.trashed.load(Ordering::Relaxed) {
                    Ok(())
                } else {
                    Err(Errno::EACCES)
                };
            }
        }
        let (_, root) = self.writable_root(parent)?;
        let dir = name.to_str().ok_or(Errno::ENOENT)?;
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        let u = root.user;
        let g = *t.users[u].by_dir.get(dir).ok_or(Errno::ENOENT)?;
        let st = t.folders[g].clone();
        if !st.trashed.load(Ordering::Relaxed) {
            drop(t);
            if !self.folder_is_empty(g, &st)? {
                return Err(Errno::ENOTEMPTY);
            }
            t = self.table.write().unwrap_or_else(|e| e.into_inner());
            let log = t.users[u].folder_log.as_mut().ok_or(Errno::EACCES)?;
            log.record(FolderEvent::Deleted {
                dir: dir.to_string(),
            })?;
        }
        t.users[u].by_dir.remove(dir);
        st.deleted.store(true, Ordering::Relaxed);
        drop(t);
        if st.created.is_some() {
            let _ = std::fs::remove_dir_all(&st.state_dir);
            self.recount(st.user);
        }
        log::info!(
            "{}: a tester deleted folder {}",
            self.user_tree(st.user).name,
            st.folder.display
        );
        Ok(())
    }

    /// Whether a folder shows no message.
    fn folder_is_empty(&self, g: usize, st: &FolderState) -> Result<bool> {
        for s in [Subdir::Cur, Subdir::New] {
            if self.sub_entries(g, st, s)?.len() > 2 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `rename` of a folder in a user's root (RENAME, or the first step of DELETE).
    pub(super) fn rename_folder(&self, root: &FolderState, from: &str, to: &str) -> Result<()> {
        let u = root.user;
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        let g = *t.users[u].by_dir.get(from).ok_or(Errno::ENOENT)?;
        if t.users[u].by_dir.contains_key(to) {
            return Err(Errno::EEXIST);
        }
        let st = t.folders[g].clone();
        let trash = to == TRASHED || to.starts_with(TRASHED);
        if !trash && !folder_name_ok(to) {
            return Err(Errno::EACCES);
        }
        let log = t.users[u].folder_log.as_mut().ok_or(Errno::EACCES)?;
        if trash {
            // Being deleted: gone for good, whatever happens next.
            log.record(FolderEvent::Deleted {
                dir: from.to_string(),
            })?;
            st.trashed.store(true, Ordering::Relaxed);
        } else {
            log.record(FolderEvent::Renamed {
                from: from.to_string(),
                to: to.to_string(),
            })?;
        }
        let entry = &mut t.users[u];
        entry.by_dir.remove(from);
        entry.by_dir.insert(to.to_string(), g);
        *st.shown_dir.write().unwrap_or_else(|e| e.into_inner()) = to.to_string();
        Ok(())
    }

    /// A file in a folder's `cur/`, `new/` or `tmp/` (APPEND writes one in `tmp/`).
    pub(super) fn create_message_file(
        &self,
        g: usize,
        st: &FolderState,
        sub: Subdir,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<Attr> {
        if !overlay_name_ok(name) {
            return Err(Errno::EACCES);
        }
        let dir = self.overlay_sub(st, sub)?;
        self.create_overlay_file(st, &dir.join(name), mode, flags)?;
        st.changed();
        self.overlay_attr(g, st, &sub_path(sub, name))
    }

    /// `unlink` of a message (EXPUNGE, the end of MOVE, or DELETE emptying a folder).
    pub(super) fn unlink_message(
        &self,
        g: usize,
        st: &FolderState,
        sub: Subdir,
        name: &OsStr,
    ) -> Result<()> {
        let rel = sub_path(sub, name);
        let path = self.overlay_dir(st).join(&rel);
        if path.is_file() {
            self.refund_file(st, &path);
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                self.forget_overlay(g, &rel);
                st.changed();
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let snap = self.snapshot_of(g, st)?;
        let at = self
            .base_message(st, &snap, sub, name)
            .ok_or(Errno::ENOENT)?;
        let h = snap.hashes[at];
        self.with_changes(st, |c| c.record(h, Change::Gone))??;
        st.changed();
        Ok(())
    }

    /// `rename` of a message within its folder: `tmp/` to `new/` or `cur/` (APPEND), `new/` to
    /// `cur/`, or new flags (STORE).
    pub(super) fn rename_message(
        &self,
        g: usize,
        st: &FolderState,
        (from_sub, from): (Subdir, &OsStr),
        (to_sub, to): (Subdir, &OsStr),
    ) -> Result<()> {
        if !overlay_name_ok(to) {
            return Err(Errno::EACCES);
        }
        let dir = self.overlay_dir(st);
        let (rel_from, rel_to) = (sub_path(from_sub, from), sub_path(to_sub, to));
        if dir.join(&rel_from).is_file() {
            self.overlay_sub(st, to_sub)?;
            self.refund_file(st, &dir.join(&rel_to));
            std::fs::rename(dir.join(&rel_from), dir.join(&rel_to))?;
            self.overlay_inos
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rename(g, &rel_from, &rel_to);
            st.changed();
            return Ok(());
        }
        let snap = self.snapshot_of(g, st)?;
        let at = self
            .base_message(st, &snap, from_sub, from)
            .ok_or(Errno::ENOENT)?;
        if to_sub == Subdir::Tmp {
            return Err(Errno::EACCES);
        }
        // The same message: the same base name; only the flags after `:2,` may change.
        let base = st.folder.base_name(&snap.index, &snap.messages()[at]);
        let to = to.to_str().ok_or(Errno::EACCES)?;
        let (to_base, flags) = match to.split_once(":2,") {
            Some((b, f)) => (b, f),
            None => (to, ""),
        };
        if to_base != base || (to_sub == Subdir::Cur && !to.contains(":2,")) {
            return Err(Errno::EACCES);
        }
        let h = snap.hashes[at];
        self.with_changes(st, |c| {
            c.record(h, Change::Moved(to_sub, flags.to_string()))
        })??;
        st.changed();
        Ok(())
    }

    /// `link` of a message into a folder's directory (COPY and MOVE). A message of an mbox is
    /// copied into a file of the state directory (with its date); a tester's file is linked.
    pub(super) fn link_message(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        let (g2, st2, sub) = self.writable_sub(newparent)?;
        if !overlay_name_ok(newname) {
            return Err(Errno::EACCES);
        }
        let target = self.overlay_sub(&st2, sub)?.join(newname);
        match self.decode(ino).ok_or(Errno::ENOENT)? {
            Node::Overlay(g, rel) => {
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                std::fs::hard_link(self.overlay_dir(&st).join(&rel), &target)?;
            }
            Node::Message(g, slot, uid) => {
                let st = self.state(g).ok_or(Errno::ENOENT)?;
                let snap = self.snapshot_of(g, &st)?;
                if snap.slot != slot {
                    return Err(Errno::ENOENT);
                }
                let at = snap.position(uid).ok_or(Errno::ENOENT)?;
                let m = snap.messages()[at];
                let size = m.size(&snap.index);
                self.charge(&st2, quota::cost(size) as i64)?;
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)?;
                let mut at_byte = 0;
                while at_byte < size {
                    let chunk = self.read_message(g, &st, &snap, at, at_byte, 1 << 20)?;
                    if chunk.is_empty() {
                        let _ = std::fs::remove_file(&target);
                        return Err(Errno::EIO);
                    }
                    out.write_all(&chunk)?;
                    at_byte += chunk.len() as u64;
                }
                let t = model::system_time(model::message_mtime(&m), 0);
                out.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))?;
            }
            _ => return Err(Errno::EACCES),
        }
        st2.changed();
        self.overlay_attr(g2, &st2, &sub_path(sub, newname))
    }

    /// The position of the shown base message called `name` in `sub`.
    pub(super) fn base_message(
        &self,
        st: &FolderState,
        snap: &Snapshot,
        sub: Subdir,
        name: &OsStr,
    ) -> Option<usize> {
        let (uv, uid) = model::parse_message_name(name.as_bytes())?;
        if uv != snap.index.uidvalidity {
            return None;
        }
        let at = snap.position(uid)?;
        let (want_sub, want) = self.base_file(st, snap, at)?;
        (want_sub == sub && OsStr::new(&want) == name).then_some(at)
    }

    /// Forgets an overlay file's inode (it was removed).
    pub(super) fn forget_overlay(&self, g: usize, rel: &OsStr) {
        let ino = self.overlay_ino(g, rel);
        self.overlay_files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop(&ino);
        self.overlay_inos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(g, rel);
    }

    /// How many changes testers made, per user (for the start-up log and `plan`).
    pub fn tester_changes(&self) -> Vec<(String, changes::Counts)> {
        self.user_names()
            .into_iter()
            .filter_map(|u| {
                let c = changes::count(&self.opts.state_dir, &u).ok()?;
                Some((u, c))
            })
            .collect()
    }
}

/// `cur/NAME` (the overlay path of a message file).
pub(super) fn sub_path(sub: Subdir, name: &OsStr) -> OsString {
    let mut p = OsString::from(sub.name());
    p.push("/");
    p.push(name);
    p
}

/// A folder directory name testers may make: `.Name`, one path component, not Dovecot's.
fn folder_name_ok(dir: &str) -> bool {
    dir.len() > 1
        && dir.len() <= 255
        && dir.starts_with('.')
        && !dir.starts_with("..")
        && !dir.contains('/')
        && !dir.ends_with('.')
        && !dir.contains("..")
}

/// A directory only root may enter.
pub(super) fn make_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
