//! The UIDs clients of the mount have seen, kept for the whole life of the state directory.
//!
//! The promise: per folder, UIDVALIDITY never goes down, and a (UIDVALIDITY, UID) pair never
//! names two different messages, across deliveries, UW-IMAP rewrites, stalled writes and
//! remounts. A message is known by its content: a 64-bit hash of its INTERNALDATE and its served
//! bytes (flags are not part of it; they change).
//!
//! - The first time a folder is served, the view takes the mbox's own UIDVALIDITY and UIDs (what
//!   UW-IMAP showed, and what `materialize` writes).
//! - After that, a message keeps the UID it was served with for as long as it is in the mbox,
//!   whatever the mbox says. A message the view has not served yet gets the mbox's UID when that
//!   is not below the next UID already announced, and the next UID otherwise. A UID that
//!   disappears is never given out again (Dovecot would log "Expunged message reappeared").
//! - When the mbox's UIDVALIDITY changes (UW-IMAP gave up its UIDs), the view takes the new one if
//!   it is higher than the one served, with the mbox's UIDs; otherwise it keeps serving its own
//!   UIDVALIDITY and UIDs, and says so.
//!
//! Each folder's record is an append-only log in the state directory, written (and synced)
//! before a snapshot that depends on it is shown:
//!
//! ```text
//! mboxfs-uids 1
//! G <uidvalidity> <mbox uidvalidity> <next uid>     a new generation: forget every UID
//! A <uid> <hash>                                    served
//! D <uid>                                           gone (never given out again)
//! N <next uid>
//! S <mbox uidvalidity>
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What identifies a message: a hash of its INTERNALDATE and served bytes.
pub type Hash = u64;

/// One generation of a folder's UIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation {
    /// The UIDVALIDITY served.
    pub uidvalidity: u32,
    /// The mbox's own UIDVALIDITY when it was last read.
    pub source_uidvalidity: u32,
    /// The next UID: every UID below it was served or skipped, and is never given out again.
    pub next: u32,
}

/// The served UIDs of one reading of a folder.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Assigned {
    pub generation: Option<Generation>,
    /// The served UID of each message, in the order given.
    pub uids: Vec<u32>,
    /// A new generation started (every earlier UID is forgotten).
    pub reset: bool,
    /// UIDs served before that are gone.
    pub retired: Vec<u32>,
    /// Messages served for the first time.
    pub added: Vec<(u32, Hash)>,
    /// Why the view's UIDVALIDITY is not the mbox's, when it is not.
    pub note: Option<String>,
}

/// Assigns served UIDs.
///
/// `live`: the messages served now (UID, hash). `msgs`: the mbox's messages (its UID, hash), in
/// order; the first `fixed` of them already carry their served UID (an append was read: they
/// are unchanged). `file_uidvalidity`/`file_next`: what the mbox says.
pub fn assign(
    generation: Option<Generation>,
    live: &[(u32, Hash)],
    file_uidvalidity: u32,
    file_next: u32,
    msgs: &[(u32, Hash)],
    fixed: usize,
) -> Assigned {
    let mut out = Assigned::default();
    let adopt = match generation {
        None => true,
        Some(g) => {
            g.source_uidvalidity != file_uidvalidity && file_uidvalidity > g.uidvalidity
                // UIDs running out: a new generation, with a higher UIDVALIDITY.
                || g.next > u32::MAX - 1 - msgs.len() as u32
        }
    };
    let mut g = match generation {
        Some(old) if adopt => {
            out.reset = true;
            let uidvalidity = if file_uidvalidity > old.uidvalidity {
                file_uidvalidity
            } else {
                old.uidvalidity.saturating_add(1)
            };
            Generation {
                uidvalidity,
                source_uidvalidity: file_uidvalidity,
                next: 1,
            }
        }
        None => {
            out.reset = true;
            Generation {
                uidvalidity: file_uidvalidity,
                source_uidvalidity: file_uidvalidity,
                next: 1,
            }
        }
        Some(old) => {
            if old.uidvalidity != file_uidvalidity {
                out.note = Some(format!(
                    "the mbox now says UIDVALIDITY {file_uidvalidity}; clients of the mount were \
                     shown {} and keep it, with the same UIDs for the same messages",
                    old.uidvalidity
                ));
            }
            Generation {
                source_uidvalidity: file_uidvalidity,
                ..old
            }
        }
    };
    // The UIDs served now, by content; the ones claimed again are taken out.
    let mut by_hash: HashMap<Hash, Vec<u32>> = HashMap::new();
    if !out.reset {
        for &(uid, h) in live {
            by_hash.entry(h).or_default().push(uid);
        }
        for uids in by_hash.values_mut() {
            // Claimed lowest first: popped from the end.
            uids.sort_unstable_by(|a, b| b.cmp(a));
        }
    }
    let mut claim = |h: Hash, uid: Option<u32>| -> Option<u32> {
        let uids = by_hash.get_mut(&h)?;
        let at = match uid {
            Some(u) => uids.iter().position(|&x| x == u)?,
            None => uids.len().checked_sub(1)?,
        };
        Some(uids.remove(at))
    };
    out.uids.reserve(msgs.len());
    for (i, &(file_uid, h)) in msgs.iter().enumerate() {
        let uid = if i < fixed {
            if claim(h, Some(file_uid)).is_none() && !out.reset {
                // Served before under this UID, but not recorded: record it now.
                out.added.push((file_uid, h));
            }
            g.next = g.next.max(file_uid.saturating_add(1));
            file_uid
        } else if let Some(uid) = claim(h, None) {
            uid
        } else {
            let uid = if file_uid >= g.next && file_uid < u32::MAX {
                file_uid
            } else {
                g.next
            };
            g.next = uid + 1;
            out.added.push((uid, h));
            uid
        };
        out.uids.push(uid);
    }
    let same_numbering = g.source_uidvalidity == g.uidvalidity;
    if same_numbering && file_next > g.next && file_next < u32::MAX {
        // UW-IMAP's UIDNEXT is higher (it gave out UIDs to mail since expunged): follow it, as
        // UW-IMAP's clients were told.
        g.next = file_next;
    }
    out.retired = by_hash.into_values().flatten().collect();
    out.retired.sort_unstable();
    out.generation = Some(g);
    out
}

/// A folder's UID log in the state directory. It is opened for each record only (a mount of
/// thousands of folders must not hold a descriptor for each).
pub struct Log {
    path: PathBuf,
    /// Lines in the file, to know when to compact it.
    lines: usize,
}

/// What a log holds: the generation and the messages served now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub generation: Option<Generation>,
    pub live: Vec<(u32, Hash)>,
}

const MAGIC: &str = "mboxfs-uids 1";

impl Log {
    /// Opens (or creates) the log at `path` and reads it back.
    pub fn open(path: &Path) -> io::Result<(Log, Loaded)> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut text = Vec::new();
        (&file).read_to_end(&mut text)?;
        let (loaded, lines) = parse(&text).map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", path.display()),
            )
        })?;
        drop(file);
        let mut log = Log {
            path: path.to_path_buf(),
            lines,
        };
        if lines == 0 {
            log.append(&format!("{MAGIC}\n"))?;
        } else if lines > 2 * loaded.live.len() + 64 {
            log.compact(&loaded)?;
        }
        Ok((log, loaded))
    }

    /// Records an assignment. Returns once it is on disk.
    pub fn record(&mut self, before: Option<Generation>, a: &Assigned) -> io::Result<()> {
        use std::fmt::Write as _;
        let Some(g) = a.generation else {
            return Ok(());
        };
        let mut text = String::new();
        if a.reset {
            let _ = writeln!(
                text,
                "G {} {} {}",
                g.uidvalidity, g.source_uidvalidity, g.next
            );
        } else {
            for uid in &a.retired {
                let _ = writeln!(text, "D {uid}");
            }
        }
        for (uid, h) in &a.added {
            let _ = writeln!(text, "A {uid} {h:016x}");
        }
        if !a.reset {
            let b = before.unwrap_or(g);
            if b.next != g.next {
                let _ = writeln!(text, "N {}", g.next);
            }
            if b.source_uidvalidity != g.source_uidvalidity {
                let _ = writeln!(text, "S {}", g.source_uidvalidity);
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        self.append(&text)
    }

    fn append(&mut self, text: &str) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        self.lines += text.lines().count();
        Ok(())
    }

    /// Rewrites the log with only what it says now.
    fn compact(&mut self, loaded: &Loaded) -> io::Result<()> {
        use std::fmt::Write as _;
        let Some(g) = loaded.generation else {
            return Ok(());
        };
        let mut text = format!(
            "{MAGIC}\nG {} {} {}\n",
            g.uidvalidity, g.source_uidvalidity, g.next
        );
        for (uid, h) in &loaded.live {
            let _ = writeln!(text, "A {uid} {h:016x}");
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.lines = text.lines().count();
        Ok(())
    }
}

/// The generation a log records, without changing anything (for `plan`).
pub fn read_generation(path: &Path) -> Option<Generation> {
    let text = std::fs::read(path).ok()?;
    parse(&text).ok()?.0.generation
}

/// Makes the next mount serve the folder of the log at `path` under a new, higher UIDVALIDITY
/// (after testers' changes were thrown away: clients must not keep what they cached).
pub fn start_new_generation(path: &Path) -> io::Result<()> {
    let (mut log, loaded) = Log::open(path)?;
    if let Some(g) = loaded.generation {
        log.append(&format!("G {} 0 1\n", g.uidvalidity.saturating_add(1)))?;
    }
    Ok(())
}

/// Reads a log. A last line cut short (a crash while appending) is ignored.
fn parse(text: &[u8]) -> Result<(Loaded, usize), String> {
    let text = std::str::from_utf8(text).map_err(|_| "not text".to_string())?;
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut lines = complete.lines();
    let mut count = 0;
    match lines.next() {
        None => return Ok((Loaded::default(), 0)),
        Some(MAGIC) => count += 1,
        Some(other) => return Err(format!("unknown format {other:?}")),
    }
    let mut g: Option<Generation> = None;
    let mut live: HashMap<u32, Hash> = HashMap::new();
    for line in lines {
        count += 1;
        let mut w = line.split(' ');
        let kind = w.next().unwrap_or("");
        let mut num = || -> Result<u32, String> {
            w.next()
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| format!("bad line {count}: {line:?}"))
        };
        match kind {
            "G" => {
                let (uidvalidity, source_uidvalidity, next) = (num()?, num()?, num()?);
                g = Some(Generation {
                    uidvalidity,
                    source_uidvalidity,
                    next,
                });
                live.clear();
            }
            "A" | "D" | "N" | "S" => {
                let v = num()?;
                let current = g
                    .as_mut()
                    .ok_or_else(|| format!("line {count}: before any generation"))?;
                match kind {
                    "A" => {
                        let h = line
                            .rsplit(' ')
                            .next()
                            .and_then(|x| u64::from_str_radix(x, 16).ok())
                            .ok_or_else(|| format!("bad line {count}: {line:?}"))?;
                        live.insert(v, h);
                        current.next = current.next.max(v.saturating_add(1));
                    }
                    "D" => {
                        live.remove(&v);
                    }
                    "N" => current.next = current.next.max(v),
                    _ => current.source_uidvalidity = v,
                }
            }
            _ => return Err(format!("bad line {count}: {line:?}")),
        }
    }
    let mut live: Vec<(u32, Hash)> = live.into_iter().collect();
    live.sort_unstable();
    Ok((
        Loaded {
            generation: g,
            live,
        },
        count,
    ))
}

/// The hash that identifies a message: its INTERNALDATE and its served bytes.
pub struct Hasher(xxhash_rust::xxh3::Xxh3);

impl Hasher {
    pub fn new(time: i64) -> Hasher {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&time.to_le_bytes());
        Hasher(h)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(&self) -> Hash {
        self.0.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(v: u32, s: u32, n: u32) -> Option<Generation> {
        Some(Generation {
            uidvalidity: v,
            source_uidvalidity: s,
            next: n,
        })
    }

    #[test]
    fn first_sight_takes_the_mboxs_uids() {
        let a = assign(None, &[], 500, 13, &[(3, 30), (7, 70), (9, 90)], 0);
        assert_eq!(a.uids, [3, 7, 9]);
        assert!(a.reset);
        assert_eq!(a.generation, generation(500, 500, 13));
        assert_eq!(a.added.len(), 3);
    }

    #[test]
    fn a_uid_never_names_other_bytes() {
        // UID 3 was served truncated (hash 31); the mbox now has the whole message as UID 3.
        let live = [(1, 10), (2, 20), (3, 31)];
        let a = assign(
            generation(7, 7, 4),
            &live,
            7,
            4,
            &[(1, 10), (2, 20), (3, 32)],
            0,
        );
        assert_eq!(a.uids, [1, 2, 4]);
        assert_eq!(a.retired, [3]);
        assert_eq!(a.added, [(4, 32)]);
        assert_eq!(a.generation, generation(7, 7, 5));
        assert!(!a.reset);
        // UID 3 never comes back, not even for its own old bytes.
        let live = [(1, 10), (2, 20), (4, 32)];
        let a = assign(
            generation(7, 7, 5),
            &live,
            7,
            4,
            &[(1, 10), (2, 20), (3, 31), (4, 32)],
            0,
        );
        assert_eq!(a.uids, [1, 2, 5, 4]);
    }

    #[test]
    fn the_same_messages_keep_their_uids_whatever_the_mbox_says() {
        let live = [(5, 50), (6, 60)];
        // UW-IMAP renumbered (lower UIDVALIDITY and new UIDs): the view keeps its own.
        let a = assign(
            generation(900, 900, 7),
            &live,
            800,
            3,
            &[(1, 50), (2, 60), (3, 70)],
            0,
        );
        assert_eq!(a.uids, [5, 6, 7]);
        assert_eq!(a.generation, generation(900, 800, 8));
        assert!(a.note.is_some());
        // A higher UIDVALIDITY in the mbox is taken, with its UIDs.
        let a = assign(
            generation(900, 900, 7),
            &live,
            950,
            4,
            &[(1, 50), (2, 60), (3, 70)],
            0,
        );
        assert!(a.reset);
        assert_eq!(a.uids, [1, 2, 3]);
        assert_eq!(a.generation, generation(950, 950, 4));
    }

    #[test]
    fn duplicates_and_appends() {
        let live = [(1, 9), (2, 9)];
        let a = assign(
            generation(1, 1, 3),
            &live,
            1,
            3,
            &[(1, 9), (2, 9), (3, 9)],
            0,
        );
        assert_eq!(a.uids, [1, 2, 3]);
        // An append: the first two are fixed, the third is new.
        let live = [(1, 10), (2, 20)];
        let a = assign(
            generation(1, 1, 3),
            &live,
            1,
            4,
            &[(1, 10), (2, 20), (3, 30)],
            2,
        );
        assert_eq!(a.uids, [1, 2, 3]);
        assert!(a.retired.is_empty());
        assert_eq!(a.added, [(3, 30)]);
    }

    #[test]
    fn the_log_survives_a_remount_and_a_torn_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.uids");
        let (mut log, loaded) = Log::open(&p).unwrap();
        assert_eq!(loaded, Loaded::default());
        let a = assign(None, &[], 5, 4, &[(1, 10), (2, 20), (3, 30)], 0);
        log.record(None, &a).unwrap();
        let b = assign(
            a.generation,
            &[(1, 10), (2, 20), (3, 30)],
            5,
            4,
            &[(1, 10), (3, 33)],
            0,
        );
        log.record(a.generation, &b).unwrap();
        drop(log);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"A 9 00")
            .unwrap();
        let (_, loaded) = Log::open(&p).unwrap();
        assert_eq!(loaded.generation, generation(5, 5, 5));
        assert_eq!(loaded.live, [(1, 10), (4, 33)]);
        // Compaction keeps the meaning.
        let (mut log, _) = Log::open(&p).unwrap();
        log.compact(&loaded).unwrap();
        drop(log);
        let (_, again) = Log::open(&p).unwrap();
        assert_eq!(again, loaded);
        std::fs::write(&p, "something else\n").unwrap();
        assert!(Log::open(&p).is_err());
    }
}
