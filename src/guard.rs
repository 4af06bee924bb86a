//! The guard against undoing users' work: once Dovecot has used DEST, `materialize` must not
//! quietly put flags, expunged and moved messages back to what the mbox files say.
//!
//! How it knows. At the end of every run, `materialize` leaves one stamp per user in
//! `DEST/.mboxfs-guard/<user>`; the stamp's ctime is the moment mboxfs stopped writing that
//! user's tree. The kernel sets a ctime on every change (a write, a rename, an entry added to or
//! removed from a directory) and nobody can set it back, so anything in the tree with a later
//! ctime was changed by someone else: Dovecot's index files, a message renamed for its flags, a
//! message delivered, appended or copied, a directory whose entries changed (an expunge), a
//! rewritten `dovecot-uidlist`, `dovecot-keywords` or `subscriptions`. Message directories whose
//! own ctime is older than the stamp are not listed at all, so the check costs a few system
//! calls a folder.
//!
//! While a run is going on the stamp says `running` and carries the previous run's time: a run
//! that was killed leaves it so. Its own changes are then indistinguishable from Dovecot's by
//! time, so only what mboxfs never writes counts (index files, messages it did not name, folders
//! it did not make), as it does for a DEST with no stamps at all, where a `dovecot-uidlist` that
//! Dovecot rewrote (its `G` GUID) counts too.
//!
//! DEST is read through [`safe`](crate::safe): DEST itself is the admin's, everything below it
//! is reached from directory descriptors one name at a time, following no symbolic link.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, SFlag};

use crate::model::{self, Folder, Tree, UserTree};
use crate::safe::Dir;

/// The directory of the stamps, in DEST.
pub const STAMPS: &str = ".mboxfs-guard";

/// A moment, as the file system keeps ctimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    secs: i64,
    nanos: i64,
}

/// What the guard needs to know of an entry.
#[derive(Clone, Copy, Debug)]
struct Meta {
    dir: bool,
    ctime: Stamp,
}

impl Meta {
    fn of(st: &FileStat) -> Meta {
        Meta {
            dir: SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR,
            ctime: Stamp {
                secs: st.st_ctime,
                nanos: st.st_ctime_nsec,
            },
        }
    }
}

/// `fstat` of an open file or directory.
fn meta_of(fd: impl AsFd) -> Option<Meta> {
    nix::sys::stat::fstat(fd).ok().map(|st| Meta::of(&st))
}

/// `fstatat` of one name in `dir`, not following it; `None` if it is not there.
fn meta_at(dir: &Dir, name: &OsStr) -> Option<Meta> {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| Meta::of(&st))
}

/// What a user's stamp says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No stamp: a DEST older than the guard, or a first run that never finished.
    Unknown,
    /// A run started after the one that finished at the given time (if any), and did not finish.
    Running(Option<Stamp>),
    /// The last run finished at this time.
    Finished(Stamp),
}

/// Something in DEST that mboxfs did not do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// `user` or `user/folder`.
    pub place: String,
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.what)
    }
}

fn state(stamps: Option<&Dir>, user: &str) -> State {
    let Some(file) = stamps.and_then(|d| d.open_file(user, false).ok()) else {
        return State::Unknown;
    };
    let Some(md) = meta_of(&file) else {
        return State::Unknown;
    };
    let mut text = String::new();
    if file.take(256).read_to_string(&mut text).is_err() {
        return State::Unknown;
    }
    let mut words = text.split_whitespace();
    match words.next() {
        Some("finished") => State::Finished(md.ctime),
        Some("running") => {
            let prev = match (words.next(), words.next()) {
                (Some(s), Some(n)) => s
                    .parse()
                    .ok()
                    .zip(n.parse().ok())
                    .map(|(secs, nanos)| Stamp { secs, nanos }),
                _ => None,
            };
            State::Running(prev)
        }
        _ => State::Unknown,
    }
}

/// Files only Dovecot makes in a maildir: its indexes, logs and mailbox-list files.
fn is_dovecot_file(name: &[u8]) -> bool {
    name.starts_with(b"dovecot.") || name.starts_with(b"dovecot-uidvalidity")
}

/// A `dovecot-uidlist` header that Dovecot wrote (mboxfs writes only `V` and `N`).
fn uidlist_rewritten_by_dovecot(bytes: &[u8]) -> bool {
    let header = bytes.split(|&b| b == b'\n').next().unwrap_or(b"");
    header
        .split(|&b| b == b' ')
        .skip(1)
        .any(|f| !f.is_empty() && !matches!(f[0], b'V' | b'N'))
}

/// Collects the findings of one user's tree.
struct Walk<'a> {
    user: &'a UserTree,
    /// Only changes after this count (None: any time).
    after: Option<Stamp>,
    /// Whether changes by time alone count (renames, removals, rewritten control files).
    by_time: bool,
    /// Whether a uidlist with Dovecot's header fields counts (no stamp at all).
    uidlist_content: bool,
    out: Vec<Finding>,
}

impl Walk<'_> {
    fn changed(&self, md: Meta) -> bool {
        self.after.is_none_or(|t| md.ctime > t)
    }

    fn add(&mut self, place: String, what: String) {
        self.out.push(Finding { place, what });
    }

    /// The user's root: subscriptions, folders mboxfs did not make.
    fn root(&mut self, root: &Dir) {
        let Ok(names) = root.list() else {
            return;
        };
        let ours: HashSet<&[u8]> = self.user.folders.iter().map(|f| f.dir.as_bytes()).collect();
        let mut foreign = Vec::new();
        for (name, _) in names {
            let n = name.as_bytes();
            let Some(md) = meta_at(root, &name) else {
                continue;
            };
            if n == model::SUBSCRIPTIONS.as_bytes() {
                if self.by_time && self.changed(md) {
                    self.add(
                        self.user.name.clone(),
                        "subscriptions changed (a client subscribed or unsubscribed)".into(),
                    );
                }
            } else if md.dir && n.starts_with(b".") && !ours.contains(n) && self.changed(md) {
                foreign.push(String::from_utf8_lossy(n).into_owned());
            }
        }
        if !foreign.is_empty() {
            foreign.sort();
            let what = format!(
                "{} folder{} mboxfs did not make (created in Dovecot?): {}",
                foreign.len(),
                plural(foreign.len()),
                examples(&foreign)
            );
            self.add(self.user.name.clone(), what);
        }
    }

    fn folder(&mut self, root: &Dir, f: &Folder) {
        let place = format!("{}/{}", self.user.name, f.display);
        let dir = if f.dir.is_empty() {
            root.try_clone()
        } else {
            root.open_dir(&f.dir)
        };
        let Ok(dir) = dir else {
            // A folder mboxfs wrote that is gone: deleted or renamed in Dovecot.
            if self.by_time
                && meta_at(root, OsStr::new(&f.dir)).is_none()
                && meta_of(root).is_some_and(|m| self.changed(m))
            {
                self.add(
                    place,
                    "the folder is gone (deleted or renamed in Dovecot?)".into(),
                );
            }
            return;
        };
        let mut dovecot_files = Vec::new();
        for (name, _) in dir.list().unwrap_or_default() {
            let n = name.as_bytes();
            let Some(md) = meta_at(&dir, &name) else {
                continue;
            };
            if is_dovecot_file(n) && self.changed(md) {
                dovecot_files.push(String::from_utf8_lossy(n).into_owned());
            } else if n == model::UIDLIST.as_bytes() {
                if self.by_time && self.changed(md) {
                    self.add(
                        place.clone(),
                        "dovecot-uidlist rewritten since mboxfs wrote it".into(),
                    );
                } else if self.uidlist_content
                    && dir
                        .read_small(model::UIDLIST, 1 << 20)
                        .is_ok_and(|b| uidlist_rewritten_by_dovecot(&b))
                {
                    self.add(
                        place.clone(),
                        "dovecot-uidlist rewritten by Dovecot (its GUID is in the header)".into(),
                    );
                }
            } else if n == model::KEYWORDS.as_bytes() && self.by_time && self.changed(md) {
                self.add(place.clone(), "dovecot-keywords changed".into());
            }
        }
        if !dovecot_files.is_empty() {
            dovecot_files.sort();
            let what = format!("Dovecot's index files: {}", examples(&dovecot_files));
            self.add(place.clone(), what);
        }
        let tag = format!(".{:08x},", f.tag);
        let (mut renamed, mut foreign, mut dirs_changed) = (Vec::new(), Vec::new(), Vec::new());
        for sub in [model::Subdir::Cur, model::Subdir::New] {
            // Nothing was added, removed or renamed in a directory that has not changed.
            let Some(dmd) = meta_at(&dir, OsStr::new(sub.name())) else {
                continue;
            };
            if !dmd.dir || !self.changed(dmd) {
                continue;
            }
            dirs_changed.push(sub.name());
            let Ok(d) = dir.open_dir(sub.name()) else {
                continue;
            };
            for (name, _) in d.list().unwrap_or_default() {
                let n = name.as_bytes();
                let ours = model::parse_message_name(n).is_some()
                    && n.windows(tag.len()).any(|w| w == tag.as_bytes());
                if ours && !self.by_time {
                    continue;
                }
                let Some(emd) = meta_at(&d, &name) else {
                    continue;
                };
                if !self.changed(emd) {
                    continue;
                }
                let shown = format!("{}/{}", sub.name(), String::from_utf8_lossy(n));
                if ours {
                    renamed.push(shown);
                } else {
                    foreign.push(shown);
                }
            }
        }
        if !renamed.is_empty() {
            renamed.sort();
            let what = format!(
                "{} message{} renamed since mboxfs wrote {} (flags changed, or moved from new/ \
                 to cur/, by Dovecot): {}",
                renamed.len(),
                plural(renamed.len()),
                if renamed.len() == 1 { "it" } else { "them" },
                examples(&renamed)
            );
            self.add(place.clone(), what);
        }
        if !foreign.is_empty() {
            foreign.sort();
            let what = format!(
                "{} message{} mboxfs did not write (delivered, appended, copied or moved there): {}",
                foreign.len(),
                plural(foreign.len()),
                examples(&foreign)
            );
            self.add(place.clone(), what);
        }
        if self.by_time && renamed.is_empty() && foreign.is_empty() && !dirs_changed.is_empty() {
            self.add(
                place,
                format!(
                    "messages removed from {} since mboxfs wrote them (expunged or moved in Dovecot)",
                    dirs_changed.join(" and ")
                ),
            );
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn examples(names: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

/// What Dovecot (or anyone but mboxfs) did in the users' trees under `dest`. Empty when DEST is
/// as mboxfs left it, or does not exist.
pub fn check(tree: &Tree, dest: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let Ok(root) = Dir::open_trusted(dest) else {
        return out;
    };
    let stamps = root.open_dir(STAMPS).ok();
    for user in &tree.users {
        // A user's directory that is a symbolic link is not entered (materialize refuses it).
        let Ok(udir) = root.open_dir(&user.name) else {
            continue;
        };
        let st = state(stamps.as_ref(), &user.name);
        let mut w = Walk {
            user,
            after: match st {
                State::Finished(t) => Some(t),
                State::Running(prev) => prev,
                State::Unknown => None,
            },
            by_time: matches!(st, State::Finished(_)),
            uidlist_content: st == State::Unknown,
            out: Vec::new(),
        };
        w.root(&udir);
        for f in &user.folders {
            w.folder(&udir, f);
        }
        out.extend(w.out);
    }
    out
}

/// The message that refuses a DEST Dovecot has used.
pub fn refusal(dest: &Path, findings: &[Finding]) -> String {
    const SHOWN: usize = 20;
    let mut s = format!(
        "{} has been used by Dovecot since mboxfs wrote it; writing it again would undo users' work:\n",
        dest.display()
    );
    for f in findings.iter().take(SHOWN) {
        s.push_str(&format!("  {f}\n"));
    }
    if findings.len() > SHOWN {
        s.push_str(&format!("  ... and {} more\n", findings.len() - SHOWN));
    }
    s.push_str(
        "`mboxfs verify` lists every difference. To write DEST from the sources anyway (flags, \
         expunged and moved messages go back to what the mbox files say; nothing mboxfs did not \
         write is removed), give --revert-user-changes.",
    );
    s
}

/// DEST's stamps directory, made when missing (root's, 0700), if mboxfs made DEST (its marker
/// is there). `None` for a DEST mboxfs did not make: materialize decides about those, and must
/// find an empty DEST still empty.
fn stamps_dir(dest: &Path) -> io::Result<Option<Dir>> {
    let root = Dir::open_trusted(dest)?;
    match root.stat_at(crate::materialize::MARKER)? {
        Some(st) if st.kind == crate::safe::Kind::File => Ok(Some(root.make_dir(STAMPS, 0o700)?)),
        _ => Ok(None),
    }
}

/// Writes a stamp afresh; returns its ctime.
fn write_stamp(stamps: &Dir, name: &str, text: &str) -> io::Result<Stamp> {
    match stamps.remove_file(name) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = stamps.create_new(name, 0o600)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    meta_of(&f)
        .map(|m| m.ctime)
        .ok_or_else(|| io::Error::other("fstat failed"))
}

/// Marks the users' trees as being written (before `materialize` starts), keeping the time of
/// the last finished run.
pub fn begin(tree: &Tree, dest: &Path) -> io::Result<()> {
    let stamps = match Dir::open_trusted(dest) {
        Ok(_) => stamps_dir(dest)?,
        Err(_) => None, // DEST does not exist yet: materialize makes it
    };
    let Some(stamps) = stamps else {
        return Ok(());
    };
    for u in &tree.users {
        let text = match state(Some(&stamps), &u.name) {
            State::Finished(t) | State::Running(Some(t)) => {
                format!("running {} {}\n", t.secs, t.nanos)
            }
            State::Running(None) | State::Unknown => "running\n".to_string(),
        };
        write_stamp(&stamps, &u.name, &text)?;
    }
    Ok(())
}

/// Removes the users' stamps (when they cannot be kept up to date): the next check then
/// counts only what mboxfs never writes.
pub fn forget(tree: &Tree, dest: &Path) {
    let Ok(Some(stamps)) = stamps_dir(dest) else {
        return;
    };
    for u in &tree.users {
        let _ = stamps.remove_file(&u.name);
    }
}

/// Marks the users' trees as written (after `materialize`): from now on, any change is
/// someone else's.
pub fn finish(tree: &Tree, dest: &Path) -> io::Result<()> {
    let Some(stamps) = stamps_dir(dest)? else {
        return Ok(());
    };
    let root = Dir::open_trusted(dest)?;
    let mut last = None;
    for u in &tree.users {
        if root.open_dir(&u.name).is_ok() {
            last = Some(write_stamp(&stamps, &u.name, "finished\n")?);
        }
    }
    if let Some(last) = last {
        wait_past(&stamps, last)?;
    }
    Ok(())
}

/// Returns once the file system's clock has moved past `t`. File times come from a coarse
/// clock (a few milliseconds a tick): without the wait, a change made right after the run
/// could carry the stamp's own time and go unnoticed.
fn wait_past(stamps: &Dir, t: Stamp) -> io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let now = write_stamp(stamps, ".clock", "")?;
        if now > t || std::time::Instant::now() > deadline {
            return stamps.remove_file(".clock");
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Findings grouped by user, for a summary line.
pub fn users_with_findings(findings: &[Finding]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for f in findings {
        let user = f.place.split('/').next().unwrap_or(&f.place);
        *m.entry(user).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidlist_headers() {
        assert!(!uidlist_rewritten_by_dovecot(b"3 V1234 N56\n1 :a\n"));
        assert!(uidlist_rewritten_by_dovecot(
            b"3 V1234 N56 G0123456789abcdef0123456789abcdef\n1 :a\n"
        ));
        assert!(!uidlist_rewritten_by_dovecot(b""));
    }

    #[test]
    fn dovecot_files() {
        for n in [
            "dovecot.index",
            "dovecot.index.log",
            "dovecot.list.index.log",
            "dovecot-uidvalidity.5f3a",
        ] {
            assert!(is_dovecot_file(n.as_bytes()), "{n}");
        }
        for n in ["dovecot-uidlist", "dovecot-keywords", "subscriptions"] {
            assert!(!is_dovecot_file(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn examples_are_short() {
        let names: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
        assert_eq!(examples(&names), "m0, m1, m2 and 2 more");
        assert_eq!(examples(&names[..1]), "m0");
    }
}
