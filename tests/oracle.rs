//! The model against Dovecot 2.3.19's reading of 169 real mbox files
//! (`../shared/corpus/real/dovecot-oracle.jsonl`, made with `doveadm backup` under TZ=UTC).
//!
//! Every message of every file Dovecot accepted is compared: count, bytes (sha256), size,
//! flags, INTERNALDATE and UID. Where mboxfs deliberately differs, the file is listed in
//! [`DIFFERENCES`] with the reason; a listed difference that no longer occurs fails the test too,
//! so the list stays true.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mboxfs::index::{FolderIndex, UidValiditySource};
use mboxfs::mbox::{self, IndexOptions, ReadError, ReadMode};
use mboxfs::scan::Unquote;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Why mboxfs shows something other than the oracle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Why {
    /// The file has CRLF line ends. mboxfs serves the bytes as stored (as UW-IMAP and Dovecot's
    /// mbox reader do); the oracle's maildir copy was written with LF by Dovecot's save path.
    /// The bytes match once CRLF is read as LF.
    CrlfKept,
    /// c-client reads zone names it knows (EDT, MET...) and a numeric zone written before the
    /// year; Dovecot ignores both and takes local time. INTERNALDATE follows UW-IMAP.
    ZoneName,
    /// A From_ line with no blank line before it: c-client keeps the newline that ends the
    /// previous message's last line; Dovecot drops it. The bytes follow UW-IMAP.
    NoBlankLine,
    /// c-client reads every flag letter (R O D F A T) from both `Status` and `X-Status`;
    /// Dovecot reads only R and O from `Status`.
    StatusLetters,
    /// Oracle artifact: `doveadm backup` keyed messages by a header GUID, and where messages
    /// share one (no Message-ID) it copied one message's bytes, date and flags for all of them,
    /// or lost its alignment. Those entries are checked against Dovecot's own mbox reader
    /// instead (see `oracle_artifacts_match_dovecots_mbox_reader`).
    GuidArtifact,
    /// c-client does not start a message at these From_ lines (a zone name that is not three
    /// letters after the year: `WETDST`, `MEST`); Dovecot does. The messages follow UW-IMAP.
    FromLineRule,
}

use Why::*;

const DIFFERENCES: &[(&str, &[Why])] = &[
    ("email-folder/testmbox.dos", &[CrlfKept]),
    ("git-t5100/rfc2047-samples.mbox", &[GuidArtifact]),
    ("git-t5100/sample.mboxrd", &[GuidArtifact]),
    ("historic/f2c/mbox", &[ZoneName, GuidArtifact]),
    ("mailutils/mbox1", &[GuidArtifact]),
    ("mailutils/mbox2", &[GuidArtifact]),
    ("mailutils/mime.mbox", &[NoBlankLine]),
    ("mailutils/msg.mbox", &[NoBlankLine]),
    ("mailutils/relational.mbox", &[GuidArtifact]),
    ("mailutils/search.mbox", &[StatusLetters]),
    (
        "mbox-messageparser/mailarc-1-dos.txt",
        &[CrlfKept, NoBlankLine],
    ),
    ("mbox-messageparser/mailarc-1.txt", &[NoBlankLine]),
    ("mbox-messageparser/mailarc-3.txt", &[FromLineRule]),
    ("mbox-messageparser/mailseparators.txt", &[ZoneName]),
    (
        "mbox-messageparser/separators1.sep",
        &[ZoneName, NoBlankLine],
    ),
    ("nazario-phishing/phishing0.mbox", &[GuidArtifact]),
    ("neomutt-test-library/test.mbox", &[NoBlankLine]),
    (
        "patchwork/0018-git-pull-request-crlf-newlines.mbox",
        &[CrlfKept],
    ),
    ("perl-mail-box/mbox.cpy", &[ZoneName]),
    ("perl-mail-box/mbox.src", &[ZoneName]),
    ("perl-mail-box/mbox.win", &[ZoneName, CrlfKept]),
    ("py4e-sakai/mbox.txt", &[CrlfKept]),
    ("sisimai/dos/lhost-ezweb-01.eml", &[CrlfKept]),
    ("sisimai/mbox-0", &[CrlfKept, GuidArtifact]),
    ("stalwart-mail-parser/sample.mbox", &[GuidArtifact]),
    ("thunderbird/mailformed_subject.eml", &[CrlfKept]),
    ("thunderbird/mbox_mboxrd", &[GuidArtifact]),
    ("tika/simple.mbox", &[GuidArtifact]),
];

/// Files Dovecot refused that UW-IMAP's rules read, and why.
const READ_ALTHOUGH_DOVECOT_REFUSED: &[(&str, &str)] = &[
    (
        "git-t5100/sample.mbox",
        "c-client skips blank lines at the start of a file",
    ),
    (
        "mbox-messageparser/newlines_at_beginning.txt",
        "c-client skips blank lines at the start of a file",
    ),
    (
        "mbox-messageparser/malformed.txt",
        "c-client reads From_ lines from their end: a sender like `upi at papat.org` is fine",
    ),
    (
        "perceval/mbox_iso8859_encoding.mbox",
        "c-client reads From_ lines from their end",
    ),
    (
        "perceval/mbox_no_fields.mbox",
        "c-client reads From_ lines from their end",
    ),
    (
        "perceval/mbox_single.mbox",
        "c-client reads From_ lines from their end",
    ),
    (
        "perceval/mbox_unixfrom_encoding.mbox",
        "c-client reads From_ lines from their end",
    ),
    (
        "perceval/pipermail_2015_november.mbox",
        "c-client reads From_ lines from their end",
    ),
    (
        "perceval/pipermail_2016_april.mbox",
        "c-client reads From_ lines from their end",
    ),
    (
        "perceval/pipermail_2016_march.mbox",
        "c-client reads From_ lines from their end",
    ),
    (
        "sisimai/size-1",
        "only whitespace: an empty mailbox, as c-client sees it",
    ),
];

/// Files Dovecot read that UW-IMAP could not open: their first line is not a c-client From_ line.
const REFUSED_ALTHOUGH_DOVECOT_READ: &[(&str, &str)] = &[
    (
        "cpython/mailbox_01.mbox",
        "text after the year (`2022 extra info`)",
    ),
    ("email-folder/mboxcl3", "an RFC 2822 date in the From_ line"),
];

struct Oracle {
    path: String,
    value: Value,
}

fn oracle() -> Vec<Oracle> {
    let text = std::fs::read_to_string(common::real_corpus().join("dovecot-oracle.jsonl"))
        .expect("the oracle file");
    text.lines()
        .map(|l| {
            let value: Value = serde_json::from_str(l).unwrap();
            Oracle {
                path: value["path"].as_str().unwrap().to_string(),
                value,
            }
        })
        .filter(|o| o.path != "dovecot-oracle.jsonl")
        .collect()
}

fn options() -> IndexOptions {
    IndexOptions {
        tz: jiff::tz::TimeZone::UTC,
        unquote: Unquote::None,
        derived_uidvalidity: 1,
        mode: ReadMode::Map,
    }
}

fn model(path: &Path) -> Result<(FolderIndex, Vec<Vec<u8>>), ReadError> {
    let (index, _) = mbox::index_path(path, &options())?;
    let (file, _) = mbox::open(path)?;
    let bodies = index
        .messages
        .iter()
        .map(|m| mbox::served_bytes(&file, &index, m).unwrap())
        .collect();
    Ok((index, bodies))
}

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn crlf_to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if !(b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

/// The byte variants a message may have in the oracle, given the file's listed differences.
fn variants(bytes: &[u8], why: &[Why]) -> Vec<Vec<u8>> {
    let mut out = vec![bytes.to_vec()];
    if why.contains(&CrlfKept) {
        out.push(crlf_to_lf(bytes));
    }
    if why.contains(&NoBlankLine) {
        for v in out.clone() {
            if let Some(shorter) = v.strip_suffix(b"\n") {
                out.push(shorter.to_vec());
            }
        }
    }
    out
}

/// One message as mboxfs shows it (from the model, or from files `materialize` wrote).
struct Got {
    uid: u32,
    flags: String,
    time: i64,
    bytes: Vec<u8>,
}

/// Compares every accepted file's messages with the oracle. `shown` gives a file's messages,
/// or `None` when mboxfs refused the file.
fn compare_with_oracle(shown: impl Fn(&Oracle) -> Option<(Vec<Got>, Option<u32>)>) {
    let listed: BTreeMap<&str, &[Why]> = DIFFERENCES.iter().copied().collect();
    let mut seen: BTreeSet<(String, Why)> = BTreeSet::new();
    let mut failures = Vec::new();
    let mut messages = 0;
    for o in oracle().iter().filter(|o| o.value.get("error").is_none()) {
        let why = listed.get(o.path.as_str()).copied().unwrap_or(&[]);
        let Some((got, uidvalidity)) = shown(o) else {
            if !REFUSED_ALTHOUGH_DOVECOT_READ
                .iter()
                .any(|(p, _)| *p == o.path)
            {
                failures.push(format!("{}: refused, but Dovecot read it", o.path));
            }
            continue;
        };
        let want = o.value["list"].as_array().unwrap();
        if want.len() != got.len() {
            if why.contains(&FromLineRule) {
                seen.insert((o.path.clone(), FromLineRule));
            } else if why.contains(&GuidArtifact) {
                seen.insert((o.path.clone(), GuidArtifact));
            } else {
                failures.push(format!(
                    "{}: {} messages, Dovecot {}",
                    o.path,
                    got.len(),
                    want.len()
                ));
            }
            continue;
        }
        if let Some(v) = uidvalidity {
            if o.value["uidvalidity"].as_u64() != Some(u64::from(v)) {
                failures.push(format!(
                    "{}: UIDVALIDITY {v} vs {}",
                    o.path, o.value["uidvalidity"]
                ));
            }
        }
        for (i, (w, m)) in want.iter().zip(&got).enumerate() {
            messages += 1;
            let body = &m.bytes;
            let wsha = w["sha256"].as_str().unwrap();
            if why.contains(&GuidArtifact) && !variants(body, why).iter().any(|v| sha(v) == wsha) {
                // Checked against Dovecot's mbox reader in the live test.
                seen.insert((o.path.clone(), GuidArtifact));
                continue;
            }
            let exact = sha(body) == wsha;
            let var = variants(body, why).iter().any(|v| sha(v) == wsha);
            if !exact && var {
                let what = if why.contains(&CrlfKept) && sha(&crlf_to_lf(body)) == wsha {
                    CrlfKept
                } else {
                    NoBlankLine
                };
                seen.insert((o.path.clone(), what));
                if why.contains(&CrlfKept) && why.contains(&NoBlankLine) {
                    seen.insert((o.path.clone(), NoBlankLine));
                }
            }
            if !(exact || var) {
                failures.push(format!(
                    "{} #{i}: bytes differ ({} vs {})",
                    o.path,
                    body.len(),
                    w["size"]
                ));
            }
            let mut miss = |what: Why, ok: bool, text: String| {
                if ok {
                } else if why.contains(&what) {
                    seen.insert((o.path.clone(), what));
                } else {
                    failures.push(format!("{} #{i}: {text}", o.path));
                }
            };
            miss(
                ZoneName,
                w["internaldate"].as_i64() == Some(m.time),
                format!("INTERNALDATE {} vs {}", m.time, w["internaldate"]),
            );
            miss(
                StatusLetters,
                w["flags"].as_str() == Some(&m.flags),
                format!("flags {:?} vs {}", m.flags, w["flags"]),
            );
            if w["uid"].as_u64() != Some(u64::from(m.uid)) {
                failures.push(format!("{} #{i}: UID {} vs {}", o.path, m.uid, w["uid"]));
            }
        }
    }
    for (path, whys) in DIFFERENCES {
        for w in *whys {
            if !seen.contains(&(path.to_string(), *w)) {
                failures.push(format!("{path}: listed difference {w:?} no longer occurs"));
            }
        }
    }
    assert!(messages > 3000, "only {messages} messages compared");
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn oracle_matches_the_model_but_for_the_listed_differences() {
    compare_with_oracle(|o| {
        let (index, bodies) = model(&common::real_corpus().join(&o.path)).ok()?;
        let uidvalidity =
            (index.uidvalidity_source != UidValiditySource::Derived).then_some(index.uidvalidity);
        let got = index
            .messages
            .iter()
            .zip(bodies)
            .map(|(m, bytes)| Got {
                uid: m.uid,
                flags: m.maildir_flags(),
                time: m.time,
                bytes,
            })
            .collect();
        Some((got, uidvalidity))
    });
}

#[test]
fn oracle_matches_the_files_materialize_writes() {
    use std::os::unix::fs::MetadataExt;
    // Each file Dovecot accepted becomes one user's INBOX.
    let host = tempfile::tempdir().unwrap();
    let spool = host.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::create_dir_all(host.path().join("home")).unwrap();
    let files: Vec<Oracle> = oracle()
        .into_iter()
        .filter(|o| o.value.get("error").is_none())
        .collect();
    let mut users = String::new();
    for (i, o) in files.iter().enumerate() {
        std::fs::copy(
            common::real_corpus().join(&o.path),
            spool.join(format!("u{i:03}")),
        )
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
    // Only the files UW-IMAP could not open fail.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("FAILED").count(),
        REFUSED_ALTHOUGH_DOVECOT_READ.len(),
        "{err}"
    );
    compare_with_oracle(|o| {
        let i = files.iter().position(|f| f.path == o.path).unwrap();
        let root = dest.join(format!("u{i:03}"));
        let uidlist = std::fs::read_to_string(root.join("dovecot-uidlist")).ok()?;
        let mut got = Vec::new();
        for sub in ["cur", "new"] {
            for e in std::fs::read_dir(root.join(sub)).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let (_, uid) = mboxfs::model::parse_message_name(name.as_bytes()).unwrap();
                let flags = name.split_once(":2,").map_or("", |(_, f)| f).to_string();
                let time = e.metadata().unwrap().mtime();
                got.push(Got {
                    uid,
                    flags,
                    time,
                    bytes: std::fs::read(e.path()).unwrap(),
                });
            }
        }
        got.sort_by_key(|g| g.uid);
        if got.is_empty()
            && uidlist.lines().nth(1).is_none_or(|l| l.is_empty())
            && o.value["messages"] != 0
        {
            return None;
        }
        let v: u32 = uidlist
            .split(' ')
            .nth(1)?
            .trim_start_matches('V')
            .parse()
            .ok()?;
        let (index, _) = model(&common::real_corpus().join(&o.path)).ok()?;
        let header_uidvalidity =
            (index.uidvalidity_source != UidValiditySource::Derived).then_some(v);
        Some((got, header_uidvalidity))
    });
}

#[test]
fn files_dovecot_refused_are_refused_with_a_reason_or_read_by_c_clients_rules() {
    let mut failures = Vec::new();
    for o in oracle().iter().filter(|o| o.value.get("error").is_some()) {
        let path = common::real_corpus().join(&o.path);
        let read_anyway = READ_ALTHOUGH_DOVECOT_REFUSED
            .iter()
            .any(|(p, _)| *p == o.path);
        match (model(&path), read_anyway) {
            (Ok(_), true) => {}
            (Ok((ix, _)), false) => failures.push(format!(
                "{}: read ({} messages), not listed",
                o.path,
                ix.messages.len()
            )),
            (Err(e), false) => {
                let reason = e.to_string();
                if reason.len() < 10 {
                    failures.push(format!(
                        "{}: refused without a clear reason: {reason:?}",
                        o.path
                    ));
                }
            }
            (Err(e), true) => {
                failures.push(format!("{}: listed as read, but refused: {e}", o.path))
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One message as Dovecot's mbox reader shows it.
#[derive(Debug)]
struct Live {
    uid: u32,
    flags: String,
    time: i64,
    size: u64,
}

/// Reads an mbox with Dovecot's own mbox driver (`doveadm fetch`, in-memory index, on a copy:
/// Dovecot writes X-UID headers into the files it reads).
fn dovecot_reads(path: &Path) -> Vec<Live> {
    let dir = common::scratch_dir_for("nobody");
    let inbox = dir.path().join("inbox");
    std::fs::copy(path, &inbox).unwrap();
    std::fs::create_dir(dir.path().join("mail")).unwrap();
    common::chown_tree(dir.path(), "nobody");
    let conf = dir.path().join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "base_dir = {d}/run\nlog_path = {d}/dovecot.log\nssl = no\n\
             mail_location = mbox:{d}/mail:INBOX={d}/inbox:INDEX=MEMORY\n\
             namespace inbox {{\n inbox = yes\n separator = /\n prefix =\n}}\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "env"])
        .arg(format!("HOME={}", dir.path().display()))
        .args(["USER=oracle", "TZ=UTC", "doveadm", "-f", "tab", "-c"])
        .arg(&conf)
        .args([
            "fetch",
            "uid flags date.received size.physical",
            "mailbox",
            "INBOX",
        ])
        .output()
        .expect("doveadm (scripts/test.sh installs dovecot-imapd)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let civil = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", f[2]).unwrap();
            let time = jiff::tz::TimeZone::UTC
                .to_timestamp(civil)
                .unwrap()
                .as_second();
            Live {
                uid: f[0].parse().unwrap(),
                flags: imap_flags_to_maildir(f[1]),
                time,
                size: f[3].parse().unwrap(),
            }
        })
        .collect()
}

fn imap_flags_to_maildir(flags: &str) -> String {
    let mut letters: Vec<char> = flags
        .split_whitespace()
        .filter_map(|f| match f {
            "\\Draft" => Some('D'),
            "\\Flagged" => Some('F'),
            "\\Answered" => Some('R'),
            "\\Seen" => Some('S'),
            "\\Deleted" => Some('T'),
            _ => None,
        })
        .collect();
    letters.sort();
    letters.into_iter().collect()
}

/// CRLF pairs in the header block, its blank line included.
fn header_crs(body: &[u8]) -> u64 {
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(body.len(), |i| i + 4);
    body[..end].windows(2).filter(|w| w == b"\r\n").count() as u64
}

#[test]
fn oracle_artifacts_match_dovecots_mbox_reader() {
    common::require_root_and_tools(&["doveadm", "setpriv"]);
    let mut failures = Vec::new();
    let mut compared = 0;
    for (path, whys) in DIFFERENCES
        .iter()
        .filter(|(_, w)| w.contains(&GuidArtifact))
    {
        let full: PathBuf = common::real_corpus().join(path);
        let (index, bodies) = model(&full).unwrap();
        let live = dovecot_reads(&full);
        if live.len() != index.messages.len() {
            failures.push(format!(
                "{path}: {} messages, Dovecot's mbox reader {}",
                index.messages.len(),
                live.len()
            ));
            continue;
        }
        let last = index.messages.len().saturating_sub(1);
        for (i, ((m, l), body)) in index.messages.iter().zip(&live).zip(&bodies).enumerate() {
            compared += 1;
            // Dovecot cuts the last byte of a file that lacks a final newline (and then logs
            // "Cached message size smaller than expected"); mboxfs keeps it.
            let cut_last_byte =
                i == last && !body.ends_with(b"\n") && l.size + 1 == body.len() as u64;
            // For CRLF files Dovecot counts header lines with LF ends in its physical size.
            let size = if whys.contains(&CrlfKept) {
                body.len() as u64 - header_crs(body)
            } else {
                body.len() as u64
            };
            // At the end of a CRLF file Dovecot's physical size still counts the CR of the final
            // line end, which its maildir copy (the oracle) does not hold.
            let final_cr = i == last && whys.contains(&CrlfKept) && l.size == size + 1;
            if l.uid != m.uid
                || l.flags != m.maildir_flags()
                || (l.size != size && !cut_last_byte && !final_cr)
            {
                failures.push(format!(
                    "{path} #{i}: ours uid {} flags {:?} size {}, Dovecot {l:?}",
                    m.uid,
                    m.maildir_flags(),
                    body.len()
                ));
            }
            if l.time != m.time && !whys.contains(&ZoneName) {
                failures.push(format!(
                    "{path} #{i}: INTERNALDATE {} vs Dovecot {}",
                    m.time, l.time
                ));
            }
        }
    }
    assert!(compared > 400, "only {compared} messages compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
