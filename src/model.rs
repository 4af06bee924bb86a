//! The Maildir++ trees that the mount shows, `materialize` writes and `verify` checks. Everything
//! about names and control files is decided here, once.
//!
//! Per user: INBOX at the root of `<user>/`, each folder in `.Name/`, each with `cur/ new/
//! tmp/`, a `dovecot-uidlist` (version 3: `3 V<uidvalidity> N<next uid>`, then
//! `<uid> :<base name>` ascending), a `dovecot-keywords` when the folder has keywords, and in
//! subfolders a `maildirfolder` marker. The root holds `subscriptions` (Dovecot's file name, v2
//! format), from `~/.mailboxlist` when the user has one, else every migrated folder.
//!
//! A message file is named `<time>.V<uidvalidity>U<uid>.<folder tag>,S=<size>,W=<vsize>`, then
//! `:2,<flags>`. The name depends only on the message's UID, its folder's UIDVALIDITY and
//! identity, its date and size: it is the same on every run, and across UW-IMAP rewrites of the
//! mbox that keep the message (only the `:2,` part follows flag changes). Messages without
//! `Status: O` are \Recent and go to `new/`; the others to `cur/`.

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::index::{FolderIndex, Indexer, MAX_KEYWORDS, Msg};
use crate::mbox::{self, FileId, IndexOptions, ReadError};
use crate::names;
use crate::safe::{Anchored, excerpt};
use crate::source::{self, Host, Owner, Problem, Severity, UserSource};

/// The longest file name (a Maildir++ folder is one directory name).
pub const MAX_NAME: usize = 255;

/// Options that shape the tree.
#[derive(Clone, Debug, Default)]
pub struct TreeOptions {
    /// One owner for every tree (virtual mail), instead of each user's.
    pub owner: Option<Owner>,
    pub trust_owners: bool,
    /// Leading path parts removed from folder names (clients' `mail/` prefix).
    pub strip_prefixes: Vec<String>,
}

/// All users' trees.
#[derive(Clone, Debug)]
pub struct Tree {
    pub users: Vec<UserTree>,
    pub problems: Vec<Problem>,
}

/// One user's Maildir++ tree.
#[derive(Clone, Debug)]
pub struct UserTree {
    pub name: String,
    /// The home, under which every folder's source must stay.
    pub home: PathBuf,
    /// The inbox file (which may not exist yet).
    pub inbox: PathBuf,
    /// The uid that must own the sources (from passwd), unless owners are trusted.
    pub source_uid: Option<u32>,
    pub owner: Owner,
    /// Where the owner came from (`passwd`, `--owner`, `inbox owner`...).
    pub owner_from: &'static str,
    /// INBOX first, then folders in list order, then parents made for nested folders.
    pub folders: Vec<Folder>,
    /// Subscribed folders, as indexes into `folders`.
    pub subscriptions: Vec<usize>,
    pub problems: Vec<Problem>,
}

/// One folder of a user's tree.
#[derive(Clone, Debug)]
pub struct Folder {
    /// The directory under the user's root: empty for INBOX, `.Name` for the others.
    pub dir: String,
    /// The IMAP name (UTF-8, `/` between levels).
    pub display: String,
    /// The mbox, when there is one to read (for messages: it is opened by
    /// [`Folder::open_source`], never by this path).
    pub source: Option<PathBuf>,
    /// Where the mbox is expected, whether or not it is there and acceptable now (`None`: a
    /// parent made for nested folders). The mount looks there again as time goes on, through
    /// [`Folder::open_source`].
    pub path: Option<PathBuf>,
    /// Where the mbox is, and who must own it (`None` also for a folder that can never be
    /// migrated: its name is too long).
    source_at: Option<SourceAt>,
    /// Why the source is not read (refused by a check).
    pub refused: Option<String>,
    /// The UW folder name (path under the home); `None` for INBOX and made-up parents.
    pub uw_name: Option<Vec<u8>>,
    /// Part of every message file name: tells folders of one user apart.
    pub tag: u32,
    /// UIDVALIDITY for a folder whose mbox carries none.
    pub derived_uidvalidity: u32,
    pub problems: Vec<Problem>,
}

/// Where a folder's mbox is, and who must own it.
#[derive(Clone, Debug)]
struct SourceAt {
    at: Anchored,
    /// The uid that must own it; `None` with `--trust-owners` or for a user not in passwd.
    owner: Option<u32>,
}

/// A folder's mbox, open. It is opened once through the safe walk and checked on its
/// descriptor; everything about it (index, served bytes, copies) is read from this descriptor.
#[derive(Debug)]
pub struct OpenSource {
    pub file: File,
    /// Its identity when it was opened, before anything was read.
    pub id: FileId,
    /// For messages only.
    pub path: PathBuf,
}

impl OpenSource {
    /// Whether the file changed since it was opened: written, truncated, or renamed over (its
    /// old inode's link count and ctime change). Bytes copied from a changed file may be
    /// slices of another message.
    pub fn changed(&self) -> std::io::Result<bool> {
        Ok(FileId::of(&self.file.metadata()?) != self.id)
    }
}

/// 32-bit FNV-1a: a stable hash (std's hasher may change between Rust releases).
fn fnv1a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for &b in *p {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

impl Tree {
    /// Lays out every user's tree and checks every source (nothing is read yet).
    pub fn build(host: &Host, opts: &TreeOptions) -> Tree {
        Tree {
            users: host
                .users
                .iter()
                .map(|u| UserTree::build(u, opts))
                .collect(),
            problems: host.problems.clone(),
        }
    }

    /// Every problem, list-level first.
    pub fn all_problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().chain(self.users.iter().flat_map(|u| {
            u.problems
                .iter()
                .chain(u.folders.iter().flat_map(|f| f.problems.iter()))
        }))
    }
}

impl UserTree {
    fn build(u: &UserSource, opts: &TreeOptions) -> UserTree {
        let mut problems = u.problems.clone();
        // Sources must belong to the user (when the user is known), unless owners are trusted.
        let uid = u.passwd.as_ref().map(|p| p.uid);
        let required = if opts.trust_owners { None } else { uid };
        let mut folders = vec![Folder::new(&u.name, String::new(), "INBOX".into(), None)];
        folders[0].path = Some(u.inbox.clone());
        folders[0].source_at = Some(SourceAt {
            at: u.inbox_at.clone(),
            owner: required,
        });
        let inbox_meta = match source::open_source(&u.inbox_at, required) {
            Ok(Some((_, meta))) => {
                folders[0].source = Some(u.inbox.clone());
                Some(meta)
            }
            Ok(None) => {
                folders[0].problems.push(Problem::new(
                    Severity::Note,
                    Some(&u.inbox),
                    "no inbox file: INBOX is empty",
                ));
                None
            }
            Err(why) => {
                folders[0].refuse(&u.inbox, why);
                None
            }
        };
        let (owner, owner_from) = if let Some(o) = opts.owner {
            (o, "--owner")
        } else if let Some(p) = &u.passwd {
            (
                Owner {
                    uid: p.uid,
                    gid: p.gid,
                },
                "passwd",
            )
        } else if let Some(m) = &inbox_meta {
            use std::os::unix::fs::MetadataExt;
            (
                Owner {
                    uid: m.uid(),
                    gid: m.gid(),
                },
                "inbox owner",
            )
        } else {
            problems.push(Problem::new(
                Severity::Warning,
                None,
                format!(
                    "{}: no passwd entry and no inbox: the tree belongs to nobody (65534)",
                    u.name
                ),
            ));
            (
                Owner {
                    uid: 65534,
                    gid: 65534,
                },
                "nobody",
            )
        };

        let stripped: Vec<Vec<u8>> = u
            .folders
            .iter()
            .map(|(name, _)| strip_prefix(name, &opts.strip_prefixes).to_vec())
            .collect();
        let mapped = names::map_folders(&stripped);
        for (i, m) in mapped.into_iter().enumerate() {
            let mut f = Folder::new(
                &u.name,
                m.dir,
                m.display,
                u.folders.get(i).map(|(n, _)| n.clone()),
            );
            for note in m.notes {
                f.problems.push(Problem::new(
                    Severity::Note,
                    u.folders.get(i).map(|(_, p)| p.as_path()),
                    note,
                ));
            }
            if let Some((name, path)) = u.folders.get(i).filter(|_| m.has_source) {
                f.path = Some(path.clone());
                let at = u.home_at.join(std::ffi::OsStr::from_bytes(name));
                if f.dir.len() > MAX_NAME {
                    let why = format!(
                        "its Maildir++ name {} is {} bytes, more than the {MAX_NAME} a file name may have: refused",
                        excerpt(f.dir.as_bytes()),
                        f.dir.len()
                    );
                    f.refuse(path, why);
                    folders.push(f);
                    continue;
                }
                f.source_at = Some(SourceAt {
                    at: at.clone(),
                    owner: required,
                });
                match source::open_source(&at, required) {
                    Ok(Some(_)) => f.source = Some(path.clone()),
                    Ok(None) => f.refuse(path, "does not exist".into()),
                    Err(why) => {
                        let store = at
                            .open_dir()
                            .ok()
                            .and_then(|d| source::uw_directory_store(&d));
                        let why = match store {
                            Some(store) => format!("{store}: refused"),
                            None => why,
                        };
                        f.refuse(path, why)
                    }
                }
            }
            folders.push(f);
        }
        // Parents made for nested folders exist only for folders that are migrated: a refused
        // source leaves no empty folder behind.
        let live: Vec<String> = folders
            .iter()
            .filter(|f| f.uw_name.is_some() && f.refused.is_none())
            .map(|f| f.dir.clone())
            .collect();
        folders.retain(|f| {
            f.uw_name.is_some()
                || f.is_inbox()
                || live.iter().any(|d| {
                    d.len() > f.dir.len()
                        && d.starts_with(f.dir.as_str())
                        && d.as_bytes()[f.dir.len()] == b'.'
                })
        });

        let subscriptions = subscriptions(u, &folders, opts, &mut problems);
        UserTree {
            name: u.name.clone(),
            home: u.home.clone(),
            inbox: u.inbox.clone(),
            source_uid: uid,
            owner,
            owner_from,
            folders,
            subscriptions,
            problems,
        }
    }

    /// The `subscriptions` file (Dovecot's v2 format: levels separated by TAB, mUTF-7).
    pub fn subscriptions_file(&self) -> Vec<u8> {
        let mut out = String::from("V\t2\n\n");
        for &i in &self.subscriptions {
            let f = &self.folders[i];
            if f.dir.is_empty() {
                out.push_str("INBOX\n");
            } else {
                out.push_str(&f.dir[1..].replace('.', "\t"));
                out.push('\n');
            }
        }
        out.into_bytes()
    }
}

fn strip_prefix<'a>(name: &'a [u8], prefixes: &[String]) -> &'a [u8] {
    for p in prefixes {
        let p = p.as_bytes();
        if !p.is_empty() && name.len() > p.len() && name.starts_with(p) {
            return &name[p.len()..];
        }
    }
    name
}

/// The subscribed folders: `~/.mailboxlist` entries that name migrated folders, else all of them.
fn subscriptions(
    u: &UserSource,
    folders: &[Folder],
    opts: &TreeOptions,
    problems: &mut Vec<Problem>,
) -> Vec<usize> {
    let migrated = |i: &usize| folders[*i].source.is_some() || *i == 0;
    let Some(list) = &u.mailboxlist else {
        return (0..folders.len()).filter(migrated).collect();
    };
    let home = u.home.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    let mut dropped = Vec::new();
    for entry in list {
        let mut e: &[u8] = entry;
        if let Some(rest) = e.strip_prefix(b"~/") {
            e = rest;
        } else if e.starts_with(home) && e.get(home.len()) == Some(&b'/') {
            e = &e[home.len() + 1..];
        }
        let found = if e.eq_ignore_ascii_case(b"INBOX") {
            Some(0)
        } else {
            let e = strip_prefix(e, &opts.strip_prefixes);
            folders.iter().position(|f| {
                f.uw_name
                    .as_deref()
                    .is_some_and(|n| strip_prefix(n, &opts.strip_prefixes) == e)
            })
        };
        match found.filter(migrated) {
            Some(i) if !out.contains(&i) => out.push(i),
            Some(_) => {}
            None => dropped.push(entry),
        }
    }
    // The user's file: a few short, escaped excerpts, never all of it.
    const SHOWN: usize = 5;
    if !dropped.is_empty() {
        let mut names: Vec<String> = dropped.iter().take(SHOWN).map(|e| excerpt(e)).collect();
        if dropped.len() > SHOWN {
            names.push(format!("and {} more", dropped.len() - SHOWN));
        }
        problems.push(Problem::new(
            Severity::Note,
            Some(&u.home.join(source::MAILBOXLIST)),
            format!(
                "{} subscription(s) name no migrated folder; dropped: {}",
                dropped.len(),
                names.join(", ")
            ),
        ));
    }
    out
}

/// The oldest file time every Linux file system stores: a signed 32-bit `time_t`
/// (1901-12-13 20:45:52 UTC), which ext4 with small inodes and XFS without bigtime hold.
pub const MTIME_MIN: i64 = i32::MIN as i64;
/// The latest such time: 2038-01-19 03:14:07 UTC.
pub const MTIME_MAX: i64 = i32::MAX as i64;

/// A message file's mtime (Dovecot's INTERNALDATE): its date, moved to the nearest one every
/// file system can store (dates such as year 0 or 9999 are reported by `plan`). The mount,
/// `materialize` and `verify` all use this.
pub fn message_mtime(m: &Msg) -> i64 {
    m.time.clamp(MTIME_MIN, MTIME_MAX)
}

/// `1992-12-02 05:53:22 UTC`, or the year alone where jiff's range ends.
fn show_time(t: i64) -> String {
    match jiff::Timestamp::from_second(t) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("year {}", 1970 + t.div_euclid(31_556_952)),
    }
}

impl Folder {
    fn new(user: &str, dir: String, display: String, uw_name: Option<Vec<u8>>) -> Folder {
        let identity: &[u8] = uw_name.as_deref().unwrap_or(dir.as_bytes());
        let tag = fnv1a(&[user.as_bytes(), dir.as_bytes()]);
        let h = fnv1a(&[b"uidvalidity", user.as_bytes(), identity]);
        Folder {
            dir,
            display,
            source: None,
            path: None,
            source_at: None,
            refused: None,
            uw_name,
            tag,
            derived_uidvalidity: h % 0x7fff_fffe + 1,
            problems: Vec::new(),
        }
    }

    /// A folder a tester made through a writable mount: it has no source.
    pub fn created(user: &str, dir: &str) -> Folder {
        let display = dir
            .trim_start_matches('.')
            .split('.')
            .map(|p| names::mutf7_decode(p).unwrap_or_else(|| p.to_string()))
            .collect::<Vec<_>>()
            .join("/");
        Folder::new(user, dir.to_string(), display, None)
    }

    fn refuse(&mut self, path: &Path, why: String) {
        self.problems
            .push(Problem::new(Severity::Error, Some(path), why.clone()));
        self.refused = Some(why);
    }

    pub fn is_inbox(&self) -> bool {
        self.dir.is_empty()
    }

    /// The options to index this folder with.
    pub fn index_options(&self, base: &IndexOptions) -> IndexOptions {
        IndexOptions {
            derived_uidvalidity: self.derived_uidvalidity,
            ..base.clone()
        }
    }

    /// Opens the folder's mbox through the safe walk and checks the opened file again (a
    /// symlink, another owner, anything but a regular file are refused). `Ok(None)`: the folder
    /// has no mbox.
    pub fn open_source(&self) -> Result<Option<OpenSource>, ReadError> {
        let Some(at) = &self.source_at else {
            return Ok(None);
        };
        let path = at.at.path();
        match source::open_source(&at.at, at.owner) {
            Ok(Some((file, meta))) => Ok(Some(OpenSource {
                file,
                id: FileId::of(&meta),
                path,
            })),
            Ok(None) => Err(ReadError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "does not exist any more",
            ))),
            Err(why) => Err(ReadError::NotMbox(why)),
        }
    }

    /// Opens and indexes the folder's mbox (an empty index when it had none when the tree was
    /// built). The open file comes back with the index: read the messages from it, never from
    /// the path.
    pub fn index(
        &self,
        base: &IndexOptions,
    ) -> Result<(FolderIndex, Option<OpenSource>), ReadError> {
        if self.source.is_none() {
            return Ok((self.empty_index(base), None));
        }
        match self.open_source()? {
            Some(src) => {
                let ix = self.index_source(&src, base)?;
                Ok((ix, Some(src)))
            }
            None => Ok((self.empty_index(base), None)),
        }
    }

    /// Whether the mbox is there and acceptable now, at a glance: reached through the safe walk
    /// without being opened, a regular file, with the owner it must have (and one link when its
    /// owner is not checked). [`Folder::open_source`] checks again on the opened file.
    pub fn source_present(&self) -> bool {
        let Some(at) = &self.source_at else {
            return false;
        };
        at.at.stat().ok().flatten().is_some_and(|st| {
            st.kind == crate::safe::Kind::File
                && match at.owner {
                    Some(uid) => st.uid == uid,
                    None => st.nlink <= 1,
                }
        })
    }

    /// Indexes an mbox opened by [`Folder::open_source`], as long as it was when opened.
    pub fn index_source(
        &self,
        src: &OpenSource,
        base: &IndexOptions,
    ) -> Result<FolderIndex, ReadError> {
        mbox::index_file(&src.file, src.id.len, &self.index_options(base))
    }

    /// Messages whose date a file's time cannot hold everywhere (see [`message_mtime`]).
    pub fn date_problems(&self, index: &FolderIndex) -> Option<Problem> {
        let odd: Vec<&Msg> = index
            .messages
            .iter()
            .filter(|m| message_mtime(m) != m.time)
            .collect();
        if odd.is_empty() {
            return None;
        }
        let mut shown: Vec<String> = odd
            .iter()
            .take(5)
            .map(|m| {
                format!(
                    "UID {}: {} -> {}",
                    m.uid,
                    show_time(m.time),
                    show_time(message_mtime(m))
                )
            })
            .collect();
        if odd.len() > 5 {
            shown.push(format!("and {} more", odd.len() - 5));
        }
        Some(Problem::new(
            Severity::Warning,
            self.source.as_deref(),
            format!(
                "{} message(s) dated outside {} .. {}, which not every file system can store as a file's time: each gets the nearest date that can be stored as its INTERNALDATE ({})",
                odd.len(),
                show_time(MTIME_MIN),
                show_time(MTIME_MAX),
                shown.join("; ")
            ),
        ))
    }

    /// The index of a folder without messages.
    pub fn empty_index(&self, base: &IndexOptions) -> FolderIndex {
        Indexer::new(base.tz.clone(), self.derived_uidvalidity).finish(0)
    }

    /// The message file's base name (the part `dovecot-uidlist` records).
    pub fn base_name(&self, index: &FolderIndex, m: &Msg) -> String {
        let mut s = format!(
            "{}.V{}U{}.{:08x},S={}",
            m.time.max(0),
            index.uidvalidity,
            m.uid,
            self.tag,
            m.size(index)
        );
        if let Some(w) = m.vsize(index) {
            let _ = write!(s, ",W={w}");
        }
        s
    }

    /// Where a message lives (`new` or `cur`) and its file name there.
    pub fn message_file(&self, index: &FolderIndex, m: &Msg) -> (Subdir, String) {
        let base = self.base_name(index, m);
        let flags = m.maildir_flags();
        if m.is_recent() {
            let name = if flags.is_empty() {
                base
            } else {
                format!("{base}:2,{flags}")
            };
            (Subdir::New, name)
        } else {
            (Subdir::Cur, format!("{base}:2,{flags}"))
        }
    }

    /// `dovecot-uidlist`.
    pub fn uidlist(&self, index: &FolderIndex) -> Vec<u8> {
        self.uidlist_of(index, &index.messages)
    }

    /// `dovecot-uidlist` listing only `messages` (a prefix of the index's).
    pub fn uidlist_of(&self, index: &FolderIndex, messages: &[Msg]) -> Vec<u8> {
        let mut s = format!("3 V{} N{}\n", index.uidvalidity, index.uid_next);
        for m in messages {
            let _ = writeln!(s, "{} :{}", m.uid, self.base_name(index, m));
        }
        s.into_bytes()
    }

    /// `dovecot-keywords`, when the folder has keywords.
    pub fn keywords_file(&self, index: &FolderIndex) -> Option<Vec<u8>> {
        if index.keywords.is_empty() {
            return None;
        }
        let mut s = String::new();
        for (i, k) in index.keywords.iter().take(MAX_KEYWORDS).enumerate() {
            let _ = writeln!(s, "{i} {k}");
        }
        Some(s.into_bytes())
    }

    /// The control files of the folder's directory, with their contents.
    pub fn control_files(&self, index: &FolderIndex) -> Vec<(&'static str, Vec<u8>)> {
        let mut files = vec![(UIDLIST, self.uidlist(index))];
        if let Some(k) = self.keywords_file(index) {
            files.push((KEYWORDS, k));
        }
        if !self.is_inbox() {
            files.push((MAILDIRFOLDER, Vec::new()));
        }
        files
    }
}

/// Seconds (and nanoseconds) since the epoch, before it too, as a `SystemTime`.
pub fn system_time(secs: i64, nanos: u32) -> std::time::SystemTime {
    let base = if secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
    };
    base + std::time::Duration::from_nanos(u64::from(nanos))
}

/// The mtime of a folder's directories and control files: its mbox's, or for a folder without one
/// a fixed date in the past (2000-01-01), so that it is the same in the mount and in DEST.
pub fn folder_mtime(source: Option<&FileId>) -> std::time::SystemTime {
    const EMPTY_FOLDER_MTIME: i64 = 946_684_800;
    match source {
        Some(id) => system_time(
            id.mtime_ns.div_euclid(1_000_000_000) as i64,
            id.mtime_ns.rem_euclid(1_000_000_000) as u32,
        ),
        None => system_time(EMPTY_FOLDER_MTIME, 0),
    }
}

pub const UIDLIST: &str = "dovecot-uidlist";
pub const KEYWORDS: &str = "dovecot-keywords";
pub const MAILDIRFOLDER: &str = "maildirfolder";
pub const SUBSCRIPTIONS: &str = "subscriptions";

/// A message directory of a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subdir {
    Cur,
    New,
    Tmp,
}

impl Subdir {
    pub const ALL: [Subdir; 3] = [Subdir::Cur, Subdir::New, Subdir::Tmp];

    pub fn name(self) -> &'static str {
        match self {
            Subdir::Cur => "cur",
            Subdir::New => "new",
            Subdir::Tmp => "tmp",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Subdir> {
        Subdir::ALL
            .into_iter()
            .find(|s| s.name().as_bytes() == name)
    }
}

/// The UIDVALIDITY and UID in a message file name made by [`Folder::base_name`].
pub fn parse_message_name(name: &[u8]) -> Option<(u32, u32)> {
    let name = std::str::from_utf8(name).ok()?;
    let mut parts = name.split('.');
    parts.next()?.parse::<i64>().ok()?;
    let vu = parts.next()?.strip_prefix('V')?;
    let (v, u) = vu.split_once('U')?;
    Some((v.parse().ok()?, u.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Unquote;

    /// A user whose home is `home` (`<dir>/home/alice`), with these folders.
    fn user_in(dir: &Path, mailboxlist: Option<&[&str]>, folders: &[&str]) -> UserSource {
        let home_at = Anchored::from_pattern(&format!("{}/home/%u", dir.display()), "alice");
        let inbox_at = Anchored::from_pattern(&format!("{}/spool/%u", dir.display()), "alice");
        UserSource {
            name: "alice".into(),
            home: home_at.path(),
            inbox: inbox_at.path(),
            passwd: None,
            folders: folders
                .iter()
                .map(|f| (f.as_bytes().to_vec(), home_at.path().join(f)))
                .collect(),
            home_at,
            inbox_at,
            mailboxlist: mailboxlist.map(|l| l.iter().map(|e| e.as_bytes().to_vec()).collect()),
            problems: vec![],
        }
    }

    /// Makes the mbox files of `folders` under `<dir>/home/alice`.
    fn make_sources(dir: &Path, folders: &[&str]) {
        for f in folders {
            let p = dir.join("home/alice").join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "From a Wed Dec  2 05:53:22 1992\n\nx\n").unwrap();
        }
    }

    #[test]
    fn names_and_control_files() {
        let tz = jiff::tz::TimeZone::UTC;
        let data = "From a Wed Dec  2 05:53:22 1992\nX-IMAPbase: 1104919200 0000000020 Junk\nStatus: RO\nX-Keywords: Junk\nX-UID: 7\n\nbody\n\nFrom a Wed Dec  2 05:53:23 1992\nX-UID: 9\n\nbody2\n";
        let mut ix = Indexer::new(tz, 5);
        for m in crate::scan::scan_all(data.as_bytes(), Unquote::None).unwrap() {
            ix.push(&m);
        }
        let ix = ix.finish(data.len() as u64);
        let f = Folder::new(
            "alice",
            ".Sent".into(),
            "Sent".into(),
            Some(b"Sent".to_vec()),
        );
        let (sub, name) = f.message_file(&ix, &ix.messages[0]);
        assert_eq!(sub, Subdir::Cur);
        assert_eq!(
            name,
            format!("723275602.V1104919200U7.{:08x},S=6,W=8:2,Sa", f.tag)
        );
        let (sub, name) = f.message_file(&ix, &ix.messages[1]);
        assert_eq!(sub, Subdir::New);
        assert!(!name.contains(':'));
        assert_eq!(parse_message_name(name.as_bytes()), Some((1104919200, 9)));
        let uidlist = String::from_utf8(f.uidlist(&ix)).unwrap();
        assert!(uidlist.starts_with("3 V1104919200 N21\n7 :723275602.V1104919200U7."));
        assert_eq!(f.keywords_file(&ix).unwrap(), b"0 Junk\n");
        assert_eq!(f.control_files(&ix).len(), 3);
    }

    #[test]
    fn derived_values_are_stable_and_distinct() {
        let a = Folder::new(
            "alice",
            ".Sent".into(),
            "Sent".into(),
            Some(b"Sent".to_vec()),
        );
        let b = Folder::new(
            "alice",
            ".Sent".into(),
            "Sent".into(),
            Some(b"Sent".to_vec()),
        );
        let c = Folder::new("bob", ".Sent".into(), "Sent".into(), Some(b"Sent".to_vec()));
        assert_eq!(
            (a.tag, a.derived_uidvalidity),
            (b.tag, b.derived_uidvalidity)
        );
        assert_ne!(a.tag, c.tag);
        assert_ne!(a.derived_uidvalidity, c.derived_uidvalidity);
        assert!(a.derived_uidvalidity > 0 && a.derived_uidvalidity < 0x8000_0000);
    }

    #[test]
    fn subscriptions_come_from_the_mailboxlist() {
        let d = tempfile::tempdir().unwrap();
        let opts = TreeOptions {
            strip_prefixes: vec!["mail/".into()],
            trust_owners: true,
            ..Default::default()
        };
        let folders = ["mail/Sent", "mail/Work/2004", "mail/Drafts"];
        make_sources(d.path(), &folders);
        let mut list = vec!["INBOX", "mail/Sent", "~/mail/Work/2004"];
        let gone: Vec<String> = (0..8).map(|i| format!("mail/gone\x1b[{i}")).collect();
        list.extend(gone.iter().map(String::as_str));
        let u = user_in(d.path(), Some(&list), &folders);
        let tree = UserTree::build(&u, &opts);
        assert_eq!(
            tree.subscriptions_file(),
            b"V\t2\n\nINBOX\nSent\nWork\t2004\n"
        );
        let dirs: Vec<&str> = tree.folders.iter().map(|f| f.dir.as_str()).collect();
        assert_eq!(dirs, ["", ".Sent", ".Work.2004", ".Drafts", ".Work"]);
        // Dropped entries: one note, a few escaped excerpts.
        let notes: Vec<String> = tree
            .problems
            .iter()
            .filter(|p| p.message.contains("subscription"))
            .map(|p| p.to_string())
            .collect();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("8 subscription(s)"), "{notes:?}");
        assert!(notes[0].contains("\"mail/gone\\u{1b}[0\""), "{notes:?}");
        assert!(
            notes[0].contains("and 3 more") && !notes[0].contains('\x1b'),
            "{notes:?}"
        );
    }

    #[test]
    fn a_refused_source_leaves_no_folder_behind() {
        let d = tempfile::tempdir().unwrap();
        let opts = TreeOptions {
            trust_owners: true,
            ..Default::default()
        };
        make_sources(d.path(), &["Work/ok"]);
        std::fs::create_dir_all(d.path().join("other")).unwrap();
        std::os::unix::fs::symlink(d.path().join("other"), d.path().join("home/alice/Linked"))
            .unwrap();
        let long = "x".repeat(250);
        make_sources(d.path(), &[&format!("Long/{long}")]);
        let list = ["Work/ok", "Linked/box", "Gone/box", &format!("Long/{long}")];
        let u = user_in(
            d.path(),
            Some(&["Linked/box", "Gone/box", "Work/ok"]),
            &list,
        );
        let tree = UserTree::build(&u, &opts);
        let dirs: Vec<&str> = tree.folders.iter().map(|f| f.dir.as_str()).collect();
        let long_dir = format!(".Long.{long}");
        assert_eq!(
            dirs,
            [
                "",
                ".Work.ok",
                ".Linked.box",
                ".Gone.box",
                &long_dir,
                ".Work"
            ]
        );
        let refused: Vec<&str> = tree
            .folders
            .iter()
            .filter_map(|f| f.refused.as_deref())
            .collect();
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(
            refused[0].contains("Linked is a symbolic link"),
            "{refused:?}"
        );
        assert_eq!(refused[1], "does not exist");
        assert!(
            refused[2].contains("256 bytes, more than the 255"),
            "{refused:?}"
        );
        assert_eq!(tree.subscriptions_file(), b"V\t2\n\nWork\tok\n");
    }

    #[test]
    fn dates_a_file_cannot_hold_are_moved_and_reported() {
        // c-client reads year 0000 as 2000 and cannot read 9999 (1-Jan-1970); 2050 it reads,
        // and a file's mtime cannot hold it everywhere.
        let tz = jiff::tz::TimeZone::UTC;
        let data = "From a Sat Jan  1 00:00:00 0000\n\nold\n\nFrom a Fri Dec 31 23:59:59 9999\n\nnew\n\nFrom a Wed Dec  2 05:53:22 1992\n\nok\n\nFrom a Sat Dec 31 23:59:59 2050\n\nlater\n";
        let mut ix = Indexer::new(tz, 5);
        for m in crate::scan::scan_all(data.as_bytes(), Unquote::None).unwrap() {
            ix.push(&m);
        }
        let ix = ix.finish(data.len() as u64);
        assert_eq!(ix.messages.len(), 4);
        let times: Vec<i64> = ix.messages.iter().map(message_mtime).collect();
        assert_eq!(times, [946684800, 0, 723275602, MTIME_MAX]);
        let f = Folder::new("alice", ".Old".into(), "Old".into(), Some(b"Old".to_vec()));
        let p = f.date_problems(&ix).unwrap().to_string();
        assert!(p.contains("1 message(s)"), "{p}");
        assert!(p.contains("2038-01-19 03:14:07 UTC"), "{p}");
    }
}
