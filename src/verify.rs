//! `mboxfs verify DEST`: proof that DEST holds exactly what the sources give.
//!
//! For every folder it compares presence, bytes, mtime and flags of each message, the UIDs and
//! UIDVALIDITY in `dovecot-uidlist`, `dovecot-keywords`, `maildirfolder` and the user's
//! `subscriptions`. What Dovecot itself does to a maildir is not a difference: its index and
//! lock files, moving a message from `new/` to `cur/` (same flags), a `G` GUID or a higher `N` in
//! the uidlist header, extension fields in uidlist records, and subscriptions rewritten in
//! another format.
//!
//! DEST is read as `materialize` writes it: from directory descriptors, through the safe open
//! ([`safe`](crate::safe)). A symbolic link in DEST is a difference, and is never followed; so is
//! anything but a regular file where a file is expected. Nothing is written: a finished DEST on
//! a read-only file system verifies. A `materialize` writing DEST holds its lock: verify then
//! refuses at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::index::{FolderIndex, Msg};
use crate::materialize::base_of;
use crate::mbox::{self, IndexOptions};
use crate::model::{self, Folder, Subdir, Tree, UserTree};
use crate::parallel;
use crate::safe::{Dir, Kind};

/// The largest `subscriptions` or `dovecot-keywords` read from DEST.
const CONTROL_LIMIT: u64 = 16 << 20;

/// The differences found in one folder.
#[derive(Debug, Default)]
pub struct FolderReport {
    pub folder: String,
    pub messages: usize,
    pub problems: Vec<String>,
}

/// Compares every folder (`jobs` at once). Returns one report per folder, then one per user for
/// user-level files and folders that should not be there. Fails when DEST cannot be opened, or
/// a `materialize` is writing it.
pub fn run(
    tree: &Tree,
    index_opts: &IndexOptions,
    dest: &Path,
    jobs: usize,
) -> Result<Vec<FolderReport>, String> {
    let dest = Dir::open_trusted(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let _lock = dest
        .try_lock(false)
        .map_err(|e| format!("{}: {e}", dest.path().display()))?
        .ok_or_else(|| {
            format!(
                "{}: a mboxfs materialize is writing it; verify when it has ended",
                dest.path().display()
            )
        })?;
    let work: Vec<(&UserTree, &Folder)> = tree
        .users
        .iter()
        .flat_map(|u| u.folders.iter().map(move |f| (u, f)))
        .collect();
    let mut reports = parallel::map(&work, jobs, |(u, f)| verify_folder(u, f, index_opts, &dest));
    for u in &tree.users {
        reports.push(verify_user(u, &dest));
    }
    Ok(reports)
}

fn verify_user(u: &UserTree, dest: &Dir) -> FolderReport {
    let mut r = FolderReport {
        folder: format!("{} (user files)", u.name),
        ..Default::default()
    };
    let root = match dest.open_dir(&u.name) {
        Ok(d) => d,
        Err(e) => {
            r.problems
                .push(format!("{}: {e}", dest.path().join(&u.name).display()));
            return r;
        }
    };
    match root.read_small(model::SUBSCRIPTIONS, CONTROL_LIMIT) {
        Ok(have) => {
            let want = subscription_set(&u.subscriptions_file());
            let have = subscription_set(&have);
            for w in want.difference(&have) {
                r.problems.push(format!("subscriptions: {w:?} missing"));
            }
            for h in have.difference(&want) {
                r.problems.push(format!("subscriptions: {h:?} extra"));
            }
        }
        Err(e) => r.problems.push(format!("subscriptions: {e}")),
    }
    let known: BTreeSet<&str> = u.folders.iter().map(|f| f.dir.as_str()).collect();
    if let Ok(entries) = root.list() {
        for (name, kind) in entries {
            let name = name.to_string_lossy().into_owned();
            if !name.starts_with('.') {
                continue;
            }
            let kind = kind.or_else(|| root.stat_at(&name).ok().flatten().map(|s| s.kind));
            match kind {
                Some(Kind::Dir) if !known.contains(name.as_str()) => r
                    .problems
                    .push(format!("folder {name} is not in the source")),
                Some(Kind::Symlink) => r
                    .problems
                    .push(format!("{name} is a symbolic link (not followed)")),
                _ => {}
            }
        }
    }
    r
}

/// Subscribed names, whatever the file's format (v1: one name a line with `.` between levels;
/// v2: `V\t2` header, TAB between levels).
fn subscription_set(data: &[u8]) -> BTreeSet<String> {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines().peekable();
    let v2 = lines.peek().is_some_and(|l| l.starts_with("V\t"));
    if v2 {
        lines.next();
    }
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            if v2 {
                l.replace('\t', ".")
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Reads `file` and compares it with the message's served bytes.
fn same_bytes(mut f: File, source: &File, index: &FolderIndex, m: &Msg) -> io::Result<bool> {
    let size = m.size(index);
    if f.metadata()?.len() != size {
        return Ok(false);
    }
    const CHUNK: usize = 1 << 20;
    let (mut a, mut b) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut offset = 0u64;
    while offset < size {
        let n = mbox::read_served(source, index, m, offset, &mut a)?;
        if n == 0 {
            return Ok(false);
        }
        f.read_exact(&mut b[..n])?;
        if a[..n] != b[..n] {
            return Ok(false);
        }
        offset += n as u64;
    }
    Ok(true)
}

/// `maildir flags` of a file name (after `:2,`).
fn flags_of(name: &str) -> &str {
    name.split_once(":2,").map_or("", |(_, f)| f)
}

fn verify_folder(u: &UserTree, f: &Folder, index_opts: &IndexOptions, dest: &Dir) -> FolderReport {
    let mut r = FolderReport {
        folder: format!("{}/{}", u.name, f.display),
        ..Default::default()
    };
    if let Some(why) = &f.refused {
        r.problems.push(format!("source refused: {why}"));
        return r;
    }
    // Indexed from the descriptor its bytes are then compared from.
    let (index, source) = match f.index(index_opts) {
        Ok(x) => x,
        Err(e) => {
            r.problems.push(format!("source unreadable: {e}"));
            return r;
        }
    };
    r.messages = index.messages.len();
    let rel = Path::new(&u.name).join(&f.dir);
    let dir = match dest.open_dir(&rel) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            r.problems
                .push(format!("{} is missing", dest.path().join(&rel).display()));
            return r;
        }
        Err(e) => {
            r.problems
                .push(format!("{}: {e}", dest.path().join(&rel).display()));
            return r;
        }
    };
    const MAX_LISTED: usize = 50;
    let note = |r: &mut FolderReport, s: String| {
        if r.problems.len() < MAX_LISTED {
            r.problems.push(s);
        } else if r.problems.len() == MAX_LISTED {
            r.problems.push("more differences left out".into());
        }
    };
    // What is there: base -> (dir, name).
    let mut present: HashMap<String, (Subdir, String)> = HashMap::new();
    let mut subdirs: HashMap<Subdir, Dir> = HashMap::new();
    for s in [Subdir::Cur, Subdir::New] {
        let listed = dir.open_dir(s.name()).and_then(|d| Ok((d.list()?, d)));
        let (entries, sub) = match listed {
            Ok(x) => x,
            Err(e) => {
                note(&mut r, format!("{}/: {e}", s.name()));
                continue;
            }
        };
        for (name, kind) in entries {
            let name = OsString::into_string(name).unwrap_or_else(|n| n.to_string_lossy().into());
            let kind = kind.or_else(|| sub.stat_at(&name).ok().flatten().map(|st| st.kind));
            if kind != Some(Kind::File) {
                let what = kind.map_or("cannot be examined", Kind::describe);
                note(&mut r, format!("{}/{name} {what} (not followed)", s.name()));
                continue;
            }
            if let Some((other, _)) = present.insert(base_of(&name).to_string(), (s, name.clone()))
            {
                note(
                    &mut r,
                    format!("{name} is in both new/ and cur/ (was {})", other.name()),
                );
            }
        }
        subdirs.insert(s, sub);
    }
    for m in &index.messages {
        let (sub, name) = f.message_file(&index, m);
        let base = base_of(&name).to_string();
        let Some((have_sub, have_name)) = present.remove(&base) else {
            note(
                &mut r,
                format!("missing: UID {} ({}/{name})", m.uid, sub.name()),
            );
            continue;
        };
        let want_flags = m.maildir_flags();
        let moved_by_dovecot = sub == Subdir::New && have_sub == Subdir::Cur;
        if flags_of(&have_name) != want_flags || (have_sub != sub && !moved_by_dovecot) {
            note(
                &mut r,
                format!(
                    "UID {}: {}/{have_name}, expected {}/{name}",
                    m.uid,
                    have_sub.name(),
                    sub.name()
                ),
            );
        }
        let file = match subdirs[&have_sub].open_file(&have_name, false) {
            Ok(f) => f,
            Err(e) => {
                note(&mut r, format!("UID {}: {e}", m.uid));
                continue;
            }
        };
        let want_mtime = model::message_mtime(m);
        match file.metadata() {
            Ok(md) if md.mtime() != want_mtime => note(
                &mut r,
                format!(
                    "UID {}: mtime {} instead of {want_mtime}",
                    m.uid,
                    md.mtime()
                ),
            ),
            Ok(_) => {}
            Err(e) => note(&mut r, format!("UID {}: {e}", m.uid)),
        }
        match source
            .as_ref()
            .map(|s| same_bytes(file, &s.file, &index, m))
        {
            Some(Ok(true)) => {}
            Some(Ok(false)) => note(&mut r, format!("UID {}: bytes differ ({have_name})", m.uid)),
            Some(Err(e)) => note(&mut r, format!("UID {}: cannot compare: {e}", m.uid)),
            None => note(&mut r, format!("UID {}: source unreadable", m.uid)),
        }
    }
    let mut extra: Vec<_> = present.into_values().collect();
    extra.sort_by(|a, b| a.1.cmp(&b.1));
    for (s, name) in extra {
        note(&mut r, format!("extra: {}/{name}", s.name()));
    }
    let uidlist_limit = index.messages.len() as u64 * 256 + (1 << 20);
    verify_uidlist(
        &mut r,
        f,
        &index,
        dir.read_small(model::UIDLIST, uidlist_limit),
    );
    match (
        f.keywords_file(&index),
        dir.read_small(model::KEYWORDS, CONTROL_LIMIT),
    ) {
        (None, _) => {}
        (Some(want), Ok(have)) => {
            let have = String::from_utf8_lossy(&have);
            let have: BTreeMap<&str, &str> =
                have.lines().filter_map(|l| l.split_once(' ')).collect();
            for line in String::from_utf8_lossy(&want).lines() {
                let (i, k) = line.split_once(' ').unwrap_or_default();
                if have.get(i) != Some(&k) {
                    note(
                        &mut r,
                        format!("dovecot-keywords: keyword {i} should be {k:?}"),
                    );
                }
            }
        }
        (Some(_), Err(e)) => note(&mut r, format!("dovecot-keywords: {e}")),
    }
    let marker = dir.stat_at(model::MAILDIRFOLDER).ok().flatten();
    if !f.is_inbox() && marker.is_none_or(|st| st.kind != Kind::File) {
        note(&mut r, "maildirfolder is missing".into());
    }
    r
}

fn verify_uidlist(
    r: &mut FolderReport,
    f: &Folder,
    index: &FolderIndex,
    read: io::Result<Vec<u8>>,
) {
    let text = match read {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            r.problems.push(format!("dovecot-uidlist: {e}"));
            return;
        }
    };
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
    let field = |k: char| {
        head.iter()
            .skip(1)
            .find(|x| x.starts_with(k))
            .and_then(|x| x[1..].parse::<u64>().ok())
    };
    if head.first() != Some(&"3") {
        r.problems.push("dovecot-uidlist: not version 3".into());
        return;
    }
    if field('V') != Some(u64::from(index.uidvalidity)) {
        r.problems.push(format!(
            "dovecot-uidlist: UIDVALIDITY {:?} instead of {}",
            field('V'),
            index.uidvalidity
        ));
    }
    if field('N').is_none_or(|n| n < u64::from(index.uid_next)) {
        r.problems.push(format!(
            "dovecot-uidlist: next UID {:?} lower than {}",
            field('N'),
            index.uid_next
        ));
    }
    let records: HashMap<&str, u32> = lines
        .filter_map(|l| {
            let (uid, rest) = l.split_once(' ')?;
            let name = rest.rsplit_once(':').map(|(_, n)| n).unwrap_or(rest);
            Some((base_of(name), uid.parse().ok()?))
        })
        .collect();
    let mut wrong = 0;
    for m in &index.messages {
        let base = f.base_name(index, m);
        if records.get(base.as_str()) != Some(&m.uid) {
            wrong += 1;
            if wrong <= 10 {
                r.problems
                    .push(format!("dovecot-uidlist: {base} should have UID {}", m.uid));
            }
        }
    }
    if records.len() > index.messages.len() {
        r.problems.push(format!(
            "dovecot-uidlist: {} records for {} messages",
            records.len(),
            index.messages.len()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_in_either_format() {
        let v2 = subscription_set(b"V\t2\n\nINBOX\nWork\t2004\n");
        let v1 = subscription_set(b"INBOX\nWork.2004\n");
        assert_eq!(v1, v2);
    }
}
