//! The legacy host: which users and which mbox files are migrated, checked before anything is
//! read.
//!
//! - `userlist`: one login name a line; `folderlist`: `<user>/<path under the home>` a line.
//!   Blank lines and `#` comments are allowed. Bad lines (invalid names, `..`, absolute paths,
//!   control characters, duplicates) are errors naming the file and line; nothing is mounted or
//!   written until the lists are clean, unless `--skip-bad` says to go on without those lines.
//! - Without a folderlist, each home is searched for mail folders: mbox, UW's mbx and MMDF files
//!   (dotfiles and files that are not mail are skipped; UW's other formats are reported).
//! - Each source is opened through [`safe`](crate::safe): the home or the spool directory is the
//!   admin's, everything below is walked without following a symbolic link, and the checks are
//!   made on the opened file. A symlink anywhere below the home (or in place of the inbox), a file
//!   not owned by the user (unless `--trust-owners`), and anything but a regular file are
//!   refused, each with a line in the plan and the log.
//! - What users control is read with a size limit and never echoed beyond a short, escaped
//!   excerpt ([`safe::excerpt`](crate::safe::excerpt)): `~/.mailboxlist`, and the lines of the
//!   lists.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::mbox;
use crate::safe::{self, Anchored, Dir, Kind, excerpt};
use crate::sys;

/// The largest user or folder list read (a million folders of 60 bytes fit).
pub const LIST_LIMIT: u64 = 64 << 20;
/// The largest `~/.mailboxlist` read.
pub const MAILBOXLIST_LIMIT: u64 = 1 << 20;
/// The name of UW-IMAP's subscription list in a home.
pub const MAILBOXLIST: &str = ".mailboxlist";

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something the admin may want to know (a rename, a skipped file).
    Note,
    /// Migrated, but not exactly as it was.
    Warning,
    /// Not migrated.
    Error,
}

/// Something about the source worth telling the admin.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// The file it is about, if any.
    pub path: Option<PathBuf>,
    pub message: String,
}

impl Problem {
    pub fn new(severity: Severity, path: Option<&Path>, message: impl Into<String>) -> Problem {
        Problem {
            severity,
            path: path.map(Path::to_path_buf),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.severity {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        match &self.path {
            Some(p) => write!(f, "{level}: {}: {}", p.display(), self.message),
            None => write!(f, "{level}: {}", self.message),
        }
    }
}

/// Where the mail is: the options every subcommand shares.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `%u` is the user name (default `/var/spool/mail/%u`).
    pub inbox: String,
    /// `%u` is the user name (default `/home/%u`).
    pub home: String,
    pub userlist: PathBuf,
    /// `None`: discover the mbox files under each home.
    pub folderlist: Option<PathBuf>,
    /// Leading folder path parts that clients used as a prefix (`mail/`), removed from names.
    pub strip_prefixes: Vec<String>,
    /// Do not refuse sources owned by someone other than their user.
    pub trust_owners: bool,
    /// Go on without bad list lines instead of refusing to start.
    pub skip_bad: bool,
    /// Only these users (empty: all).
    pub only_users: Vec<String>,
    /// Only the users of this shard (`--shard K/N`).
    pub shard: Option<crate::shard::Shard>,
}

/// Who owns a user's tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// One user's sources.
#[derive(Clone, Debug)]
pub struct UserSource {
    pub name: String,
    pub home: PathBuf,
    pub inbox: PathBuf,
    /// The home and the inbox, split where the admin's part ends.
    pub home_at: Anchored,
    pub inbox_at: Anchored,
    /// From the passwd database.
    pub passwd: Option<sys::Passwd>,
    /// Filed folders: (UW name relative to the home, file). The file is for messages; it is
    /// opened as `home_at.join(name)`.
    pub folders: Vec<(Vec<u8>, PathBuf)>,
    /// `~/.mailboxlist` entries, if the user has one.
    pub mailboxlist: Option<Vec<Vec<u8>>>,
    pub problems: Vec<Problem>,
}

/// The users and sources of a host, validated.
#[derive(Clone, Debug)]
pub struct Host {
    pub users: Vec<UserSource>,
    /// Problems of the lists themselves (with `--skip-bad`, the lines left out).
    pub problems: Vec<Problem>,
}

/// Bad lines in the user or folder list.
#[derive(Debug)]
pub struct ListErrors(pub Vec<Problem>);

impl std::fmt::Display for ListErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        let lines = self
            .0
            .iter()
            .filter(|p| !p.message.starts_with("--user "))
            .count();
        if lines == 0 {
            return write!(f, "no such user; check --user");
        }
        write!(
            f,
            "{lines} bad line(s); fix the lists or pass --skip-bad to go on without them"
        )
    }
}

impl std::error::Error for ListErrors {}

/// Lines of a list file with their numbers, without blanks and comments. The file must be a
/// regular file of at most [`LIST_LIMIT`] bytes (a FIFO or a device is refused at once).
fn list_lines(path: &Path) -> Result<Vec<(usize, Vec<u8>)>, Problem> {
    let data = safe::read_admin_file(path, LIST_LIMIT)
        .map_err(|e| Problem::new(Severity::Error, Some(path), format!("cannot read: {e}")))?;
    Ok(data
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| {
            (
                i + 1,
                l.strip_suffix(b"\r").unwrap_or(l).trim_ascii().to_vec(),
            )
        })
        .filter(|(_, l)| !l.is_empty() && !l.starts_with(b"#"))
        .collect())
}

/// A login name as `useradd` accepts it (portable POSIX characters, at most 32).
pub fn valid_user_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name[0] != b'-'
        && name != b"."
        && name != b".."
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Why a folder path from the list is refused, if it is.
fn bad_folder_path(path: &[u8]) -> Option<&'static str> {
    if path.is_empty() {
        Some("no folder path after the user name")
    } else if path.starts_with(b"/") {
        Some("absolute path (folders are relative to the home)")
    } else if path.iter().any(|&b| b < 0x20 || b == 0x7f) {
        Some("NUL or control character in the path")
    } else if path.split(|&b| b == b'/').any(|c| c == b"..") {
        Some("'..' in the path")
    } else if path
        .split(|&b| b == b'/')
        .all(|c| c.is_empty() || c == b".")
    {
        Some("names the home itself, not a folder in it")
    } else {
        None
    }
}

impl Layout {
    /// Reads and checks the lists, and checks each source. Fails (with every bad line) when a
    /// list has errors, unless `skip_bad`.
    pub fn load(&self) -> Result<Host, ListErrors> {
        let mut list_problems = Vec::new();

        let user_lines = list_lines(&self.userlist).map_err(|p| ListErrors(vec![p]))?;
        let mut names: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for (n, line) in user_lines {
            let at = Some(self.userlist.as_path());
            let shown = excerpt(&line);
            if !valid_user_name(&line) {
                list_problems.push(Problem::new(
                    Severity::Error,
                    at,
                    format!("line {n}: {shown} is not a valid login name"),
                ));
            } else if !seen.insert(line.clone()) {
                list_problems.push(Problem::new(
                    Severity::Error,
                    at,
                    format!("line {n}: user {shown} is listed twice"),
                ));
            } else {
                names.push(String::from_utf8_lossy(&line).into_owned());
            }
        }

        // `--user NAME` must name a user of the list (else the run would quietly do nothing).
        let unknown: Vec<Problem> = self
            .only_users
            .iter()
            .filter(|u| !names.contains(u))
            .map(|u| {
                Problem::new(
                    Severity::Error,
                    Some(self.userlist.as_path()),
                    format!("--user {u:?}: no such user in the userlist"),
                )
            })
            .collect();
        if !unknown.is_empty() {
            return Err(ListErrors(unknown));
        }

        let mut folders: Vec<Vec<(Vec<u8>, PathBuf)>> = vec![Vec::new(); names.len()];
        if let Some(fl) = &self.folderlist {
            let lines = list_lines(fl).map_err(|p| ListErrors(vec![p]))?;
            let mut seen = HashSet::new();
            for (n, line) in lines {
                let at = Some(fl.as_path());
                let shown = excerpt(&line);
                let Some(slash) = line.iter().position(|&b| b == b'/') else {
                    list_problems.push(Problem::new(
                        Severity::Error,
                        at,
                        format!("line {n}: {shown} is not <user>/<path>"),
                    ));
                    continue;
                };
                let (user, path) = (&line[..slash], &line[slash + 1..]);
                let Some(ui) = names.iter().position(|u| u.as_bytes() == user) else {
                    list_problems.push(Problem::new(
                        Severity::Error,
                        at,
                        format!("line {n}: user {} is not in the userlist", excerpt(user)),
                    ));
                    continue;
                };
                if let Some(why) = bad_folder_path(path) {
                    list_problems.push(Problem::new(
                        Severity::Error,
                        at,
                        format!("line {n}: {shown}: {why}"),
                    ));
                    continue;
                }
                let path: Vec<u8> = path
                    .split(|&b| b == b'/')
                    .filter(|c| !c.is_empty() && *c != b".")
                    .collect::<Vec<_>>()
                    .join(&b'/');
                if !seen.insert(line.clone()) {
                    list_problems.push(Problem::new(
                        Severity::Error,
                        at,
                        format!("line {n}: {shown} is listed twice"),
                    ));
                    continue;
                }
                let file = Anchored::from_pattern(&self.home, &names[ui])
                    .path()
                    .join(OsStr::from_bytes(&path));
                folders[ui].push((path, file));
            }
        }
        if !list_problems.is_empty() && !self.skip_bad {
            return Err(ListErrors(list_problems));
        }
        for p in &mut list_problems {
            p.severity = Severity::Warning;
            p.message = format!("{} (skipped)", p.message);
        }

        let users = names
            .into_iter()
            .zip(folders)
            .filter(|(name, _)| self.only_users.is_empty() || self.only_users.contains(name))
            .filter(|(name, _)| self.shard.is_none_or(|s| s.contains(name)))
            .map(|(name, folders)| self.user(name, folders))
            .collect();
        Ok(Host {
            users,
            problems: list_problems,
        })
    }

    fn user(&self, name: String, listed: Vec<(Vec<u8>, PathBuf)>) -> UserSource {
        let home_at = Anchored::from_pattern(&self.home, &name);
        let inbox_at = Anchored::from_pattern(&self.inbox, &name);
        let (home, inbox) = (home_at.path(), inbox_at.path());
        let passwd = sys::user_by_name(&name);
        let mut problems = Vec::new();
        if passwd.is_none() {
            problems.push(Problem::new(
                Severity::Note,
                None,
                format!("{name} is not in the passwd database: its tree belongs to the owner of its inbox (or --owner)"),
            ));
        }
        let home_dir = match home_at.open_dir() {
            Ok(d) => Some(d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                problems.push(Problem::new(
                    Severity::Warning,
                    Some(&home),
                    format!("the home cannot be opened: {e}"),
                ));
                None
            }
        };
        let folders = match (&self.folderlist, &home_dir) {
            (Some(_), _) => listed,
            (None, Some(dir)) => discover(dir, &inbox, &mut problems),
            (None, None) => Vec::new(),
        };
        let mailboxlist = home_dir
            .as_ref()
            .and_then(|d| read_mailboxlist(d, &mut problems));
        let has_mbox = home_dir
            .as_ref()
            .and_then(|d| d.stat_at("mbox").ok().flatten())
            .is_some_and(|st| st.kind == Kind::File);
        if has_mbox && !folders.iter().any(|(n, _)| n == b"mbox") {
            problems.push(Problem::new(
                Severity::Note,
                Some(&home.join("mbox")),
                "UW-IMAP moves new mail into ~/mbox when it exists; it is not in the folder list",
            ));
        }
        UserSource {
            name,
            home,
            inbox,
            home_at,
            inbox_at,
            passwd,
            folders,
            mailboxlist,
            problems,
        }
    }
}

/// `~/.mailboxlist`, read through the safe open: a regular file (not a link, a FIFO or a
/// device) of at most [`MAILBOXLIST_LIMIT`] bytes. A refused one is reported and left out
/// (every migrated folder is then subscribed), its content never shown.
fn read_mailboxlist(home: &Dir, problems: &mut Vec<Problem>) -> Option<Vec<Vec<u8>>> {
    match home.read_small(MAILBOXLIST, MAILBOXLIST_LIMIT) {
        Ok(d) => Some(
            d.split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
                .filter(|l| !l.is_empty())
                .collect(),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            problems.push(Problem::new(
                Severity::Warning,
                Some(&home.path().join(MAILBOXLIST)),
                format!("{e}; every migrated folder is subscribed instead"),
            ));
            None
        }
    }
}

/// Finds the mail folders (mbox, mbx, MMDF) under a home (dotfiles and other files are skipped),
/// walking from the home's descriptor without following symlinks.
fn discover(home: &Dir, inbox: &Path, problems: &mut Vec<Problem>) -> Vec<(Vec<u8>, PathBuf)> {
    const MAX_DEPTH: usize = 16;
    let mut found = Vec::new();
    // Directories to look at, by their path under the home: each is opened again from the
    // home's descriptor, so that only one descriptor per level is open.
    let mut stack = vec![(Vec::<u8>::new(), 0usize)];
    while let Some((rel, depth)) = stack.pop() {
        let shown = home.path().join(OsStr::from_bytes(&rel));
        let listed = home
            .open_dir(OsStr::from_bytes(&rel))
            .and_then(|d| Ok((d.list()?, d)));
        let (mut entries, dir) = match listed {
            Ok(x) => x,
            Err(e) => {
                problems.push(Problem::new(
                    Severity::Warning,
                    Some(&shown),
                    format!("cannot list: {e}"),
                ));
                continue;
            }
        };
        entries.sort();
        for (name, kind) in entries.into_iter().rev() {
            let name_b = name.as_bytes();
            if name_b.starts_with(b".") {
                continue;
            }
            let path = shown.join(&name);
            let child_rel = if rel.is_empty() {
                name_b.to_vec()
            } else {
                [rel.as_slice(), b"/", name_b].concat()
            };
            let kind = match kind {
                Some(k) => k,
                None => match dir.stat_at(&name) {
                    Ok(Some(st)) => st.kind,
                    _ => continue,
                },
            };
            match kind {
                Kind::Symlink => problems.push(Problem::new(
                    Severity::Note,
                    Some(&path),
                    "symbolic link: not followed",
                )),
                Kind::Dir if depth < MAX_DEPTH => stack.push((child_rel, depth + 1)),
                Kind::File if path != inbox => match looks_like(&dir, &name) {
                    Sniffed::Mbox => found.push((child_rel, path)),
                    Sniffed::OtherMailbox(why) => {
                        problems.push(Problem::new(Severity::Error, Some(&path), why))
                    }
                    Sniffed::NotMail => {}
                },
                _ => {}
            }
        }
    }
    found.sort();
    found
}

/// UW-IMAP's mailbox formats that are directories: mix (and MH, which UW also served).
pub fn uw_directory_store(dir: &Dir) -> Option<String> {
    let has = |name: &str| dir.stat_at(name).ok().flatten().is_some();
    if has(".mixmeta") {
        Some(
            "UW-IMAP mix mailbox (a directory with .mixmeta): convert it with UW's mailutil first"
                .into(),
        )
    } else if has(".mh_sequences") {
        Some("MH mailbox (a directory with .mh_sequences): not an mbox".into())
    } else {
        None
    }
}

enum Sniffed {
    /// A folder mboxfs reads: mbox, mbx or MMDF.
    Mbox,
    OtherMailbox(String),
    NotMail,
}

fn looks_like(dir: &Dir, name: &OsStr) -> Sniffed {
    use std::io::Read;
    let mut head = [0u8; 4096];
    let n = match dir.open_file(name, true) {
        Ok(mut f) => f.read(&mut head).unwrap_or(0),
        Err(_) => return Sniffed::NotMail,
    };
    let head = &head[..n];
    if n == 0 {
        return Sniffed::NotMail;
    }
    match mbox::sniff(head) {
        Err(why) => return Sniffed::OtherMailbox(why),
        Ok(mbox::Store::Mbx | mbox::Store::Mmdf) => return Sniffed::Mbox,
        Ok(mbox::Store::Mbox) => {}
    }
    let start = head
        .iter()
        .position(|b| !matches!(b, b'\n' | b'\r' | b' ' | b'\t'))
        .unwrap_or(head.len());
    let line = head[start..].split(|&b| b == b'\n').next().unwrap_or(b"");
    if crate::fromline::parse(line).is_some() {
        Sniffed::Mbox
    } else {
        Sniffed::NotMail
    }
}

/// Why an open failed, in words: the refusal's reason, or "cannot open" and the system's.
pub fn open_error(e: &std::io::Error) -> String {
    if e.raw_os_error().is_some() {
        format!("cannot open: {e}")
    } else {
        e.to_string()
    }
}

/// Opens a source for reading through the safe walk (no symbolic link followed below the
/// admin's directory), and checks the opened file: a regular file, owned by `owner` when that
/// is given, and with a single link when its owner is not checked (a hard link could be
/// another user's mail). `Ok(None)`: it does not exist.
pub fn open_source(
    at: &Anchored,
    owner: Option<u32>,
) -> Result<Option<(File, std::fs::Metadata)>, String> {
    let file = match at.open_file(true) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(&e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot examine: {e}"))?;
    match owner {
        Some(uid) if meta.uid() != uid => Err(format!(
            "owned by uid {}, not by its user (uid {uid}): refused (--trust-owners accepts it)",
            meta.uid()
        )),
        None if meta.nlink() > 1 => Err(format!(
            "has {} hard links and its owner is not checked: refused (a link could be another user's mail)",
            meta.nlink()
        )),
        _ => Ok(Some((file, meta))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path, folderlist: bool) -> Layout {
        Layout {
            inbox: dir.join("spool/%u").to_string_lossy().into(),
            home: dir.join("home/%u").to_string_lossy().into(),
            userlist: dir.join("userlist"),
            folderlist: folderlist.then(|| dir.join("folderlist")),
            strip_prefixes: vec![],
            trust_owners: true,
            skip_bad: false,
            only_users: vec![],
            shard: None,
        }
    }

    #[test]
    fn bad_lines_are_reported_with_line_numbers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("userlist"),
            "# users\nalice\n\nbo b\nalice\n-x\n",
        )
        .unwrap();
        std::fs::write(d.path().join("folderlist"), "alice/Sent\nalice/../bob/x\nalice//etc/passwd\ncarol/x\nalice/Sent\nalice/a\x01b\nnoslash\n").unwrap();
        let err = layout(d.path(), true).load().unwrap_err();
        let text = err.to_string();
        for want in [
            "userlist: line 4: \"bo b\" is not a valid login name",
            "userlist: line 5: user \"alice\" is listed twice",
            "line 6: \"-x\" is not a valid login name",
            "folderlist: line 2: \"alice/../bob/x\": '..' in the path",
            "folderlist: line 3: \"alice//etc/passwd\": absolute path",
            "folderlist: line 4: user \"carol\" is not in the userlist",
            "folderlist: line 5: \"alice/Sent\" is listed twice",
            "folderlist: line 6: \"alice/a\\u{1}b\": NUL or control character",
            "folderlist: line 7: \"noslash\" is not <user>/<path>",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        let mut l = layout(d.path(), true);
        l.skip_bad = true;
        let host = l.load().unwrap();
        assert_eq!(host.users.len(), 1);
        assert_eq!(host.users[0].folders.len(), 1);
        assert_eq!(host.problems.len(), 9);
    }

    #[test]
    fn discovery_finds_mbox_files_only() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("userlist"), "alice\n").unwrap();
        let home = d.path().join("home/alice");
        std::fs::create_dir_all(home.join("mail/Work")).unwrap();
        std::fs::create_dir_all(home.join(".hidden")).unwrap();
        let mbox = "From a Wed Dec  2 05:53:22 1992\nS: x\n\nb\n";
        std::fs::write(home.join("mail/Sent"), mbox).unwrap();
        std::fs::write(home.join("mail/Work/2004"), mbox).unwrap();
        std::fs::write(home.join(".hidden/box"), mbox).unwrap();
        std::fs::write(home.join(".mailboxlist"), "mail/Sent\n").unwrap();
        std::fs::write(home.join("notes.txt"), "hello\n").unwrap();
        std::fs::write(home.join("Trash"), "*mbx*\r\n").unwrap();
        std::fs::write(
            home.join("mail/Saved"),
            crate::mbx::build::header(5, 0, &[]),
        )
        .unwrap();
        std::fs::write(home.join("mail/Old"), "\x01\x01\x01\x01\nSubject: x\n\nb\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", home.join("link")).unwrap();
        let host = layout(d.path(), false).load().unwrap();
        let u = &host.users[0];
        let names: Vec<&[u8]> = u.folders.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(
            names,
            [
                b"mail/Old".as_slice(),
                b"mail/Saved",
                b"mail/Sent",
                b"mail/Work/2004"
            ]
        );
        assert!(
            u.problems
                .iter()
                .any(|p| p.message.contains("mbx") && p.severity == Severity::Error)
        );
        assert!(
            u.problems
                .iter()
                .any(|p| p.message.contains("symbolic link"))
        );
        assert_eq!(
            u.mailboxlist.as_deref(),
            Some([b"mail/Sent".to_vec()].as_slice())
        );
    }

    #[test]
    fn sources_are_opened_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home/alice");
        let other = d.path().join("other");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("box"), "x").unwrap();
        std::os::unix::fs::symlink(other.join("box"), home.join("link")).unwrap();
        std::os::unix::fs::symlink(&other, home.join("dirlink")).unwrap();
        std::fs::write(home.join("mine"), "x").unwrap();
        let at = Anchored::from_pattern(&format!("{}/home/%u", d.path().display()), "alice");
        let me = sys::euid();
        let err = |rel: &str, owner| open_source(&at.join(rel), owner).unwrap_err();
        assert!(err("link", Some(me)).contains("symbolic link"));
        assert!(err("dirlink/box", Some(me)).contains("dirlink is a symbolic link"));
        assert!(err("mine", Some(me + 1)).contains("owned by"));
        assert!(open_source(&at.join("mine"), None).unwrap().is_some());
        std::fs::hard_link(home.join("mine"), home.join("twice")).unwrap();
        assert!(err("twice", None).contains("hard links"));
        assert!(open_source(&at.join("twice"), Some(me)).unwrap().is_some());
        assert!(err(".", Some(me)).contains("directory"));
        assert!(open_source(&at.join("absent"), Some(me)).unwrap().is_none());
        assert!(
            open_source(&at.join("absent/deeper"), Some(me))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_mailboxlist_is_read_safely() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("userlist"), "alice\nbob\ncarol\n").unwrap();
        std::fs::write(d.path().join("secret"), "root:SECRET\n").unwrap();
        for u in ["alice", "bob", "carol"] {
            std::fs::create_dir_all(d.path().join("home").join(u)).unwrap();
        }
        let home = |u: &str| d.path().join("home").join(u).join(MAILBOXLIST);
        std::os::unix::fs::symlink(d.path().join("secret"), home("alice")).unwrap();
        nix::unistd::mkfifo(
            &home("bob"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::fs::File::create(home("carol"))
            .unwrap()
            .set_len(MAILBOXLIST_LIMIT + 1)
            .unwrap();
        let t = std::time::Instant::now();
        let host = layout(d.path(), false).load().unwrap();
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        for (u, why) in host
            .users
            .iter()
            .zip(["symbolic link", "FIFO", "more than"])
        {
            assert_eq!(u.mailboxlist, None);
            let p = u
                .problems
                .iter()
                .find(|p| p.path.as_deref() == Some(home(&u.name).as_path()))
                .unwrap();
            assert!(p.message.contains(why), "{p}");
            assert!(!p.to_string().contains("SECRET"));
        }
    }

    #[test]
    fn the_home_itself_is_not_a_folder() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("userlist"), "alice\n").unwrap();
        std::fs::write(
            d.path().join("folderlist"),
            "alice/.\nalice/./\nalice/mail/.\n",
        )
        .unwrap();
        let text = layout(d.path(), true).load().unwrap_err().to_string();
        assert!(
            text.contains("line 1: \"alice/.\": names the home itself"),
            "{text}"
        );
        assert!(
            text.contains("line 2: \"alice/./\": names the home itself"),
            "{text}"
        );
        assert!(
            text.contains("1 bad line(s)") || text.contains("2 bad line(s)"),
            "{text}"
        );
    }
}
