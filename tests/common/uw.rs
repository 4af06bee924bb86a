//! UW-IMAP's own reading of an mbox, the reference of mboxfs: c-client 2007f (Debian's
//! `libc-client2007e-dev`) through `../shared/tools/uw/uwdump.c`, built once into the target
//! directory. And mboxfs's reading of the same bytes (the scanner and the index, as `materialize`
//! and the mount serve them), in the same shape, with the comparison of the two.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mboxfs::index::{FolderIndex, Indexer, UidValiditySource};
use mboxfs::scan::{RawMessage, ScanError, Scanner, SliceHaystack, Unquote, flag, quirk};

/// `uwdump`, compiled from `../shared/tools/uw/uwdump.c` into the target directory (once, and
/// again when the source is newer). Fails clearly when `cc` or UW's library is missing.
pub fn uwdump() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_c(&super::shared().join("tools/uw/uwdump.c"), "uwdump"))
}

/// Compiles the C helper `src` against UW's c-client into the target directory as `name`, unless
/// it is there already and newer than its source; returns its path.
pub fn build_c(src: &Path, name: &str) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let fresh = || -> Option<bool> {
        let built = std::fs::metadata(&out).ok()?.modified().ok()?;
        let source = std::fs::metadata(src).ok()?.modified().ok()?;
        Some(built >= source)
    };
    if fresh() == Some(true) {
        return out;
    }
    assert!(
        Path::new("/usr/include/c-client/c-client.h").is_file(),
        "UW's c-client library is missing: apt-get install libc-client2007e-dev \
         (scripts/install-deps.sh installs it)"
    );
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let tmp = out.with_extension(format!("{}.tmp", std::process::id()));
    let run = std::process::Command::new("cc")
        .args([
            "-O2",
            "-Wall",
            "-Wno-pointer-sign",
            "-I/usr/include/c-client",
            "-o",
        ])
        .arg(&tmp)
        .arg(src)
        .arg("-lc-client")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run cc to build {name} ({e}): scripts/install-deps.sh installs gcc")
        });
    assert!(
        run.status.success(),
        "building {name} from {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// One message as c-client served it.
#[derive(Debug, Clone)]
pub struct UwMsg {
    pub uid: u64,
    /// uwdump's letters: S R F T D, then N for recent.
    pub flags: String,
    pub keywords: Vec<String>,
    pub internaldate: i64,
    pub date: String,
    pub rfc822_size: u64,
    /// BODY[] (CRLF).
    pub text: Vec<u8>,
}

/// What c-client made of a file.
#[derive(Debug, Clone)]
pub enum UwReading {
    Ok {
        msgs: Vec<UwMsg>,
        uidvalidity: u64,
        uidnext: u64,
        /// c-client made the UIDVALIDITY up when it opened the file.
        invented: bool,
        /// What c-client logged (`warn: ...`, `info: ...`).
        log: Vec<String>,
        /// The driver that read it (`unix`, `mbx`, `mmdf`, `phile`...).
        driver: String,
    },
    /// c-client would not open it ("not in valid mailbox format").
    Refused(String),
    /// c-client did not finish within the time allowed.
    Hangs,
    /// uwdump died.
    Crashes(String),
}

/// A JSON string from uwdump (bytes >= 0x7f escaped as `\u00XX`) back to bytes, shown lossily.
fn uw_string(v: &serde_json::Value) -> String {
    let bytes: Vec<u8> = v
        .as_str()
        .unwrap_or_default()
        .chars()
        .map(|c| c as u32 as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs uwdump on a copy of `data` in a fresh directory under `work`, with `TZ=UTC`.
pub fn uw_read(data: &[u8], work: &Path, timeout: Duration) -> UwReading {
    uw_read_tz(data, work, timeout, "UTC")
}

/// [`uw_read`] with the server's time zone `tz`.
pub fn uw_read_tz(data: &[u8], work: &Path, timeout: Duration, tz: &str) -> UwReading {
    uw_read_with(data, work, timeout, tz, false, None)
}

/// [`uw_read_tz`], with every driver of a stock UW-IMAP when `all_drivers` (`uwdump -a`: mbx,
/// MMDF, ...), else the mbox driver only; the copy's modification time is `mtime` when given.
pub fn uw_read_with(
    data: &[u8],
    work: &Path,
    timeout: Duration,
    tz: &str,
    all_drivers: bool,
    mtime: Option<std::time::SystemTime>,
) -> UwReading {
    let dir = tempfile::Builder::new()
        .prefix("uw")
        .tempdir_in(work)
        .unwrap();
    let file = dir.path().join("folder");
    std::fs::write(&file, data).unwrap();
    if let Some(t) = mtime {
        super::set_mtime(&file, t);
    }
    let out_path = dir.path().join("out");
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut child = std::process::Command::new(uwdump())
        .args(all_drivers.then_some("-a"))
        .arg(&file)
        .env("TZ", tz)
        .env("HOME", dir.path())
        .env("USER", "uwcheck")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("uwdump");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return UwReading::Hangs;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let t1 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = std::fs::read(&out_path).unwrap();
    let mut pos = 0;
    let mut msgs = Vec::new();
    let mut last = None;
    while pos < out.len() {
        let Some(nl) = out[pos..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let Ok(rec) = serde_json::from_slice::<serde_json::Value>(&out[pos..pos + nl]) else {
            break;
        };
        pos += nl + 1;
        if rec.get("msgno").is_some() {
            let len = rec["len"].as_u64().unwrap() as usize;
            let text = out[pos..(pos + len).min(out.len())].to_vec();
            pos += len + 1;
            msgs.push(UwMsg {
                uid: rec["uid"].as_u64().unwrap(),
                flags: rec["flags"].as_str().unwrap().to_string(),
                keywords: rec["keywords"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(uw_string)
                    .collect(),
                internaldate: rec["internaldate"].as_i64().unwrap(),
                date: rec["date"].as_str().unwrap_or_default().to_string(),
                rfc822_size: rec["rfc822_size"].as_u64().unwrap(),
                text,
            });
        } else {
            last = Some(rec);
        }
    }
    let Some(st) = last else {
        return UwReading::Crashes(format!("{status}"));
    };
    let log: Vec<String> = st["log"]
        .as_array()
        .map(|a| a.iter().map(uw_string).collect())
        .unwrap_or_default();
    if st["status"] != "ok" {
        if !status.success() && status.code() != Some(1) {
            return UwReading::Crashes(format!("{status}"));
        }
        return UwReading::Refused(uw_string(&st["error"]));
    }
    let uidvalidity = st["uidvalidity"].as_u64().unwrap();
    UwReading::Ok {
        invented: log
            .iter()
            .any(|l| l.contains("Assigning new unique identifiers"))
            || (t0.saturating_sub(2)..=t1 + 2).contains(&uidvalidity),
        msgs,
        uidvalidity,
        uidnext: st["uidnext"].as_u64().unwrap(),
        log,
        driver: st["driver"].as_str().unwrap_or_default().to_string(),
    }
}

/// One message as mboxfs serves it.
#[derive(Debug, Clone)]
pub struct MfMsg {
    pub uid: u32,
    /// In uwdump's letters.
    pub flags: String,
    pub keywords: Vec<String>,
    pub internaldate: i64,
    /// `W=`: the size as IMAP serves it.
    pub vsize: Option<u64>,
    /// The served bytes, LF made CRLF as Dovecot serves them.
    pub text: Vec<u8>,
    /// The served bytes as stored in the maildir file.
    pub raw: Vec<u8>,
    /// The scanner's [`quirk`] bits.
    pub quirks: u8,
}

/// What mboxfs made of a file.
#[derive(Debug, Clone)]
pub struct MfReading {
    pub msgs: Vec<MfMsg>,
    pub uidvalidity: u32,
    pub source: UidValiditySource,
    pub uidnext: u32,
    pub notes: Vec<String>,
    /// Quirk bits of every message, the pseudo message included.
    pub quirks: u8,
}

impl MfReading {
    /// mboxfs says that c-client loops forever or crashes on this folder.
    pub fn cclient_fails(&self) -> bool {
        self.quirks & (quirk::HANGS | quirk::CRASHES) != 0
            || self
                .notes
                .iter()
                .any(|n| n.contains("UW-IMAP could not open this folder"))
    }
}

/// The UIDVALIDITY mboxfs derives in these readings.
pub const DERIVED: u32 = 7;

/// Bare LFs made CRLF.
pub fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 16);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// c-client's flag letters for a message of the index.
pub fn uw_flags(flags: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (flag::SEEN, 'S'),
        (flag::ANSWERED, 'R'),
        (flag::FLAGGED, 'F'),
        (flag::DELETED, 'T'),
        (flag::DRAFT, 'D'),
    ] {
        if flags & bit != 0 {
            s.push(c);
        }
    }
    if flags & flag::OLD == 0 {
        s.push('N');
    }
    s
}

/// mboxfs's reading of an mbox held in memory: the scanner and the index, with `TZ=UTC`.
pub fn mf_read(data: &[u8]) -> Result<MfReading, String> {
    let mut hay = SliceHaystack(data);
    let mut scanner = Scanner::new(Unquote::None);
    let mut indexer = Indexer::new(jiff::tz::TimeZone::UTC, DERIVED);
    let mut raw = RawMessage::default();
    let mut quirks_by_offset = BTreeMap::new();
    let mut quirks = 0;
    loop {
        match scanner.next_message(&mut hay, &mut raw) {
            Ok(true) => {
                quirks |= raw.cclient;
                quirks_by_offset.insert(raw.from_line.end, raw.cclient);
                indexer.push(&raw);
            }
            Ok(false) => break,
            Err(ScanError::NotMbox(why)) => return Err(why),
            Err(ScanError::Io(e)) => panic!("I/O error on a slice: {e}"),
        }
    }
    let index = indexer.finish(data.len() as u64);
    Ok(reading(&index, data, quirks, &quirks_by_offset))
}

/// The reading of a finished index over `data`.
pub fn reading(
    index: &FolderIndex,
    data: &[u8],
    quirks: u8,
    quirks_by_offset: &BTreeMap<u64, u8>,
) -> MfReading {
    let msgs = index
        .messages
        .iter()
        .map(|m| {
            let mut raw = Vec::new();
            for r in index.segments(m) {
                raw.extend_from_slice(&data[r.start as usize..r.end as usize]);
            }
            let mut keywords: Vec<String> = (0..32)
                .filter(|i| m.keywords & (1 << i) != 0)
                .map(|i| index.keywords[i].clone())
                .collect();
            keywords.sort();
            MfMsg {
                uid: m.uid,
                flags: uw_flags(m.flags),
                keywords,
                internaldate: m.time,
                vsize: m.vsize(index),
                text: crlf(&raw),
                raw,
                quirks: quirks_by_offset.get(&m.offset).copied().unwrap_or(0),
            }
        })
        .collect();
    MfReading {
        msgs,
        uidvalidity: index.uidvalidity,
        source: index.uidvalidity_source,
        uidnext: index.uid_next,
        notes: index.notes.clone(),
        quirks,
    }
}

/// A difference mboxfs makes on purpose (see the README, "What right means").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Deliberate {
    /// A file of white space only: c-client refuses it, mboxfs reads an empty mailbox.
    WhitespaceOnly,
    /// c-client loops forever or crashes on this file (a bare CR or a NUL in a keyword list):
    /// mboxfs reads it, and says so.
    CclientFails,
    /// The file ends inside a header without a line feed: c-client read beyond the end of the
    /// file and served what its buffer held there (an extra LF, or leftovers of earlier lines).
    PastEof,
    /// A NUL ends a header name: c-client served a space there.
    NulInName,
    /// A bare CR made c-client's RFC822.SIZE disagree with its own BODY[]: mboxfs reports the
    /// true size.
    WrongSize,
    /// UIDs or a UIDVALIDITY beyond 32 bits (which IMAP cannot carry): mboxfs numbers the
    /// messages from 1 under its derived UIDVALIDITY.
    Beyond32Bits,
    /// More keywords than Maildir's 26 letters.
    KeywordsBeyond26,
}

/// The outcome of one comparison: the differences that are not deliberate, and the deliberate
/// ones that showed.
#[derive(Debug, Default)]
pub struct Comparison {
    pub problems: Vec<String>,
    pub deliberate: Vec<Deliberate>,
    pub messages: usize,
}

impl Comparison {
    fn deliberate(&mut self, d: Deliberate) {
        if !self.deliberate.contains(&d) {
            self.deliberate.push(d);
        }
    }
}

/// The warnings c-client logs, by the phrase mboxfs's notes repeat.
pub const WARNINGS: [&str; 6] = [
    "Discarding bogus continuation",
    "Discarding bogus ",
    "already has UID",
    " less than ",
    "Unable to parse internal date",
    "Calculated RFC822.SIZE",
];

fn count_warnings<'a>(lines: impl Iterator<Item = &'a String>) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for l in lines {
        // The first phrase that matches (a continuation is not also a bogus header).
        if let Some(w) = WARNINGS.iter().find(|w| l.contains(*w)) {
            *out.entry(*w).or_default() += 1;
        }
    }
    out
}

/// Compares c-client's reading of `data` with mboxfs's.
pub fn compare(data: &[u8], uw: &UwReading, mf: &Result<MfReading, String>) -> Comparison {
    let mut c = Comparison::default();
    let mf = match (uw, mf) {
        (UwReading::Hangs | UwReading::Crashes(_), Ok(mf)) => {
            if mf.cclient_fails() {
                c.deliberate(Deliberate::CclientFails);
            } else {
                c.problems.push(format!(
                    "c-client fails on it ({uw:?}), mboxfs does not say so"
                ));
            }
            return c;
        }
        (UwReading::Hangs | UwReading::Crashes(_), Err(e)) => {
            c.problems.push(format!(
                "c-client fails on it ({uw:?}), mboxfs refuses it: {e}"
            ));
            return c;
        }
        (UwReading::Refused(_), Err(_)) => return c,
        (UwReading::Refused(why), Ok(mf)) => {
            if data
                .iter()
                .all(|b| matches!(b, b'\n' | b'\r' | b' ' | b'\t'))
                && mf.msgs.is_empty()
            {
                c.deliberate(Deliberate::WhitespaceOnly);
            } else {
                c.problems.push(format!(
                    "c-client refuses it ({why}), mboxfs reads {} messages",
                    mf.msgs.len()
                ));
            }
            return c;
        }
        (UwReading::Ok { .. }, Err(e)) => {
            c.problems
                .push(format!("c-client reads it, mboxfs refuses it: {e}"));
            return c;
        }
        (UwReading::Ok { .. }, Ok(mf)) => mf,
    };
    let UwReading::Ok {
        msgs,
        uidvalidity,
        uidnext,
        invented,
        log,
        ..
    } = uw
    else {
        unreachable!()
    };
    if msgs.len() != mf.msgs.len() {
        c.problems.push(format!(
            "{} messages, c-client {}",
            mf.msgs.len(),
            msgs.len()
        ));
        return c;
    }
    let beyond = mf
        .notes
        .iter()
        .any(|n| n.contains("beyond what IMAP can carry"));
    if beyond {
        c.deliberate(Deliberate::Beyond32Bits);
    }
    for (i, (u, m)) in msgs.iter().zip(&mf.msgs).enumerate() {
        c.messages += 1;
        let n = i + 1;
        let want = &u.text;
        let got = &m.text;
        // c-client's bytes may hold a space for a NUL that ends a header name, and more bytes
        // when the file ends inside the header.
        let same_but_nuls = |a: &[u8], b: &[u8]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(g, w)| g == w || (*g == 0 && *w == b' '))
        };
        let nul = m.quirks & quirk::NUL_IN_NAME != 0;
        let lf = m.quirks & (quirk::PAST_EOF | quirk::CUT_LINE) != 0;
        // The cases where c-client may differ (whether or not it did here).
        if lf {
            c.deliberate(Deliberate::PastEof);
        }
        let matched = if got == want {
            true
        } else if nul && same_but_nuls(got, want) {
            c.deliberate(Deliberate::NulInName);
            true
        } else if lf
            && want.len() > got.len()
            && (want.starts_with(got) || (nul && same_but_nuls(got, &want[..got.len()])))
        {
            c.deliberate(Deliberate::PastEof);
            true
        } else {
            false
        };
        if !matched {
            c.problems.push(format!(
                "message {n}: bytes differ:\n  c-client {:?}\n  mboxfs   {:?}",
                String::from_utf8_lossy(&u.text),
                String::from_utf8_lossy(&m.text)
            ));
        }
        if u.flags != m.flags {
            c.problems.push(format!(
                "message {n}: flags {:?}, c-client {:?}",
                m.flags, u.flags
            ));
        }
        let mut uk = u.keywords.clone();
        uk.sort();
        if uk != m.keywords {
            let dropped = mf
                .notes
                .iter()
                .any(|n| n.contains("Maildir file names hold"));
            if dropped && m.keywords.iter().all(|k| uk.contains(k)) {
                c.deliberate(Deliberate::KeywordsBeyond26);
            } else {
                c.problems.push(format!(
                    "message {n}: keywords {:?}, c-client {uk:?}",
                    m.keywords
                ));
            }
        }
        if u.internaldate != m.internaldate {
            c.problems.push(format!(
                "message {n}: INTERNALDATE {}, c-client {} ({})",
                m.internaldate, u.internaldate, u.date
            ));
        }
        if u.uid != u64::from(m.uid) && !beyond {
            c.problems
                .push(format!("message {n}: UID {}, c-client {}", m.uid, u.uid));
        }
        let size = m.vsize.unwrap_or(u64::MAX);
        if size != m.text.len() as u64 {
            c.problems.push(format!(
                "message {n}: W={size} but its CRLF bytes are {}",
                m.text.len()
            ));
        }
        if u.rfc822_size != u.text.len() as u64 {
            if m.quirks & (quirk::SIZE_MISMATCH | quirk::PAST_EOF | quirk::CUT_LINE) != 0 {
                c.deliberate(Deliberate::WrongSize);
            } else {
                c.problems.push(format!(
                    "message {n}: c-client's RFC822.SIZE {} is not its BODY[] length {}, and \
                     mboxfs does not say so",
                    u.rfc822_size,
                    u.text.len()
                ));
            }
        }
    }
    if *invented {
        if !matches!(
            mf.source,
            UidValiditySource::Derived | UidValiditySource::Discarded
        ) {
            c.problems.push(format!(
                "c-client invents a UIDVALIDITY, mboxfs takes {} from the file ({:?})",
                mf.uidvalidity, mf.source
            ));
        }
    } else if !beyond && u64::from(mf.uidvalidity) != *uidvalidity {
        c.problems.push(format!(
            "UIDVALIDITY {} ({:?}), c-client {uidvalidity}",
            mf.uidvalidity, mf.source
        ));
    }
    if !beyond && u64::from(mf.uidnext) != *uidnext {
        c.problems
            .push(format!("UIDNEXT {}, c-client {uidnext}", mf.uidnext));
    }
    // Every warning c-client logged is in mboxfs's notes (which quote its phrases).
    let mut theirs = count_warnings(log.iter().filter(|l| l.starts_with("warn:")));
    let ours = count_warnings(mf.notes.iter());
    // Past the end of the file, c-client's size may be wrong (and it says so), or not.
    let size = "Calculated RFC822.SIZE";
    let extra = mf
        .msgs
        .iter()
        .filter(|m| m.quirks & (quirk::PAST_EOF | quirk::CUT_LINE) != 0)
        .count();
    let (t, o) = (
        theirs.get(size).copied().unwrap_or(0),
        ours.get(size).copied().unwrap_or(0),
    );
    if extra > 0 && t >= o && t <= o + extra {
        match ours.get(size) {
            Some(&n) => theirs.insert(size, n),
            None => theirs.remove(size),
        };
    }
    if theirs != ours && mf.notes.len() < 100 {
        c.problems.push(format!(
            "warnings: c-client {theirs:?}, mboxfs notes {ours:?}\n  c-client log: {log:?}\n  \
             mboxfs notes: {:?}",
            mf.notes
        ));
    }
    c
}

/// A string for a failure message: the input, escaped.
pub fn escaped(data: &[u8]) -> String {
    data.escape_ascii().to_string()
}
