//! mboxfs against UW-IMAP's own library, the reference: c-client 2007f (Debian's
//! `libc-client2007e-dev`), through `../shared/tools/uw/uwdump.c`, on the 169 real mbox files of
//! `../shared/corpus/real`.
//!
//! Every message of every file c-client opens is compared: the bytes as IMAP serves them (LF made
//! CRLF), flags, recent, keywords, INTERNALDATE, UID, RFC822.SIZE, and per file UIDVALIDITY and
//! UIDNEXT (where c-client kept the file's own), and c-client's warnings against mboxfs's notes
//! (which `plan` shows). Files c-client refuses, mboxfs refuses. Where mboxfs deliberately
//! differs, the file is listed in [`DIFFERENCES`] with the reason; a listed difference that no
//! longer occurs fails the test too, so the list stays true.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::uw::{self, Deliberate, MfReading, UwReading};
use mboxfs::index::UidValiditySource;
use mboxfs::mbox::{self, IndexOptions, ReadMode, Store};
use mboxfs::scan::{Unquote, scan_all};

/// Why a file is listed: what mboxfs serves differently from c-client, on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Why {
    /// One of the comparison's deliberate differences.
    D(Deliberate),
    /// The file is stored with CRLF line ends: the maildir files keep them (IMAP serves CRLF
    /// either way, so clients see the same bytes).
    CrlfKept,
}

use Deliberate::*;
use Why::*;

const DIFFERENCES: &[(&str, &[Why])] = &[
    ("email-folder/testmbox.dos", &[CrlfKept]),
    ("mbox-messageparser/mailarc-1-dos.txt", &[CrlfKept]),
    (
        "patchwork/0018-git-pull-request-crlf-newlines.mbox",
        &[CrlfKept],
    ),
    ("perl-mail-box/mbox.win", &[CrlfKept]),
    ("py4e-sakai/mbox.txt", &[CrlfKept]),
    ("sisimai/dos/lhost-ezweb-01.eml", &[CrlfKept]),
    ("sisimai/mbox-0", &[CrlfKept]),
    ("sisimai/size-1", &[D(WhitespaceOnly)]),
    ("thunderbird/mailformed_subject.eml", &[CrlfKept]),
];

/// The real files, by path relative to the corpus (as `uw_check.py` picks them).
fn corpus() -> Vec<(String, PathBuf)> {
    let root = common::real_corpus();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if !name.ends_with(".md") && !name.ends_with(".jsonl") {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, path));
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 169,
        "the real corpus is incomplete: {}",
        out.len()
    );
    out
}

/// The scanner's quirks of each message, by message offset.
fn quirks(data: &[u8]) -> (u8, BTreeMap<u64, u8>) {
    let mut all = 0;
    let mut by = BTreeMap::new();
    if let Ok(msgs) = scan_all(data, Unquote::None) {
        for m in msgs {
            all |= m.cclient;
            by.insert(m.from_line.end, m.cclient);
        }
    }
    (all, by)
}

/// mboxfs's reading of a file, the way `materialize` reads it (`mbox::index_path`, then each
/// message's served bytes), checked against the `pread` reading the mount uses.
fn mboxfs_reading(path: &Path) -> Result<MfReading, String> {
    let mut opts = IndexOptions {
        tz: jiff::tz::TimeZone::UTC,
        unquote: Unquote::None,
        derived_uidvalidity: uw::DERIVED,
        mode: ReadMode::Map,
    };
    let (index, _) = mbox::index_path(path, &opts).map_err(|e| e.to_string())?;
    opts.mode = ReadMode::Pread;
    let (pread, _) = mbox::index_path(path, &opts).unwrap();
    assert_eq!(index.messages, pread.messages, "{}", path.display());
    let data = std::fs::read(path).unwrap();
    let (all, by) = quirks(&data);
    let reading = uw::reading(&index, &data, all, &by);
    let (file, _) = mbox::open(path).unwrap();
    for (m, r) in index.messages.iter().zip(&reading.msgs) {
        assert_eq!(mbox::served_bytes(&file, &index, m).unwrap(), r.raw);
    }
    Ok(reading)
}

/// Checks every file with `read` (mboxfs's reading of a file by its path in the corpus), and
/// the listed differences both ways. Returns the messages compared.
fn check_corpus(read: impl Fn(&str, &Path) -> Result<MfReading, String>) -> usize {
    let work = tempfile::Builder::new()
        .prefix("mboxfs-oracle")
        .tempdir()
        .unwrap();
    let listed: BTreeMap<&str, &[Why]> = DIFFERENCES.iter().copied().collect();
    let mut seen: BTreeSet<(String, Why)> = BTreeSet::new();
    let mut failures = Vec::new();
    let mut messages = 0;
    let mut refused = 0;
    for (rel, path) in corpus() {
        let data = std::fs::read(&path).unwrap();
        // A file of UW's other stores (the corpus has an MMDF one) against c-client's driver for
        // it, with the file's mtime (MMDF dates a message without From_ line with it).
        let uw = match mbox::sniff(&data[..data.len().min(2048)]) {
            Ok(Store::Mbx | Store::Mmdf) => uw::uw_read_with(
                &data,
                work.path(),
                Duration::from_secs(120),
                "UTC",
                true,
                Some(std::fs::metadata(&path).unwrap().modified().unwrap()),
            ),
            _ => uw::uw_read(&data, work.path(), Duration::from_secs(120)),
        };
        let mf = read(&rel, &path);
        let c = uw::compare(&data, &uw, &mf);
        for p in &c.problems {
            failures.push(format!("{rel}: {p}"));
        }
        let why = listed.get(rel.as_str()).copied().unwrap_or(&[]);
        for d in &c.deliberate {
            seen.insert((rel.clone(), D(*d)));
            if !why.contains(&D(*d)) {
                failures.push(format!("{rel}: {d:?}, not listed"));
            }
        }
        if let Ok(mf) = &mf {
            if mf
                .msgs
                .iter()
                .any(|m| m.raw.windows(2).any(|w| w == b"\r\n"))
            {
                seen.insert((rel.clone(), CrlfKept));
                if !why.contains(&CrlfKept) {
                    failures.push(format!("{rel}: stored with CRLF, not listed"));
                }
            }
        }
        messages += c.messages;
        refused += usize::from(matches!(uw, UwReading::Refused(_)));
    }
    for (path, whys) in DIFFERENCES {
        for w in *whys {
            if !seen.contains(&(path.to_string(), *w)) {
                failures.push(format!("{path}: listed difference {w:?} no longer occurs"));
            }
        }
    }
    assert!(messages > 3800, "only {messages} messages compared");
    assert!(refused > 30, "c-client refused only {refused} files");
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    messages
}

#[test]
fn every_real_file_reads_as_c_client_reads_it() {
    let n = check_corpus(|_, path| mboxfs_reading(path));
    eprintln!("{n} messages compared with c-client");
}

/// The same through the built binary: `materialize` writes each real file as one user's INBOX,
/// and the maildirs are compared with c-client (file bytes, flags and `new/`, keywords through
/// `dovecot-keywords`, mtime, UIDs and UIDVALIDITY through `dovecot-uidlist`, `W=`).
#[test]
fn materialize_writes_what_c_client_served() {
    let files = corpus();
    let host = tempfile::Builder::new()
        .prefix("mboxfs-oracle-host")
        .tempdir()
        .unwrap();
    let spool = host.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::create_dir_all(host.path().join("home")).unwrap();
    let mut users = String::new();
    for (i, (_, path)) in files.iter().enumerate() {
        let copy = spool.join(format!("u{i:03}"));
        std::fs::copy(path, &copy).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_modified(std::fs::metadata(path).unwrap().modified().unwrap())
            .unwrap();
        users += &format!("u{i:03}\n");
    }
    std::fs::write(host.path().join("userlist"), users).unwrap();
    std::fs::write(host.path().join("folderlist"), "").unwrap();
    let dest = host.path().join("dest");
    let out = common::mboxfs()
        .arg("materialize")
        .arg(&dest)
        .arg(format!("--inbox={}/%u", spool.display()))
        .arg(format!("--home={}/home/%u", host.path().display()))
        .arg(format!("--userlist={}/userlist", host.path().display()))
        .arg(format!("--folderlist={}/folderlist", host.path().display()))
        .args(["--timezone", "UTC", "--trust-owners"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let failed = err.matches("FAILED").count();
    assert!(
        (30..60).contains(&failed),
        "{failed} files failed (those c-client refuses):\n{err}"
    );
    let index_of: BTreeMap<String, usize> = files
        .iter()
        .enumerate()
        .map(|(i, (rel, _))| (rel.clone(), i))
        .collect();
    check_corpus(|rel, path| {
        let root = dest.join(format!("u{:03}", index_of[rel]));
        maildir_reading(&root, path)
    });
}

/// What a materialized maildir holds, in the comparison's shape.
fn maildir_reading(root: &Path, source: &Path) -> Result<MfReading, String> {
    use std::os::unix::fs::MetadataExt;
    let uidlist = std::fs::read_to_string(root.join("dovecot-uidlist"))
        .map_err(|e| format!("no dovecot-uidlist ({e}): refused"))?;
    let header = uidlist.lines().next().unwrap_or_default();
    let field = |c: char| -> u32 {
        header
            .split(' ')
            .find_map(|f| f.strip_prefix(c).and_then(|v| v.parse().ok()))
            .unwrap()
    };
    let keywords: BTreeMap<char, String> = std::fs::read_to_string(root.join("dovecot-keywords"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (n, name) = l.split_once(' ')?;
            let n: u8 = n.parse().ok()?;
            Some(((b'a' + n) as char, name.to_string()))
        })
        .collect();
    let data = std::fs::read(source).unwrap();
    let (all, by) = quirks(&data);
    // The messages' offsets, in UID order, to find each one's quirks.
    let (index, _) = mbox::index_path(
        source,
        &IndexOptions {
            tz: jiff::tz::TimeZone::UTC,
            unquote: Unquote::None,
            derived_uidvalidity: uw::DERIVED,
            mode: ReadMode::Map,
        },
    )
    .unwrap();
    let mut msgs = Vec::new();
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let (_, uid) = mboxfs::model::parse_message_name(name.as_bytes()).unwrap();
            let (base, letters) = name.split_once(":2,").unwrap_or((&name, ""));
            let mut flags: String = "SRFTD"
                .chars()
                .filter(|c| {
                    letters.contains(match c {
                        'S' => 'S',
                        'R' => 'R',
                        'F' => 'F',
                        'T' => 'T',
                        _ => 'D',
                    })
                })
                .collect();
            if sub == "new" {
                flags.push('N');
            }
            let mut kw: Vec<String> = letters
                .chars()
                .filter(|c| c.is_ascii_lowercase())
                .map(|c| keywords[&c].clone())
                .collect();
            kw.sort();
            let vsize = base
                .split(',')
                .find_map(|f| f.strip_prefix("W=").and_then(|v| v.parse().ok()));
            let raw = std::fs::read(e.path()).unwrap();
            let offset = index.by_uid(uid).map_or(0, |m| m.offset);
            msgs.push(uw::MfMsg {
                uid,
                flags,
                keywords: kw,
                internaldate: e.metadata().unwrap().mtime(),
                vsize,
                text: uw::crlf(&raw),
                raw,
                quirks: by.get(&offset).copied().unwrap_or(0),
            });
        }
    }
    msgs.sort_by_key(|m| m.uid);
    Ok(MfReading {
        msgs,
        uidvalidity: field('V'),
        source: index.uidvalidity_source,
        uidnext: field('N'),
        notes: index.notes.clone(),
        quirks: all,
    })
}

/// The one deliberate difference the corpus cannot show under `TZ=UTC`: a From_ line date
/// without a zone is read with the offset in force on that date (mboxfs) rather than the one in
/// force on the day the mailbox is opened (c-client). Everything else agrees.
#[test]
fn local_dates_take_the_offset_of_their_own_day() {
    let zone = "America/New_York";
    let data = b"From a Wed Jan  8 12:00:00 2003\nS: winter\n\nx\n\n\
                 From a Tue Jul  8 12:00:00 2003\nS: summer\n\ny\n";
    let work = tempfile::tempdir().unwrap();
    let UwReading::Ok { msgs, .. } =
        uw::uw_read_tz(data, work.path(), Duration::from_secs(60), zone)
    else {
        panic!("c-client refuses the file")
    };
    let tz = jiff::tz::TimeZone::get(zone).unwrap();
    let now = tz.to_offset(jiff::Timestamp::now()).seconds();
    let mut ix = mboxfs::index::Indexer::new(tz.clone(), 1);
    for m in scan_all(data, Unquote::None).unwrap() {
        ix.push(&m);
    }
    let ix = ix.finish(data.len() as u64);
    for (u, m) in msgs.iter().zip(&ix.messages) {
        let wall = u.internaldate + i64::from(now);
        let then = tz
            .to_offset(jiff::Timestamp::from_second(m.time).unwrap())
            .seconds();
        // mboxfs: the wall-clock time at that date's offset; c-client: at today's.
        assert_eq!(m.time + i64::from(then), wall, "{u:?}");
        assert_eq!(u.internaldate - m.time, i64::from(then - now));
    }
    // Winter (-5) and summer (-4): one of the two differs from today's offset.
    let offsets: BTreeSet<i64> = msgs
        .iter()
        .zip(&ix.messages)
        .map(|(u, m)| u.internaldate - m.time)
        .collect();
    assert_eq!(offsets.len(), 2);
    assert_eq!(ix.uidvalidity_source, UidValiditySource::Derived);
}
