//! The legacy host: which users and which mbox files are migrated, checked before anything is
//! read.
//!
//! - `userlist`: one login name a line; `folderlist`: `<user>/<path under the home>` a line.
//!   Blank lines and `#` comments are allowed. Bad lines (invalid names, `..`, absolute paths,
//!   control characters, duplicates) are errors naming the file and line; nothing is mounted or
//!   written until the lists are clean, unless `--skip-bad` says to go on without those lines.
//! - Without a folderlist, each home is searched for mbox files (dotfiles and files that are not
//!   mbox are skipped; UW's other formats are reported).
//! - Each source is checked before it is read: a symlink, a file that resolves outside the user's
//!   home (or the inbox directory), a file not owned by the user (unless `--trust-owners`), and
//!   anything but a regular file are refused, each with a line in the plan and the log.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::mbox;
use crate::sys;

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
    /// From the passwd database.
    pub passwd: Option<sys::Passwd>,
    /// Filed folders: (UW name relative to the home, file).
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

fn expand(pattern: &str, user: &str) -> PathBuf {
    PathBuf::from(pattern.replace("%u", user))
}

/// Lines of a list file with their numbers, without blanks and comments.
fn list_lines(path: &Path) -> Result<Vec<(usize, Vec<u8>)>, Problem> {
    let data = std::fs::read(path)
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
            let shown = String::from_utf8_lossy(&line).into_owned();
            if !valid_user_name(&line) {
                list_problems.push(Problem::new(
                    Severity::Error,
                    at,
                    format!("line {n}: {shown:?} is not a valid login name"),
                ));
            } else if !seen.insert(line.clone()) {
                list_problems.push(Problem::new(
                    Severity::Error,
                    at,
                    format!("line {n}: user {shown:?} is listed twice"),
                ));
            } else {
                names.push(shown);
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
                let shown = String::from_utf8_lossy(&line).into_owned();
                let Some(slash) = line.iter().position(|&b| b == b'/') else {
                    list_problems.push(Problem::new(
                        Severity::Error,
                        at,
                        format!("line {n}: {shown:?} is not <user>/<path>"),
                    ));
                    continue;
                };
                let (user, path) = (&line[..slash], &line[slash + 1..]);
                let Some(ui) = names.iter().position(|u| u.as_bytes() == user) else {
                    list_problems.push(Problem::new(
                        Severity::Error,
                        at,
                        format!(
                            "line {n}: user {:?} is not in the userlist",
                            String::from_utf8_lossy(user)
                        ),
                    ));
                    continue;
                };
                if let Some(why) = bad_folder_path(path) {
                    list_problems.push(Problem::new(
                        Severity::Error,
                        at,
                        format!("line {n}: {shown:?}: {why}"),
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
                        format!("line {n}: {shown:?} is listed twice"),
                    ));
                    continue;
                }
                let file = expand(&self.home, &names[ui]).join(OsStr::from_bytes(&path));
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
            .map(|(name, folders)| self.user(name, folders))
            .collect();
        Ok(Host {
            users,
            problems: list_problems,
        })
    }

    fn user(&self, name: String, listed: Vec<(Vec<u8>, PathBuf)>) -> UserSource {
        let home = expand(&self.home, &name);
        let inbox = expand(&self.inbox, &name);
        let passwd = sys::user_by_name(&name);
        let mut problems = Vec::new();
        if passwd.is_none() {
            problems.push(Problem::new(
                Severity::Note,
                None,
                format!("{name} is not in the passwd database: its tree belongs to the owner of its inbox (or --owner)"),
            ));
        }
        let folders = if self.folderlist.is_some() {
            listed
        } else {
            discover(&home, &inbox, &mut problems)
        };
        let mailboxlist = std::fs::read(home.join(".mailboxlist")).ok().map(|d| {
            d.split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
                .filter(|l| !l.is_empty())
                .collect()
        });
        if home.join("mbox").is_file() && !folders.iter().any(|(n, _)| n == b"mbox") {
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
            passwd,
            folders,
            mailboxlist,
            problems,
        }
    }
}

/// Finds the mbox files under a home (dotfiles and non-mbox files are skipped).
fn discover(home: &Path, inbox: &Path, problems: &mut Vec<Problem>) -> Vec<(Vec<u8>, PathBuf)> {
    const MAX_DEPTH: usize = 16;
    let mut found = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut stack = vec![(home.to_path_buf(), Vec::<u8>::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                if dir != home || home.exists() {
                    problems.push(Problem::new(
                        Severity::Warning,
                        Some(&dir),
                        format!("cannot list: {e}"),
                    ));
                }
                continue;
            }
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries.into_iter().rev() {
            let name = e.file_name();
            let name = name.as_bytes();
            if name.starts_with(b".") {
                continue;
            }
            let path = e.path();
            let child_rel = if rel.is_empty() {
                name.to_vec()
            } else {
                [rel.as_slice(), b"/", name].concat()
            };
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                problems.push(Problem::new(
                    Severity::Note,
                    Some(&path),
                    "symbolic link: not followed",
                ));
            } else if meta.is_dir() {
                if depth < MAX_DEPTH {
                    stack.push((path, child_rel, depth + 1));
                }
            } else if meta.is_file() && path != inbox {
                match looks_like(&path) {
                    Kind::Mbox => found.push((child_rel, path)),
                    Kind::OtherMailbox(why) => {
                        problems.push(Problem::new(Severity::Error, Some(&path), why))
                    }
                    Kind::NotMail => {}
                }
            }
        }
    }
    if !skipped.is_empty() {
        skipped.sort();
        let shown: Vec<&str> = skipped.iter().take(5).map(String::as_str).collect();
        let more = if skipped.len() > 5 {
            format!(" and {} more", skipped.len() - 5)
        } else {
            String::new()
        };
        problems.push(Problem::new(
            Severity::Note,
            Some(home),
            format!(
                "skipped {} files that are not mbox ({}{more})",
                skipped.len(),
                shown.join(", ")
            ),
        ));
    }
    found.sort();
    found
}

/// UW-IMAP's mailbox formats that are directories: mix (and MH, which UW also served).
pub fn uw_directory_store(dir: &Path) -> Option<String> {
    if dir.join(".mixmeta").exists() {
        Some(
            "UW-IMAP mix mailbox (a directory with .mixmeta): convert it with UW's mailutil first"
                .into(),
        )
    } else if dir.join(".mh_sequences").exists() {
        Some("MH mailbox (a directory with .mh_sequences): not an mbox".into())
    } else {
        None
    }
}

enum Kind {
    Mbox,
    OtherMailbox(String),
    NotMail,
}

fn looks_like(path: &Path) -> Kind {
    use std::io::Read;
    let mut head = [0u8; 4096];
    let n = match mbox::open(path) {
        Ok((mut f, _)) => f.read(&mut head).unwrap_or(0),
        Err(_) => return Kind::NotMail,
    };
    let head = &head[..n];
    if n == 0 {
        return Kind::NotMail;
    }
    if let Some(why) = mbox::sniff(head) {
        return Kind::OtherMailbox(why);
    }
    let start = head
        .iter()
        .position(|b| !matches!(b, b'\n' | b'\r' | b' ' | b'\t'))
        .unwrap_or(head.len());
    let line = head[start..].split(|&b| b == b'\n').next().unwrap_or(b"");
    if crate::fromline::parse(line).is_some() {
        Kind::Mbox
    } else {
        Kind::NotMail
    }
}

/// Why a source must not be read, checked before opening it: a symlink, a file outside `root`
/// (the home, or the inbox's directory), a file not owned by `uid`, or not a regular file.
/// `Ok(None)`: the file does not exist.
pub fn check_source(
    path: &Path,
    root: &Path,
    uid: Option<u32>,
    trust_owners: bool,
) -> Result<Option<std::fs::Metadata>, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot examine: {e}")),
    };
    if meta.file_type().is_symlink() {
        return Err("is a symbolic link: refused, not followed".into());
    }
    if !meta.is_file() {
        return Err(format!("{}: refused", mbox::describe_file_type(&meta)));
    }
    // The file itself is not a link; its directories may be.
    let parent = path.parent().unwrap_or(Path::new("/"));
    match (parent.canonicalize(), root.canonicalize()) {
        (Ok(real), Ok(root_real)) if real.starts_with(&root_real) => {}
        (Ok(real), Ok(root_real)) => {
            return Err(format!(
                "resolves to {}, outside {}: refused",
                real.join(path.file_name().unwrap_or_default()).display(),
                root_real.display()
            ));
        }
        (Err(e), _) | (_, Err(e)) => return Err(format!("cannot resolve its directory: {e}")),
    }
    if let Some(uid) = uid {
        if meta.uid() != uid && !trust_owners {
            return Err(format!(
                "owned by uid {}, not by its user (uid {uid}): refused (--trust-owners accepts it)",
                meta.uid()
            ));
        }
    }
    Ok(Some(meta))
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
        std::os::unix::fs::symlink("/etc/passwd", home.join("link")).unwrap();
        let host = layout(d.path(), false).load().unwrap();
        let u = &host.users[0];
        let names: Vec<&[u8]> = u.folders.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [b"mail/Sent".as_slice(), b"mail/Work/2004"]);
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
    fn sources_are_checked_before_reading() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let other = d.path().join("other");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("box"), "x").unwrap();
        std::os::unix::fs::symlink(other.join("box"), home.join("link")).unwrap();
        std::os::unix::fs::symlink(&other, home.join("dirlink")).unwrap();
        std::fs::write(home.join("mine"), "x").unwrap();
        let me = sys::euid();
        assert!(
            check_source(&home.join("link"), &home, Some(me), false)
                .unwrap_err()
                .contains("symbolic link")
        );
        assert!(
            check_source(&home.join("dirlink/box"), &home, Some(me), false)
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            check_source(&home.join("mine"), &home, Some(me + 1), false)
                .unwrap_err()
                .contains("owned by")
        );
        assert!(check_source(&home.join("mine"), &home, Some(me + 1), true).is_ok());
        assert!(
            check_source(&home, d.path(), Some(me), false)
                .unwrap_err()
                .contains("directory")
        );
        assert!(
            check_source(&home.join("absent"), &home, Some(me), false)
                .unwrap()
                .is_none()
        );
    }
}
