//! UW-IMAP's other stores, mbx and MMDF, against c-client itself (2007f, `uwdump -a`: every
//! driver of a stock UW-IMAP).
//!
//! - The real corpus and a mkcorpus host, converted to both stores by c-client
//!   (`../shared/tools/uw/uwconvert.c`, built here), are read by mboxfs in process and compared
//!   message by message (bytes, flags, keywords, INTERNALDATE, UID, UIDVALIDITY, UIDNEXT); then
//!   once more through the built binary, by `uw_check.py --drivers uw`, and the host by `plan`,
//!   `materialize` and `verify`.
//! - Generated mbx and MMDF files made of the hard cases are compared the same way.
//! - Damaged mbx files are refused with c-client's reason, naming the file.
//! - Through the mount, a stock Dovecot serves an mbx inbox and an MMDF folder with c-client's
//!   UIDs, and follows what c-client itself writes into them (`tests/uw/uwmodify.c`, built here):
//!   a flag change, an append, an expunge, with the same UIDVALIDITY.
//!
//! Deliberate differences here (besides those of the mbox oracle): an mbx message with bare LFs
//! is served with CRLF (c-client served the bare LFs, which IMAP does not allow; Dovecot serves
//! CRLF), and an mbx header whose UIDVALIDITY is 0 gets the derived one.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::uw::{self, Deliberate, MfReading, UwReading};
use mboxfs::mbox::{self, IndexOptions, ReadMode, Store};
use mboxfs::scan::Unquote;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

fn uwconvert() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| uw::build_c(&common::shared().join("tools/uw/uwconvert.c"), "uwconvert"))
}

fn uwmodify() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        uw::build_c(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/uw/uwmodify.c"),
            "uwmodify",
        )
    })
}

/// `data` (an mbox) converted to `store` (`mbx`, `mmdf`) by c-client; `None` when c-client
/// cannot open it.
fn convert(data: &[u8], store: &str, work: &Path) -> Option<Vec<u8>> {
    let dir = tempfile::Builder::new()
        .prefix("conv")
        .tempdir_in(work)
        .unwrap();
    std::fs::write(dir.path().join("src"), data).unwrap();
    let out = std::process::Command::new(uwconvert())
        .arg(store)
        .arg(dir.path().join("src"))
        .arg(dir.path().join("dest"))
        .env("TZ", "UTC")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| std::fs::read(dir.path().join("dest")).unwrap())
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A file's modification time a few years back (MMDF dates messages without From_ line with it).
fn some_mtime() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000_000)
}

/// mboxfs's reading of `data` stored in a file with modification time `mtime`, the way
/// `materialize` reads it (`mbox::index_path` over a memory map, checked against the `pread`
/// reading of the mount), with each message's served bytes read back from the file.
fn mf_reading(data: &[u8], mtime: SystemTime, work: &Path) -> Result<MfReading, String> {
    let dir = tempfile::Builder::new()
        .prefix("mf")
        .tempdir_in(work)
        .unwrap();
    let path = dir.path().join("folder");
    std::fs::write(&path, data).unwrap();
    common::set_mtime(&path, mtime);
    let mut opts = IndexOptions {
        tz: jiff::tz::TimeZone::UTC,
        unquote: Unquote::None,
        derived_uidvalidity: uw::DERIVED,
        mode: ReadMode::Map,
    };
    let (index, _) = mbox::index_path(&path, &opts).map_err(|e| e.to_string())?;
    opts.mode = ReadMode::Pread;
    let (pread, _) = mbox::index_path(&path, &opts).unwrap();
    assert_eq!(index.messages, pread.messages);
    let mut quirks = BTreeMap::new();
    let mut all = 0;
    let scanned = match index.store {
        Store::Mmdf => mboxfs::mmdf::scan_all(data, secs(mtime)).unwrap(),
        Store::Mbox => mboxfs::scan::scan_all(data, Unquote::None).unwrap_or_default(),
        Store::Mbx => Vec::new(),
    };
    for m in scanned {
        all |= m.cclient;
        quirks.insert(m.from_line.end, m.cclient);
    }
    let reading = uw::reading(&index, data, all, &quirks);
    let (file, _) = mbox::open(&path).unwrap();
    for (m, r) in index.messages.iter().zip(&reading.msgs) {
        assert_eq!(mbox::served_bytes(&file, &index, m).unwrap(), r.raw);
    }
    Ok(reading)
}

/// c-client's reading with every driver, as the comparison takes it: a file only its
/// catch-all `phile` driver opens is one it could not open as a mailbox; it invented the
/// UIDVALIDITY when it says so (or gives 0, which IMAP does not allow); and an mbx message's
/// bare LFs are CRLF, as any IMAP server over a maildir serves them.
fn uw_reading(data: &[u8], mtime: SystemTime, work: &Path, timeout: u64) -> UwReading {
    let mut r = uw::uw_read_with(
        data,
        work,
        Duration::from_secs(timeout),
        "UTC",
        true,
        Some(mtime),
    );
    if let UwReading::Ok {
        invented,
        log,
        driver,
        msgs,
        uidvalidity,
        ..
    } = &mut r
    {
        if driver == "phile" {
            return UwReading::Refused("only c-client's phile driver opens it".into());
        }
        *invented = *uidvalidity == 0
            || log.iter().any(|l| {
                l.contains("Assigning new unique identifiers") || l.contains("rebuilding UIDs")
            });
        if driver == "mbx" {
            for m in msgs {
                m.text = uw::crlf(&m.text);
                m.rfc822_size = m.text.len() as u64;
                // Keywords are one in any letter case (IMAP's rule, and mboxfs's).
                let mut seen: Vec<String> = Vec::new();
                m.keywords.retain(|k| {
                    let new = !seen.iter().any(|s| s.eq_ignore_ascii_case(k));
                    seen.push(k.clone());
                    new
                });
            }
        }
    }
    r
}

/// Compares c-client's and mboxfs's readings of one file; also whether c-client refused it.
fn check(data: &[u8], mtime: SystemTime, work: &Path, timeout: u64) -> (uw::Comparison, bool) {
    let theirs = uw_reading(data, mtime, work, timeout);
    let ours = mf_reading(data, mtime, work);
    let mut c = uw::compare(data, &theirs, &ours);
    if !c.problems.is_empty() {
        c.problems.push(format!(
            "c-client: {theirs:?}\nmboxfs: {:?}",
            ours.map(|r| (r.uidvalidity, r.source, r.uidnext, r.notes))
        ));
    }
    (c, matches!(theirs, UwReading::Refused(_)))
}

/// The real files, as `uw_check.py` picks them.
fn real_corpus() -> Vec<PathBuf> {
    let root = common::real_corpus();
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if !name.ends_with(".md") && !name.ends_with(".jsonl") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    assert!(out.len() >= 169, "the real corpus is incomplete");
    out
}

/// Runs `uw_check.py --drivers uw` on `paths` with the built binary; returns its summary line
/// after checking that every message matched and nothing was refused.
fn uw_check(paths: &[&Path], work: &Path) -> String {
    let out = std::process::Command::new("python3")
        .arg(common::shared().join("tools/uw/uw_check.py"))
        .args(["--drivers", "uw", "--quiet", "--mboxfs"])
        .arg(env!("CARGO_BIN_EXE_mboxfs"))
        .arg("--uwdump")
        .arg(uw::uwdump())
        .arg("--work")
        .arg(work)
        .args(paths)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text
        .lines()
        .find(|l| l.contains(" messages match c-client"))
        .unwrap_or_else(|| panic!("no summary:\n{text}"))
        .to_string();
    let n: Vec<usize> = last
        .split(' ')
        .take(3)
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(n.len() == 2 && n[0] == n[1] && n[0] > 0, "{text}");
    assert!(text.contains("mboxfs refuses 0 files"), "{text}");
    last
}

#[test]
fn conversions_of_the_real_corpus_read_as_c_client_reads_them() {
    let started = std::time::Instant::now();
    let work = tempfile::Builder::new()
        .prefix("mboxfs-stores")
        .tempdir()
        .unwrap();
    let conv = work.path().join("converted");
    let mut failures = Vec::new();
    let mut messages: BTreeMap<&str, usize> = BTreeMap::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for (i, path) in real_corpus().iter().enumerate() {
        let data = std::fs::read(path).unwrap();
        for store in ["mbx", "mmdf"] {
            let Some(converted) = convert(&data, store, work.path()) else {
                continue;
            };
            let (c, _) = check(&converted, some_mtime(), work.path(), 60);
            for p in &c.problems {
                failures.push(format!("{} as {store}: {p}", path.display()));
            }
            if !c.deliberate.is_empty() {
                failures.push(format!(
                    "{} as {store}: differs on purpose? {:?}",
                    path.display(),
                    c.deliberate
                ));
            }
            *messages.entry(store).or_default() += c.messages;
            let dir = conv.join(store);
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("f{i:03}"));
            std::fs::write(&file, &converted).unwrap();
            files.push(file);
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        messages.values().all(|&n| n > 3800) && messages.len() == 2,
        "{messages:?}"
    );
    eprintln!("in process: {messages:?} messages of the real corpus's conversions match c-client");
    // Once more through the built binary, each file materialized as an inbox.
    for store in ["mbx", "mmdf"] {
        let last = uw_check(&[&conv.join(store)], &work.path().join("uwcheck"));
        eprintln!("uw_check.py --drivers uw, real corpus as {store}: {last}");
    }
    eprintln!("in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn conversions_of_a_mkcorpus_host_read_as_c_client_reads_them() {
    common::require_root_and_tools(&["python3"]);
    let started = std::time::Instant::now();
    let host = common::Host::make(&[
        "--users",
        "4",
        "--folders",
        "3",
        "--messages",
        "25",
        "--seed",
        "14",
    ]);
    let work = tempfile::Builder::new()
        .prefix("mboxfs-stores")
        .tempdir()
        .unwrap();
    // Every source file, converted in place: the first two users' to mbx, the others' to MMDF.
    let users = host.users();
    let mut sources: Vec<(PathBuf, &str)> = Vec::new();
    for (k, user) in users.iter().enumerate() {
        let store = if k < 2 { "mbx" } else { "mmdf" };
        sources.push((host.inbox(user), store));
    }
    for line in std::fs::read_to_string(host.path().join("folderlist"))
        .unwrap()
        .lines()
    {
        let (user, folder) = line.split_once('/').unwrap();
        let k = users.iter().position(|u| u == user).unwrap();
        let store = if k < 2 { "mbx" } else { "mmdf" };
        sources.push((host.path().join("home").join(user).join(folder), store));
    }
    let mut failures = Vec::new();
    let mut messages = 0;
    let minute_ago = SystemTime::now() - Duration::from_secs(60);
    let checked = work.path().join("checked");
    std::fs::create_dir_all(&checked).unwrap();
    for (i, (path, store)) in sources.iter().enumerate() {
        let converted = convert(&std::fs::read(path).unwrap(), store, work.path()).unwrap();
        let (c, _) = check(&converted, minute_ago, work.path(), 60);
        failures.extend(
            c.problems
                .iter()
                .map(|p| format!("{} as {store}: {p}", path.display())),
        );
        messages += c.messages;
        std::fs::write(checked.join(format!("f{i:02}.{store}")), &converted).unwrap();
        std::fs::write(path, &converted).unwrap();
        common::set_mtime(path, minute_ago);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(messages, host.manifest().len());
    let last = uw_check(&[&checked], &work.path().join("uwcheck"));
    eprintln!("uw_check.py --drivers uw, a mkcorpus host as mbx and MMDF: {last}");

    // The whole host through the binary: plan names each store; materialize and verify agree.
    let plan = common::plan_json(&host.source_args(), &[]);
    assert_eq!(plan["totals"]["errors"], 0, "{plan:#}");
    assert_eq!(plan["totals"]["messages"], host.manifest().len());
    for (k, u) in plan["users"].as_array().unwrap().iter().enumerate() {
        let want = if k < 2 { "mbx" } else { "mmdf" };
        for f in u["folders"].as_array().unwrap() {
            if !f["source"].is_null() {
                assert_eq!(f["store"], want, "{f:#}");
                if want == "mbx" {
                    assert_eq!(f["uidvalidity_source"], "mbx-header", "{f:#}");
                }
            }
        }
    }
    let text = common::mboxfs()
        .arg("plan")
        .args(host.source_args())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(" (mbx) -> ") && text.contains(" (MMDF) -> ") && text.contains("mbx header"),
        "{text}"
    );
    let dest = work.path().join("dest");
    for cmd in ["materialize", "verify"] {
        let out = common::run(cmd, &dest, &host.source_args(), &[]);
        assert!(out.status.success(), "{cmd}: {}", common::text(&out));
    }
    eprintln!("in {:.1} s", started.elapsed().as_secs_f64());
}

/// One choice among byte strings.
fn pick(options: &[&'static [u8]]) -> BoxedStrategy<Vec<u8>> {
    prop::sample::select(options.to_vec())
        .prop_map(<[u8]>::to_vec)
        .boxed()
}

const SEP: &[u8] = b"\x01\x01\x01\x01\n";

/// A line of an MMDF file, the hard cases included.
fn mmdf_line() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => pick(&[b"Subject: s\n", b"body\n", b"x y\n", b"\n", b"\n", b"\r\n", b"To: z\r\n"]),
        4 => pick(&[SEP]),
        3 => pick(&[
            b"From a Wed Dec  2 05:53:22 1992\n",
            b"From b Thu Dec  3 05:53:22 1992 -0700\n",
            b"From c Wed Dec  2 05:53 PST 1992\n",
            b"From a Wed Dec  2 05:53:22 1992\r\n",
            b"From nobody\n",
            b"From x Wed Foo  2 24:1a:cc 1992\n",
        ]),
        4 => pick(&[
            b"Status: RO\n", b"Status: R\n", b"X-Status: DFAT\n", b"X-Keywords: Junk Work\n",
            b"X-UID: 3\n", b"X-UID: 12\n", b"X-UID: 2\n", b"X-IMAPbase: 5 10 Junk Work\n",
            b"X-IMAP: 7 20 Junk\n", b"status: R\n", b"X-STATUS: F\n", b" cont\n",
        ]),
        2 => pick(&[b"a\x01\x01\x01\x01\n", b"\x01\x01\x01\x01\x01\n", b"\x01\x01\x01\x01\r\n"]),
        2 => pick(&[b"X: a\rb\n", b"bo\rdy\n", b"Sub\0ject: x\n", b"\0\n", b"x\ry\r\r\n"]),
    ]
    .boxed()
}

/// An MMDF file. A line that ends with the separator (which c-client cuts there) comes only at
/// the very end, after an ordinary line: after such a line c-client reads on from its read
/// buffer, not from the file (it reloaded the buffer at the separator, and writes a line feed
/// into it), so what it makes of anything after it depends on its buffering. mboxfs cuts the
/// message there too, and reads the rest as it is (see `src/mmdf.rs`).
fn mmdf_file() -> BoxedStrategy<Vec<u8>> {
    (
        prop::collection::vec(mmdf_line(), 0..24),
        prop_oneof![
            3 => prop::sample::select(vec![b"".as_slice(), SEP, SEP, b"\n"]).prop_map(<[u8]>::to_vec),
            1 => pick(&[b"tail", b"end\r", b"end\r\x01\x01\x01\x01\n", b"X: y"]),
            1 => pick(&[
                b"body\nhello\x01\x01\x01\x01\n",
                b"body\nStatus: RO\x01\x01\x01\x01\n",
                b"body\nx\x01\x01\x01\x01\x01\x01\n",
            ]),
        ],
    )
        .prop_map(|(lines, end)| [SEP.to_vec(), lines.concat(), end].concat())
        .boxed()
}

/// An mbx file: header and messages, mostly well formed.
fn mbx_file() -> BoxedStrategy<Vec<u8>> {
    let header = (
        prop::sample::select(vec![0x1234_5678u32, 0x1234_5678, 0x1234_5678, 0]),
        prop::sample::select(vec![0u32, 5, 9, 12, 0xffff_ffff]),
        prop::sample::select(vec![
            vec![],
            vec![b"Junk".as_slice(), b"$Label1"],
            vec![b"a", b"b", b"Junk", b"x\0y", b"z"],
            vec![b"one", &[b'x'; 51], b"three"],
            vec![b"Junk", b"junk"],
        ]),
    )
        .prop_map(|(v, l, k)| mboxfs::mbx::build::header(v, l, &k));
    let text = pick(&[
        b"Subject: a\r\n\r\nbody\r\n",
        b"Subject: b\r\nStatus: RO\r\n\r\nx\r\n",
        b"S: c\n\nbare\n",
        b"S: d\r\n\r\nbo\0dy\rx\r\n",
        b"X",
        b"From a Wed Dec  2 05:53:22 1992\r\n\r\nz\r\n",
    ]);
    let date = pick(&[
        b" 2-Dec-1992 05:53:22 +0000",
        b" 2-Dec-1992 05:53:22 +0000",
        b" 2-Dec-1992 05:53:22 +0000",
        b" 2-Dec-1992 05:53:22 +0000",
        b"31-Jan-2004 23:00:00 -0700",
        b"31-Jan-2004 23:00:00 -0700",
        b" 2-Dec-1992 05:53:22",
        b" 2-Dec-1992 05:53:22 EST",
        b"32-Foo-1992 05:53:22 +0000",
    ]);
    let message = (
        date,
        prop::sample::select(vec![0u32, 1, 3, 0b1_0101, 0xffff_ffff]),
        prop::sample::select(vec![
            0x10u16, 0x10, 0x11, 0x3f, 0x0, 0x2e, 0x8010, 0x8000, 0x8011,
        ]),
        prop::sample::select(vec![0u32, 0, 1, 2, 3, 4, 6, 9, 12, 0xffff_ffff]),
        text,
        prop::sample::select([vec![0u8; 40], vec![1, 2, 3, 4, 5]].concat()),
    )
        .prop_map(|(d, k, f, u, t, damage)| {
            let d = String::from_utf8(d).unwrap();
            let m = mboxfs::mbx::build::message(&d, k, f, u, &t);
            let line = m.iter().position(|&b| b == b'\r').unwrap();
            let (l, rest) = m.split_at(line);
            let l = String::from_utf8(l.to_vec()).unwrap();
            let n = t.len();
            let l = match damage {
                1 => l.replace(&format!(",{n};"), &format!(",{n}x;")),
                2 => l.replace(&format!(",{n};"), ",abc;"),
                3 => l.replace(&format!(",{n};"), &format!(",{};", n + 1)),
                4 => {
                    let k = l.rfind('-').unwrap();
                    format!("{}+{}", &l[..k], &l[k + 1..])
                }
                5 => l.replace(&format!(",{n};"), ",0;"),
                _ => l,
            };
            [l.into_bytes(), rest.to_vec()].concat()
        });
    (header, prop::collection::vec(message, 0..7), 0..12u8)
        .prop_map(|(h, msgs, cut)| {
            let mut f = [h, msgs.concat()].concat();
            if cut == 0 && f.len() > 2048 {
                f.pop();
            }
            f
        })
        .boxed()
}

#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    messages: usize,
    refused: usize,
    deliberate: BTreeMap<Deliberate, usize>,
}

fn differential(name: &str, strategy: BoxedStrategy<Vec<u8>>, cases: u32) -> Tally {
    uw::uwdump();
    let work = tempfile::Builder::new()
        .prefix("mboxfs-stores-diff")
        .tempdir()
        .unwrap();
    let tally = Mutex::new(Tally::default());
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(0x0057_07e5),
        failure_persistence: None,
        max_shrink_iters: 1000,
        ..Config::default()
    };
    let result = TestRunner::new(config).run(&strategy, |data| {
        let (c, refused) = check(&data, some_mtime(), work.path(), 20);
        if !c.problems.is_empty() {
            return Err(TestCaseError::fail(c.problems.join("\n")));
        }
        let mut t = tally.lock().unwrap();
        t.cases += 1;
        t.messages += c.messages;
        t.refused += usize::from(refused);
        for d in c.deliberate {
            *t.deliberate.entry(d).or_default() += 1;
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, data)) => panic!(
            "{name}: mboxfs and c-client differ (shrunk input below):\n{why}\nshrunk input: \
             b\"{}\"",
            uw::escaped(&data)
        ),
        Err(e) => panic!("{e}"),
    }
    let t = tally.into_inner().unwrap();
    eprintln!("{name}: {t:?}");
    t
}

#[test]
fn generated_mmdf_files_read_as_c_client_reads_them() {
    let t = differential("MMDF", mmdf_file(), 1000);
    assert!(t.messages > 300, "{t:?}");
    for d in [Deliberate::PastEof, Deliberate::NulInName] {
        assert!(t.deliberate.contains_key(&d), "{d:?} never showed: {t:?}");
    }
}

#[test]
fn generated_mbx_files_read_as_c_client_reads_them() {
    let t = differential("mbx", mbx_file(), 1000);
    assert!(t.messages > 300, "{t:?}");
    assert!(t.refused > 20 && t.refused < t.cases / 2, "{t:?}");
    assert!(
        t.deliberate.contains_key(&Deliberate::Beyond32Bits),
        "{t:?}"
    );
}

/// Runs `uwmodify PATH ARGS...` (c-client writing into a mailbox as UW-IMAP did).
fn modify(path: &Path, args: &[&str]) {
    let out = std::process::Command::new(uwmodify())
        .arg(path)
        .args(args)
        .env("TZ", "UTC")
        .env("HOME", path.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "uwmodify {} {args:?}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A folder as IMAP shows it: UIDVALIDITY, and each UID with its flags and keywords (\Recent
/// left out).
type ImapFolder = (u64, BTreeMap<u64, Vec<String>>);

/// c-client's view of a mailbox file, in IMAP's terms.
fn cclient_view(path: &Path, work: &Path) -> ImapFolder {
    let data = std::fs::read(path).unwrap();
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let UwReading::Ok {
        msgs, uidvalidity, ..
    } = uw::uw_read_with(
        &data,
        work,
        Duration::from_secs(30),
        "UTC",
        true,
        Some(mtime),
    )
    else {
        panic!("c-client cannot read {}", path.display())
    };
    let flags = |letters: &str, keywords: &[String]| {
        let mut out: Vec<String> = letters
            .chars()
            .filter_map(|c| match c {
                'S' => Some("\\Seen"),
                'R' => Some("\\Answered"),
                'F' => Some("\\Flagged"),
                'T' => Some("\\Deleted"),
                'D' => Some("\\Draft"),
                _ => None,
            })
            .map(str::to_string)
            .chain(keywords.iter().cloned())
            .collect();
        out.sort();
        out
    };
    (
        uidvalidity,
        msgs.iter()
            .map(|m| (m.uid, flags(&m.flags, &m.keywords)))
            .collect(),
    )
}

/// What a Dovecot client sees of `folders` (IMAP names) of `user`, one session.
fn dovecot_view(port: u16, user: &str, folders: &[&str]) -> Vec<ImapFolder> {
    let script = r#"
import imaplib, re, sys
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
m.login(sys.argv[2], 'pw')
for box in sys.argv[3:]:
    typ, data = m.select('"%s"' % box, readonly=True)
    assert typ == 'OK', (box, data)
    uv = m.response('UIDVALIDITY')[1][0].decode()
    line = [uv]
    if int(data[0]) > 0:
        typ, data = m.fetch('1:*', '(UID FLAGS)')
        for d in data:
            d = d.decode()
            uid = re.search(r'UID (\d+)', d).group(1)
            flags = re.search(r'FLAGS \(([^)]*)\)', d).group(1).split()
            line.append(uid + '=' + ','.join(sorted(f for f in flags if f != '\\Recent')))
    print(' '.join(line))
m.logout()
"#;
    let port = port.to_string();
    let args = [&[port.as_str(), user], folders].concat();
    common::python_with(script, &args)
        .lines()
        .map(|l| {
            let mut words = l.split(' ');
            let uv = words.next().unwrap().parse().unwrap();
            let msgs = words
                .map(|w| {
                    let (uid, flags) = w.split_once('=').unwrap();
                    let flags = flags
                        .split(',')
                        .filter(|f| !f.is_empty())
                        .map(str::to_string)
                        .collect();
                    (uid.parse().unwrap(), flags)
                })
                .collect();
            (uv, msgs)
        })
        .collect()
}

/// Waits until Dovecot shows what c-client shows of each folder (`(IMAP name, file)`).
fn until_dovecot_shows_cclients(
    port: u16,
    user: &str,
    folders: &[(&str, &Path)],
    work: &Path,
) -> Vec<ImapFolder> {
    let want: Vec<ImapFolder> = folders.iter().map(|(_, p)| cclient_view(p, work)).collect();
    let names: Vec<&str> = folders.iter().map(|(n, _)| *n).collect();
    let got = std::cell::RefCell::new(Vec::new());
    common::wait_until(
        Duration::from_secs(15),
        Duration::from_millis(300),
        || {
            *got.borrow_mut() = dovecot_view(port, user, &names);
            *got.borrow() == want
        },
        || format!("Dovecot shows {:?}\nc-client shows {want:?}", got.borrow()),
    );
    got.into_inner()
}

#[test]
fn dovecot_serves_mbx_and_mmdf_with_c_clients_uids_and_follows_its_changes() {
    common::require_root_and_tools(&["dovecot", "python3"]);
    let host = common::Host::make(&[
        "--users",
        "1",
        "--folders",
        "1",
        "--messages",
        "8",
        "--seed",
        "31",
    ]);
    let work = tempfile::Builder::new()
        .prefix("mboxfs-stores")
        .tempdir()
        .unwrap();
    let user = host.users()[0].clone();
    let inbox = host.inbox(&user);
    let list = std::fs::read_to_string(host.path().join("folderlist")).unwrap();
    let name = list
        .lines()
        .next()
        .unwrap()
        .split_once('/')
        .unwrap()
        .1
        .to_string();
    let folder = host.path().join("home").join(&user).join(&name);
    // UW-IMAP's files: converted by c-client, then opened read-write once by it (which gives
    // every message its UID and takes \Recent off).
    let minute_ago = SystemTime::now() - Duration::from_secs(60);
    for (path, store) in [(&inbox, "mbx"), (&folder, "mmdf")] {
        let converted = convert(&std::fs::read(path).unwrap(), store, work.path()).unwrap();
        std::fs::write(path, converted).unwrap();
        modify(path, &["open"]);
        common::set_mtime(path, minute_ago);
    }
    let imap_name = mboxfs::names::mutf7_encode(&name);
    let boxes = [
        ("INBOX", inbox.as_path()),
        (imap_name.as_str(), folder.as_path()),
    ];
    let m = common::Mount::start(
        &host.source_args(),
        &["--owner", "nobody", "--recheck-ms", "200"],
    );
    let dovecot =
        common::Dovecot::for_nobody(&format!("maildir:{}/%u", m.mountpoint.display()), "");
    let first = until_dovecot_shows_cclients(dovecot.port, &user, &boxes, work.path());
    let uids: Vec<u64> = first[0].1.keys().copied().collect();
    let n = uids.len();
    assert!(n >= 3 && first[1].1.len() >= 3, "{first:?}");

    // c-client sets flags in the mbx (in place; a new keyword also in its header) and in the
    // MMDF file (a rewrite).
    std::thread::sleep(Duration::from_millis(1100));
    modify(
        &inbox,
        &["setflag", &uids[1].to_string(), "\\Flagged \\Answered Junk"],
    );
    let mmdf_uid = first[1].1.keys().nth(2).unwrap().to_string();
    modify(&folder, &["setflag", &mmdf_uid, "\\Flagged"]);
    let now = until_dovecot_shows_cclients(dovecot.port, &user, &boxes, work.path());
    assert_eq!(
        (now[0].0, now[1].0),
        (first[0].0, first[1].0),
        "UIDVALIDITY changed"
    );
    for f in ["\\Flagged", "Junk"] {
        assert!(now[0].1[&uids[1]].contains(&f.to_string()), "{now:?}");
    }
    assert_ne!(now, first);

    // c-client appends to the mbx, then expunges from it (compacting the file).
    std::thread::sleep(Duration::from_millis(1100));
    let message = work.path().join("message");
    std::fs::write(&message, "Subject: appended\r\n\r\nhello\r\n").unwrap();
    modify(&inbox, &["append", message.to_str().unwrap(), "\\Seen"]);
    let now = until_dovecot_shows_cclients(dovecot.port, &user, &boxes, work.path());
    assert_eq!(now[0].1.len(), n + 1);
    std::thread::sleep(Duration::from_millis(1100));
    modify(&inbox, &["expunge", &uids[0].to_string()]);
    let now = until_dovecot_shows_cclients(dovecot.port, &user, &boxes, work.path());
    assert_eq!(now[0].0, first[0].0, "UIDVALIDITY changed");
    assert_eq!(now[0].1.len(), n);
    assert!(!now[0].1.contains_key(&uids[0]));
    assert!(
        uids[1..].iter().all(|u| now[0].1.contains_key(u)),
        "{now:?}"
    );
    let bad: Vec<String> = dovecot
        .complaints()
        .into_iter()
        .filter(|l| !l.contains("Warning:"))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let log = m.log();
    assert!(!log.contains("ERROR"), "{log}");
    eprintln!("{log}");
}

#[test]
fn damaged_mbx_files_are_refused_with_the_reason_and_the_file() {
    let dir = tempfile::Builder::new()
        .prefix("mboxfs-stores")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let date = " 2-Dec-1992 05:53:22 +0000";
    let good = {
        let mut f = mboxfs::mbx::build::header(7, 9, &[b"Junk"]);
        f.extend(mboxfs::mbx::build::message(
            date,
            1,
            0x11,
            3,
            b"Subject: a\r\n\r\nbody\r\n",
        ));
        f
    };
    let edit = |from: &str, to: &str| {
        String::from_utf8_lossy(&good)
            .replacen(from, to, 1)
            .into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("good", good.clone(), ""),
        (
            "truncated",
            good[..1500].to_vec(),
            "shorter than the 2048-byte header",
        ),
        (
            "pastend",
            good[..good.len() - 3].to_vec(),
            "past the end of the file",
        ),
        (
            "flags",
            edit(";00000001", ";0000000z"),
            "Unable to parse message flags",
        ),
        (
            "date",
            edit(" 2-Dec-", "32-Foo-"),
            "Unable to parse message date",
        ),
        (
            "uid",
            edit("-00000003", "-3"),
            "Unable to parse message UID",
        ),
        ("size", edit(",20;", ",0;"), "Unable to parse message size"),
    ];
    std::fs::create_dir_all(d.join("spool")).unwrap();
    let mut users = String::new();
    for (u, data, _) in &cases {
        std::fs::write(d.join("spool").join(u), data).unwrap();
        std::fs::create_dir_all(d.join("home").join(u)).unwrap();
        users += &format!("{u}\n");
    }
    // Found under a home too.
    std::fs::write(d.join("home/good/Saved"), &cases[3].1).unwrap();
    std::fs::write(d.join("userlist"), users).unwrap();
    let args = [
        format!("--inbox={}/spool/%u", d.display()),
        format!("--home={}/home/%u", d.display()),
        format!("--userlist={}/userlist", d.display()),
        "--discover".into(),
        "--trust-owners".into(),
        "--timezone=UTC".into(),
    ];
    let out = common::mboxfs()
        .arg("plan")
        .arg("--json")
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems: Vec<(String, String)> = plan["users"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|u| u["folders"].as_array().unwrap())
        .flat_map(|f| f["problems"].as_array().unwrap())
        .filter(|p| p["severity"] == "error")
        .map(|p| {
            (
                p["path"].as_str().unwrap_or_default().to_string(),
                p["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (u, _, why) in &cases[1..] {
        let file = d.join("spool").join(u).display().to_string();
        assert!(
            problems.iter().any(|(p, m)| *p == file && m.contains(why)),
            "{u}: no error naming {file} with {why:?}: {problems:#?}"
        );
    }
    let saved = d.join("home/good/Saved").display().to_string();
    assert!(
        problems
            .iter()
            .any(|(p, m)| *p == saved && m.contains("Unable to parse message flags")),
        "{problems:#?}"
    );
    assert_eq!(problems.len(), cases.len());
    // The good inbox is planned with its UIDs, and materialized; the others fail, named.
    let good_inbox = &plan["users"][0]["folders"][0];
    assert_eq!(
        (
            &good_inbox["store"],
            &good_inbox["messages"],
            &good_inbox["uidvalidity"],
            &good_inbox["uid_next"]
        ),
        (
            &serde_json::json!("mbx"),
            &serde_json::json!(1),
            &serde_json::json!(7),
            &serde_json::json!(10)
        )
    );
    let out = common::run("materialize", &d.join("dest"), &args, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for (u, _, why) in &cases[1..] {
        assert!(
            err.lines()
                .any(|l| l.contains("FAILED") && l.contains(&format!("/{u}")) && l.contains(why)),
            "{u}: {err}"
        );
    }
    let cur: Vec<_> = std::fs::read_dir(d.join("dest/good/cur"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cur.len(), 1);
    assert!(
        cur[0].contains(".V7U3.") && cur[0].ends_with(":2,Sa"),
        "{cur:?}"
    );
}

/// An MMDF message without From_ line is dated with the file's mtime, which moves with every
/// change of the file: the mount keeps its UID all the same (its file name follows the date).
#[test]
fn mmdf_messages_dated_by_the_file_keep_their_uids_in_the_mount() {
    common::require_root_and_tools(&[]);
    let host = common::HandHost::new(common::open_dir("mboxfs-stores"), "spool", &["alice"], "");
    let inbox = host.inbox("alice");
    let sep = "\x01\x01\x01\x01\n";
    std::fs::write(
        &inbox,
        format!(
            "{sep}X-IMAPbase: 5 10\nSubject: a\nStatus: RO\nX-UID: 3\n\nbody\n{sep}\
             {sep}Subject: b\nStatus: RO\nX-UID: 4\n\nb\n{sep}"
        ),
    )
    .unwrap();
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    common::set_mtime(&inbox, hour_ago);
    let args = host.source_args_with(&["--trust-owners"]);
    let m = common::Mount::start(&args, &["--recheck-ms", "100"]);
    let uidlist = m.mountpoint.join("alice/dovecot-uidlist");
    let read = || -> Vec<(u32, i64)> {
        std::fs::read_to_string(&uidlist)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let (uid, name) = l.split_once(" :").unwrap();
                (
                    uid.parse().unwrap(),
                    name.split('.').next().unwrap().parse().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        std::fs::read_to_string(&uidlist).unwrap().lines().next(),
        Some("3 V5 N11")
    );
    assert_eq!(read(), [(3, secs(hour_ago)), (4, secs(hour_ago))]);
    // Mail arrives: the file's mtime moves, and with it the first two messages' date.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&inbox)
        .unwrap();
    std::io::Write::write_all(&mut f, format!("{sep}Subject: c\n\nc\n{sep}").as_bytes()).unwrap();
    drop(f);
    let now = secs(std::fs::metadata(&inbox).unwrap().modified().unwrap());
    common::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || read().len() >= 3,
        || format!("{:?}", read()),
    );
    assert_eq!(read(), [(3, now), (4, now), (11, now)]);
    assert!(
        std::fs::read_to_string(&uidlist)
            .unwrap()
            .starts_with("3 V5 N12\n")
    );
}
