//! `plan --dest DIR`: the migration paper's checks before anything is copied.
//!
//! - **destination**: DEST is empty (or does not exist yet), or was made by an earlier
//!   `materialize` (the paper's step 6: "ensure that the new mail base directory is clear"); and
//!   Dovecot has not used it since (the [`guard`](crate::guard) would refuse it).
//! - **inodes** and **space**: what the copy needs (one file per message, four directories and a
//!   few control files per folder, each file taking whole blocks) against what the file system
//!   has free, less what an earlier pass already wrote ("df -i", in the paper's words).
//! - **subdirectories**: ext2 and ext3 allow 31,998 subdirectories in one directory (32,000
//!   links), which DEST's one directory per user, and each user's folders, must stay under.
//! - **dovecot**: installed, and which version (`dovecot-config` writes 2.3 settings).
//!
//! Nothing is written, and DEST is read without following symbolic links.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::plan::{Plan, human_bytes};

/// Subdirectories one ext2/ext3 directory can hold (EXT2_LINK_MAX 32000, less `.` and the
/// parent's link).
pub const EXT3_MAX_SUBDIRS: u64 = 31_998;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Failed,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<u64>,
}

/// The file system DEST is (or will be) on.
#[derive(Debug, Serialize)]
pub struct FsInfo {
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
}

#[derive(Debug, Serialize)]
pub struct DestReport {
    pub dest: PathBuf,
    pub filesystem: Option<FsInfo>,
    pub checks: Vec<Check>,
}

impl DestReport {
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Failed)
    }

    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        match &self.filesystem {
            Some(fs) => writeln!(
                out,
                "checks of DEST {} ({} on {}, mounted at {}):",
                self.dest.display(),
                fs.fstype,
                fs.source,
                fs.mountpoint.display()
            )?,
            None => writeln!(out, "checks of DEST {}:", self.dest.display())?,
        }
        for c in &self.checks {
            let label = match c.status {
                Status::Ok => "ok",
                Status::Warning => "WARNING",
                Status::Failed => "FAILED",
            };
            writeln!(out, "  {label:<8} {}: {}", c.name, c.detail)?;
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        writeln!(
            out,
            "DEST checks: {} failed, {} warnings",
            count(Status::Failed),
            count(Status::Warning)
        )
    }
}

/// `12,345`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Free and total inodes and bytes of the file system holding `path`.
#[derive(Clone, Copy, Debug)]
struct Space {
    inodes_free: u64,
    inodes_total: u64,
    bytes_free: u64,
    block: u64,
}

#[allow(unsafe_code)]
fn statvfs(path: &Path) -> std::io::Result<Space> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: statvfs is plain data that the call fills in; zeroed is a valid start value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a live local for the call's duration.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    Ok(Space {
        inodes_free: st.f_favail,
        inodes_total: st.f_files,
        bytes_free: st.f_bavail.saturating_mul(frsize),
        block: st.f_bsize.max(512),
    })
}

/// The closest existing ancestor of `p` (itself if it exists), not following a final symlink.
fn existing(p: &Path) -> PathBuf {
    let mut cur = p.to_path_buf();
    loop {
        if std::fs::symlink_metadata(&cur).is_ok() {
            return cur;
        }
        if !cur.pop() {
            return PathBuf::from("/");
        }
    }
}

/// `\040` and friends in /proc/self/mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `path` (which must exist): the longest mount point that is its prefix.
fn filesystem_of(path: &Path) -> Option<FsInfo> {
    let canon = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<FsInfo> = None;
    for line in info.lines() {
        let (left, right) = line.split_once(" - ")?;
        let mp = PathBuf::from(unescape(left.split(' ').nth(4)?));
        let mut r = right.split(' ');
        let (fstype, source) = (r.next()?.to_string(), unescape(r.next().unwrap_or("")));
        if canon.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|b| mp.as_os_str().len() >= b.mountpoint.as_os_str().len())
        {
            best = Some(FsInfo {
                mountpoint: mp,
                fstype,
                source,
            });
        }
    }
    best
}

/// What the copy needs, from the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub messages: u64,
    pub dirs: u64,
    pub other_files: u64,
    pub message_bytes: u64,
    /// Index files Dovecot adds later (about three a folder and four a user).
    pub dovecot_files: u64,
    /// The most subdirectories one user's root gets (its folders and cur/new/tmp).
    pub largest_tree: u64,
    pub largest_tree_user: Option<usize>,
}

impl Needs {
    pub fn of(plan: &Plan) -> Needs {
        let mut n = Needs::default();
        for (ui, u) in plan.users.iter().enumerate() {
            n.dirs += 1; // the root (INBOX's folder directory)
            n.other_files += 2; // subscriptions, the guard's stamp
            n.dovecot_files += 4;
            let mut subdirs = 0;
            for f in &u.folders {
                let inbox = f.maildir.is_empty();
                n.dirs += if inbox { 3 } else { 4 };
                subdirs += if inbox { 3 } else { 1 };
                // dovecot-uidlist, maildirfolder (not in INBOX), dovecot-keywords
                n.other_files += 1 + u64::from(!inbox) + u64::from(!f.keywords.is_empty());
                n.messages += f.messages as u64;
                n.message_bytes += f.bytes;
                n.dovecot_files += 3;
            }
            if subdirs > n.largest_tree {
                n.largest_tree = subdirs;
                n.largest_tree_user = Some(ui);
            }
        }
        n.other_files += 1; // the marker
        n.dirs += 1; // the guard's stamps
        n
    }

    pub fn inodes(&self) -> u64 {
        self.messages + self.dirs + self.other_files
    }

    /// Bytes on a file system with `block`-byte blocks: a message takes its size plus half a
    /// block on average; a directory or a small control file takes one block.
    pub fn bytes(&self, block: u64) -> u64 {
        self.message_bytes + self.messages * block / 2 + (self.dirs + self.other_files) * block
    }
}

/// What an earlier pass already wrote under `dest`: (inodes, bytes), walked from directory
/// descriptors without following a symbolic link (depth first: a few descriptors open at once).
fn already_there(dest: &Path) -> (u64, u64) {
    fn walk(d: &crate::safe::Dir, depth: usize, total: &mut (u64, u64)) {
        for (name, _) in d.list().unwrap_or_default() {
            let Ok(st) = nix::sys::stat::fstatat(
                d,
                name.as_os_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) else {
                continue;
            };
            total.0 += 1;
            total.1 += st.st_blocks as u64 * 512;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR
                && depth < 8
                && let Ok(sub) = d.open_dir(&name)
            {
                walk(&sub, depth + 1, total);
            }
        }
    }
    let mut total = (0, 0);
    if let Ok(root) = crate::safe::Dir::open_trusted(dest) {
        walk(&root, 0, &mut total);
    }
    total
}

/// Dovecot's version and where it is, if it is installed.
pub fn dovecot_version() -> Option<(String, PathBuf)> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")]);
    for dir in candidates {
        let bin = dir.join("dovecot");
        if !bin.is_file() {
            continue;
        }
        let out = std::process::Command::new(&bin)
            .arg("--version")
            .output()
            .ok()?;
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !v.is_empty() {
            return Some((v, bin));
        }
    }
    None
}

/// (major, minor) of a `dovecot --version` answer.
fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Runs every check.
pub fn check(plan: &Plan, tree: &crate::model::Tree, dest: &Path) -> DestReport {
    let mut checks = Vec::new();
    let needs = Needs::of(plan);
    let md = std::fs::symlink_metadata(dest);
    let mut made_by_mboxfs = false;
    // destination
    let dest_check = match &md {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            Status::Ok,
            "does not exist yet; materialize will create it".to_string(),
        ),
        Err(e) => (Status::Failed, format!("cannot be read: {e}")),
        Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(dest) {
            Ok(t) if t.is_dir() => (
                Status::Warning,
                "is a symbolic link to a directory: checked where it points; give the real path \
                 to be sure what is written"
                    .to_string(),
            ),
            _ => (
                Status::Failed,
                "is a symbolic link that does not lead to a directory".to_string(),
            ),
        },
        Ok(m) if !m.is_dir() => (Status::Failed, "is not a directory".to_string()),
        Ok(_) => {
            let names: Vec<String> = std::fs::read_dir(dest)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            if names.is_empty() {
                (Status::Ok, "empty".to_string())
            } else if names.iter().any(|n| n == crate::materialize::MARKER) {
                made_by_mboxfs = true;
                (
                    Status::Ok,
                    "made by an earlier materialize: the next one writes only what changed"
                        .to_string(),
                )
            } else if names.iter().all(|n| n == "lost+found") {
                (
                    Status::Warning,
                    "holds only lost+found (the root of a file system): materialize asks for \
                     --force here; or give a subdirectory, e.g. DEST/mail"
                        .to_string(),
                )
            } else {
                (
                    Status::Failed,
                    format!(
                        "not empty ({} entries) and not made by mboxfs: the paper's step 6 wants \
                         it clear, and materialize refuses it without --force",
                        names.len()
                    ),
                )
            }
        }
    };
    checks.push(Check {
        name: "destination",
        status: dest_check.0,
        detail: dest_check.1,
        needed: None,
        available: None,
    });
    if made_by_mboxfs {
        let found = crate::guard::check(tree, dest);
        checks.push(if found.is_empty() {
            Check {
                name: "dovecot changes",
                status: Status::Ok,
                detail: "none since mboxfs last wrote DEST".into(),
                needed: None,
                available: None,
            }
        } else {
            let users = crate::guard::users_with_findings(&found);
            Check {
                name: "dovecot changes",
                status: Status::Failed,
                detail: format!(
                    "Dovecot has used DEST since mboxfs wrote it ({} user{}, e.g. {}): materialize \
                     will refuse it unless told --revert-user-changes",
                    users.len(),
                    if users.len() == 1 { "" } else { "s" },
                    found[0]
                ),
                needed: None,
                available: None,
            }
        });
    }

    let at = existing(dest);
    let filesystem = filesystem_of(&at);
    let (have_inodes, have_bytes) = if made_by_mboxfs {
        already_there(dest)
    } else {
        (0, 0)
    };
    match statvfs(&at) {
        Err(e) => checks.push(Check {
            name: "space",
            status: Status::Failed,
            detail: format!("cannot ask the file system of {}: {e}", at.display()),
            needed: None,
            available: None,
        }),
        Ok(sp) => {
            let earlier = if made_by_mboxfs {
                format!(
                    " (less the {} already there)",
                    thousands(have_inodes.min(needs.inodes()))
                )
            } else {
                String::new()
            };
            let need = needs.inodes().saturating_sub(have_inodes);
            let detail = format!(
                "{} needed for the copy ({} messages, {} directories, {} other files){earlier}, {} \
                 free; Dovecot's index files will take about {} more",
                thousands(need),
                thousands(needs.messages),
                thousands(needs.dirs),
                thousands(needs.other_files),
                thousands(sp.inodes_free),
                thousands(needs.dovecot_files)
            );
            checks.push(if sp.inodes_total == 0 {
                Check {
                    name: "inodes",
                    status: Status::Ok,
                    detail: format!(
                        "{} needed; the file system has no fixed number of inodes",
                        thousands(need)
                    ),
                    needed: Some(need),
                    available: None,
                }
            } else {
                let status = if need > sp.inodes_free {
                    Status::Failed
                } else if need + needs.dovecot_files > sp.inodes_free {
                    Status::Warning
                } else {
                    Status::Ok
                };
                let fix = if status == Status::Ok {
                    String::new()
                } else {
                    ". Free inodes (df -i), or make the file system with more (mkfs.ext4 -N, or \
                     -i with fewer bytes per inode; mail is many small files)"
                        .to_string()
                };
                Check {
                    name: "inodes",
                    status,
                    detail: format!("{detail}{fix}"),
                    needed: Some(need),
                    available: Some(sp.inodes_free),
                }
            });
            let need = needs.bytes(sp.block).saturating_sub(have_bytes);
            let status = if need > sp.bytes_free {
                Status::Failed
            } else if need + need / 10 > sp.bytes_free {
                Status::Warning
            } else {
                Status::Ok
            };
            let mut detail = format!(
                "about {} needed for the copy ({} of messages in {}-byte blocks){}, {} free",
                human_bytes(need),
                human_bytes(needs.message_bytes),
                sp.block,
                if made_by_mboxfs {
                    " less what is already there"
                } else {
                    ""
                },
                human_bytes(sp.bytes_free)
            );
            if status == Status::Warning {
                detail.push_str("; little room would be left for Dovecot's indexes and new mail");
            }
            checks.push(Check {
                name: "space",
                status,
                detail,
                needed: Some(need),
                available: Some(sp.bytes_free),
            });
        }
    }

    // subdirectories
    let users = plan.users.len() as u64;
    let existing_subdirs = if made_by_mboxfs {
        0 // the users' directories are among the users
    } else {
        std::fs::read_dir(dest)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .count() as u64
            })
            .unwrap_or(0)
    };
    let largest = needs.largest_tree;
    let who = needs
        .largest_tree_user
        .map(|i| format!(" ({})", plan.users[i].user))
        .unwrap_or_default();
    let fstype = filesystem.as_ref().map_or("", |f| f.fstype.as_str());
    let (status, detail) = match fstype {
        "ext2" | "ext3" => {
            let worst = (users + existing_subdirs).max(largest);
            let status = if worst > EXT3_MAX_SUBDIRS {
                Status::Failed
            } else {
                Status::Ok
            };
            let mut d = format!(
                "{fstype} holds at most {} subdirectories in a directory; DEST gets {} (one per \
                 user), the largest user tree {}{who}",
                thousands(EXT3_MAX_SUBDIRS),
                thousands(users + existing_subdirs),
                thousands(largest)
            );
            if status == Status::Failed {
                d.push_str(
                    ". Use ext4 (dir_nlink) or XFS for DEST, or split the users with --shard \
                     over several DESTs",
                );
            }
            (status, d)
        }
        "" => (
            Status::Warning,
            "the file system could not be determined".to_string(),
        ),
        t => (
            Status::Ok,
            format!(
                "{}; DEST gets {} user directories, the largest user tree {}{who}",
                if t == "ext4" {
                    "ext4 has no per-directory limit (dir_nlink, on by default)".to_string()
                } else {
                    format!("{t} has no per-directory limit like ext3's 31,998")
                },
                thousands(users + existing_subdirs),
                thousands(largest)
            ),
        ),
    };
    checks.push(Check {
        name: "subdirectories",
        status,
        detail,
        needed: Some((users + existing_subdirs).max(largest)),
        available: matches!(fstype, "ext2" | "ext3").then_some(EXT3_MAX_SUBDIRS),
    });

    // dovecot
    checks.push(match dovecot_version() {
        None => Check {
            name: "dovecot",
            status: Status::Failed,
            detail: "not installed: apt-get install dovecot-imapd (mask dovecot.service first, \
                     so that it does not start on port 143 beside UW-IMAP: see the README)"
                .into(),
            needed: None,
            available: None,
        },
        Some((v, bin)) => {
            let (status, note) = match major_minor(&v) {
                Some((2, m)) if m >= 4 => (
                    Status::Warning,
                    "; mboxfs dovecot-config writes Dovecot 2.3 settings (2.4 renamed \
                     mail_location and others): translate them",
                ),
                Some((2, m)) if m >= 2 => (Status::Ok, ""),
                Some((major, _)) if major > 2 => (
                    Status::Warning,
                    "; mboxfs dovecot-config writes Dovecot 2.3 settings",
                ),
                _ => (
                    Status::Warning,
                    "; older than 2.2: Maildir++ with dovecot-uidlist v3 needs a current Dovecot",
                ),
            };
            Check {
                name: "dovecot",
                status,
                detail: format!("{v} at {}{note}", bin.display()),
                needed: None,
                available: None,
            }
        }
    });

    DestReport {
        dest: dest.to_path_buf(),
        filesystem,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn versions() {
        assert_eq!(major_minor("2.3.19.1 (9b53102964)"), Some((2, 3)));
        assert_eq!(major_minor("2.4.1-4 (7d8c0e5759)"), Some((2, 4)));
        assert_eq!(major_minor("garbage"), None);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/mnt/my\040disk"), "/mnt/my disk");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn the_root_is_always_a_filesystem() {
        let fs = filesystem_of(Path::new("/")).unwrap();
        assert_eq!(fs.mountpoint, Path::new("/"));
    }
}
