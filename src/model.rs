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
use std::path::{Path, PathBuf};

use crate::index::{FolderIndex, Indexer, MAX_KEYWORDS, Msg};
use crate::mbox::{self, FileId, IndexOptions, ReadError};
use crate::names;
use crate::source::{self, Host, Owner, Problem, Severity, UserSource};

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
    /// The mbox, when there is one to read.
    pub source: Option<PathBuf>,
    /// Where the mbox is expected, whether or not it is there and acceptable now (`None`: a
    /// parent made for nested folders). The mount looks there again as time goes on.
    pub path: Option<PathBuf>,
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
        let inbox_meta = std::fs::metadata(&u.inbox).ok();
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
        // Sources must belong to the user (when the user is known).
        let uid = u.passwd.as_ref().map(|p| p.uid);

        let inbox_root = u.inbox.parent().unwrap_or(Path::new("/"));
        let mut folders = vec![Folder::new(&u.name, String::new(), "INBOX".into(), None)];
        folders[0].path = Some(u.inbox.clone());
        match source::check_source(&u.inbox, inbox_root, uid, opts.trust_owners) {
            Ok(Some(_)) => folders[0].source = Some(u.inbox.clone()),
            Ok(None) => folders[0].problems.push(Problem::new(
                Severity::Note,
                Some(&u.inbox),
                "no inbox file: INBOX is empty",
            )),
            Err(why) => folders[0].refuse(&u.inbox, why),
        }

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
            if let Some((_, path)) = u.folders.get(i).filter(|_| m.has_source) {
                f.path = Some(path.clone());
                match source::check_source(path, &u.home, uid, opts.trust_owners) {
                    Ok(Some(_)) => f.source = Some(path.clone()),
                    Ok(None) => f.refuse(path, "does not exist".into()),
                    Err(why) => {
                        let why = match source::uw_directory_store(path) {
                            Some(store) => format!("{store}: refused"),
                            None => why,
                        };
                        f.refuse(path, why)
                    }
                }
            }
            folders.push(f);
        }

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
            None => problems.push(Problem::new(
                Severity::Note,
                Some(&u.home.join(".mailboxlist")),
                format!(
                    "subscription {:?} names no migrated folder; dropped",
                    String::from_utf8_lossy(entry)
                ),
            )),
        }
    }
    out
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

    /// Indexes the folder's mbox (an empty index when it has none).
    pub fn index(&self, base: &IndexOptions) -> Result<(FolderIndex, Option<FileId>), ReadError> {
        match &self.source {
            Some(path) => {
                let (ix, id) = mbox::index_path(path, &self.index_options(base))?;
                Ok((ix, Some(id)))
            }
            None => Ok((self.empty_index(base), None)),
        }
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

    fn user_with(mailboxlist: Option<&[&str]>, folders: &[&str]) -> UserSource {
        UserSource {
            name: "alice".into(),
            home: "/nonexistent/home/alice".into(),
            inbox: "/nonexistent/spool/alice".into(),
            passwd: None,
            folders: folders
                .iter()
                .map(|f| {
                    (
                        f.as_bytes().to_vec(),
                        PathBuf::from("/nonexistent/home/alice").join(f),
                    )
                })
                .collect(),
            mailboxlist: mailboxlist.map(|l| l.iter().map(|e| e.as_bytes().to_vec()).collect()),
            problems: vec![],
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
        let opts = TreeOptions {
            strip_prefixes: vec!["mail/".into()],
            trust_owners: true,
            ..Default::default()
        };
        let u = user_with(
            Some(&["INBOX", "mail/Sent", "~/mail/Work/2004", "mail/gone"]),
            &["mail/Sent", "mail/Work/2004", "mail/Drafts"],
        );
        let mut tree = UserTree::build(&u, &opts);
        // The sources do not exist here; pretend they do.
        for f in &mut tree.folders {
            if f.uw_name.is_some() {
                f.source = Some("/x".into());
            }
        }
        let subs = subscriptions(&u, &tree.folders, &opts, &mut vec![]);
        tree.subscriptions = subs;
        assert_eq!(
            tree.subscriptions_file(),
            b"V\t2\n\nINBOX\nSent\nWork\t2004\n"
        );
        let dirs: Vec<&str> = tree.folders.iter().map(|f| f.dir.as_str()).collect();
        assert_eq!(dirs, ["", ".Sent", ".Work.2004", ".Drafts", ".Work"]);
    }
}
