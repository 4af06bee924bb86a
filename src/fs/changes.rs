//! Testers' changes, on a mount made with `--writable`, kept per user in the state directory
//! and never written to an mbox.
//!
//! - Folders (`<user>/.mboxfs/folders`): folders created, renamed and deleted, as a log replayed
//!   over the folders the lists give. A base folder (one made from an mbox) keeps following its
//!   mbox whatever it is called now.
//! - Messages of base folders (`<user>/.mboxfs/<folder>.changes`): a message expunged or moved
//!   away, or shown with other flags or in `cur/` rather than `new/`. A message is known by its
//!   content (its date and served bytes), so changes survive UW-IMAP rewrites and remounts.
//! - Messages testers added (APPEND, COPY, MOVE) are plain files in the folder's directory in
//!   the state directory (`cur/`, `new/`, `tmp/`).
//!
//! Both logs are append-only text, written before the operation is answered.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::uids::Hash;
use crate::model::Subdir;

/// What testers did to a message of a base folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Expunged (or moved to another folder).
    Gone,
    /// Shown in `cur/` or `new/`, with these Maildir flag letters.
    Moved(Subdir, String),
}

/// A change to the folders of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderEvent {
    /// A folder made by a tester, with the id of its directory in the state directory.
    Created {
        dir: String,
        id: u32,
    },
    Renamed {
        from: String,
        to: String,
    },
    Deleted {
        dir: String,
    },
}

/// An append-only log of lines with a first line naming its format.
struct Log {
    path: PathBuf,
}

impl Log {
    /// The lines of the log (a last line cut short is ignored), or none if it does not exist.
    fn read(path: &Path, magic: &str) -> io::Result<Vec<String>> {
        let mut text = Vec::new();
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(mut f) => f.read_to_end(&mut text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&text);
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        let mut lines = complete.lines();
        match lines.next() {
            None => Ok(Vec::new()),
            Some(m) if m == magic => Ok(lines.map(str::to_string).collect()),
            Some(other) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: unknown format {other:?}", path.display()),
            )),
        }
    }

    fn append(&self, magic: &str, line: &str) -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)?;
        let mut text = String::new();
        if f.metadata()?.len() == 0 {
            text.push_str(magic);
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        // Written before the operation is answered (a crash of the mount loses nothing); not
        // synced one by one: a SELECT that moves a thousand messages out of `new/` would wait
        // for a thousand syncs. (The UID log, which keeps the promise to clients, is synced.)
        f.write_all(text.as_bytes())
    }
}

/// Names in the logs are written escaped, so that a space or a newline cannot break a line.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            ' ' => out.push_str("%20"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("%20", " ")
        .replace("%0A", "\n")
        .replace("%0D", "\r")
        .replace("%25", "%")
}

const FOLDERS_MAGIC: &str = "mboxfs-folders 1";
const MESSAGES_MAGIC: &str = "mboxfs-changes 1";

/// The folder log of one user.
pub struct FolderLog {
    log: Log,
    pub events: Vec<FolderEvent>,
}

impl FolderLog {
    pub fn open(path: &Path) -> io::Result<FolderLog> {
        let mut events = Vec::new();
        for line in Log::read(path, FOLDERS_MAGIC)? {
            let w: Vec<&str> = line.split(' ').collect();
            let ev = match w.as_slice() {
                ["C", dir, id] => id.parse().ok().map(|id| FolderEvent::Created {
                    dir: unescape(dir),
                    id,
                }),
                ["R", from, to] => Some(FolderEvent::Renamed {
                    from: unescape(from),
                    to: unescape(to),
                }),
                ["D", dir] => Some(FolderEvent::Deleted { dir: unescape(dir) }),
                _ => None,
            };
            match ev {
                Some(ev) => events.push(ev),
                None => log::warn!("{}: a line is not understood: {line:?}", path.display()),
            }
        }
        Ok(FolderLog {
            log: Log {
                path: path.to_path_buf(),
            },
            events,
        })
    }

    pub fn record(&mut self, ev: FolderEvent) -> io::Result<()> {
        let line = match &ev {
            FolderEvent::Created { dir, id } => format!("C {} {id}", escape(dir)),
            FolderEvent::Renamed { from, to } => format!("R {} {}", escape(from), escape(to)),
            FolderEvent::Deleted { dir } => format!("D {}", escape(dir)),
        };
        self.log.append(FOLDERS_MAGIC, &line)?;
        self.events.push(ev);
        Ok(())
    }
}

/// Testers' changes to the messages of one base folder.
pub struct MessageChanges {
    log: Log,
    pub by_hash: HashMap<Hash, Change>,
    /// Lines in the log (to count changes for the admin).
    pub records: usize,
}

impl MessageChanges {
    pub fn open(path: &Path) -> io::Result<MessageChanges> {
        let mut by_hash = HashMap::new();
        let lines = Log::read(path, MESSAGES_MAGIC)?;
        let records = lines.len();
        for line in lines {
            let w: Vec<&str> = line.split(' ').collect();
            let parsed = match w.as_slice() {
                ["X", h] => u64::from_str_radix(h, 16).ok().map(|h| (h, Change::Gone)),
                ["M", h, sub, flags @ ..] if flags.len() <= 1 => {
                    let sub = Subdir::from_name(sub.as_bytes()).filter(|s| *s != Subdir::Tmp);
                    match (u64::from_str_radix(h, 16).ok(), sub) {
                        (Some(h), Some(sub)) => Some((
                            h,
                            Change::Moved(sub, flags.first().copied().unwrap_or("").into()),
                        )),
                        _ => None,
                    }
                }
                _ => None,
            };
            match parsed {
                Some((h, c)) => {
                    by_hash.insert(h, c);
                }
                None => log::warn!("{}: a line is not understood: {line:?}", path.display()),
            }
        }
        Ok(MessageChanges {
            log: Log {
                path: path.to_path_buf(),
            },
            by_hash,
            records,
        })
    }

    pub fn record(&mut self, h: Hash, change: Change) -> io::Result<()> {
        let line = match &change {
            Change::Gone => format!("X {h:016x}"),
            Change::Moved(sub, flags) if flags.is_empty() => format!("M {h:016x} {}", sub.name()),
            Change::Moved(sub, flags) => format!("M {h:016x} {} {flags}", sub.name()),
        };
        self.log.append(MESSAGES_MAGIC, &line)?;
        self.by_hash.insert(h, change);
        self.records += 1;
        Ok(())
    }
}

/// How many changes testers made for one user: folder changes, messages of base folders
/// changed, and messages they added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub folders: usize,
    pub messages_changed: usize,
    pub messages_added: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.folders + self.messages_changed + self.messages_added
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "folders changed {}, messages changed {}, messages added {}",
            self.folders, self.messages_changed, self.messages_added
        )
    }
}

/// Where a user's mboxfs files are in the state directory.
pub fn user_dir(state: &Path, user: &str) -> PathBuf {
    state.join(user).join(".mboxfs")
}

/// The directories of folders testers created.
pub const CREATED_DIR: &str = ".mboxfs-folders";

/// Counts what testers changed for `user` (nothing if the state directory has nothing).
pub fn count(state: &Path, user: &str) -> io::Result<Counts> {
    let mut c = Counts::default();
    let dir = user_dir(state, user);
    c.folders = FolderLog::open(&dir.join("folders"))?.events.len();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().ends_with(".changes") {
                c.messages_changed += MessageChanges::open(&e.path())?.by_hash.len();
            }
        }
    }
    // Messages added: files in cur/ and new/ of every folder directory of the user's state.
    let mut stack = vec![state.join(user)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let name = e.file_name();
            if t.is_dir() && name != ".mboxfs" {
                if name == "cur" || name == "new" {
                    c.messages_added += std::fs::read_dir(e.path())
                        .map_or(0, |r| r.flatten().filter(|x| x.path().is_file()).count());
                } else {
                    stack.push(e.path());
                }
            }
        }
    }
    Ok(c)
}

/// Throws away what testers changed for `user`: their folders, messages and the changes to
/// base messages, and Dovecot's indexes (which remember them). The record of UIDs served is
/// kept, and when there was anything to throw away every folder of the user starts a new
/// UIDVALIDITY at the next mount, so that no client is left with a cache of things that are
/// undone. Returns what was thrown away.
pub fn discard(state: &Path, user: &str) -> io::Result<Counts> {
    let counts = count(state, user)?;
    let root = state.join(user);
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(counts);
    };
    let mine = user_dir(state, user);
    let mut uid_logs = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&mine) {
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "folders" || name.ends_with(".changes") {
                std::fs::remove_file(&p)?;
            } else if name.ends_with(".uids") {
                uid_logs.push(p);
            }
        }
    }
    if counts.total() > 0 {
        // Dovecot's indexes go with the changes, so every folder may have been seen otherwise:
        // a new UIDVALIDITY for all of the user's folders.
        for p in uid_logs {
            super::uids::start_new_generation(&p)?;
        }
    }
    for e in rd.flatten() {
        if e.file_name() == ".mboxfs" {
            continue;
        }
        let p = e.path();
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_read_back() {
        let d = tempfile::tempdir().unwrap();
        let mut f = FolderLog::open(&d.path().join("folders")).unwrap();
        f.record(FolderEvent::Created {
            dir: ".New folder".into(),
            id: 1,
        })
        .unwrap();
        f.record(FolderEvent::Renamed {
            from: ".A".into(),
            to: ".B%".into(),
        })
        .unwrap();
        f.record(FolderEvent::Deleted { dir: ".C".into() }).unwrap();
        let again = FolderLog::open(&d.path().join("folders")).unwrap();
        assert_eq!(again.events, f.events);

        let mut m = MessageChanges::open(&d.path().join("x.changes")).unwrap();
        m.record(7, Change::Gone).unwrap();
        m.record(9, Change::Moved(Subdir::Cur, "FSa".into()))
            .unwrap();
        m.record(9, Change::Moved(Subdir::Cur, String::new()))
            .unwrap();
        let again = MessageChanges::open(&d.path().join("x.changes")).unwrap();
        assert_eq!(again.by_hash, m.by_hash);
        assert_eq!(again.by_hash[&9], Change::Moved(Subdir::Cur, String::new()));
        assert_eq!(again.records, 3);
    }
}
