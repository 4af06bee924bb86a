//! A client's cache is never lied to, at the sizes and in the ways real spools change: through a
//! real Dovecot on the mount, UIDVALIDITY never goes down and a (UIDVALIDITY, UID) pair never
//! names two different messages, across stalled deliveries, UW-IMAP rewrites and remounts. Also:
//! the mount holds no writer back for long, keeps few files open, and shows users, inboxes and
//! folders that appear after it started.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Dovecot, HandHost, Mount};

/// A host written by hand: inboxes in `var/spool/mail/<user>` (none yet), no folders.
fn hand_host(users: &[&str]) -> HandHost {
    let dir = tempfile::Builder::new()
        .prefix("mboxfs-cache")
        .tempdir()
        .unwrap();
    HandHost::new(dir, "var/spool/mail", users, "")
}

/// The source options for a host of [`hand_host`]'s.
fn args(spool: &HandHost) -> Vec<String> {
    spool.source_args_with(&["--trust-owners"])
}

/// A message as UW-IMAP stores it.
fn stored(k: u32, status: &str, uid: Option<u32>, base: Option<(u32, u32)>) -> String {
    let mut s = format!(
        "From sender{k}@example.org Mon Jan  5 10:{:02}:00 2004\n",
        k % 60
    );
    if let Some((v, last)) = base {
        s += &format!("X-IMAPbase: {v} {last:010}\n");
    }
    s += &format!("Subject: message {k}\nMessage-ID: <m{k}@example.org>\n");
    s += &format!("Status: {status}\n");
    if let Some(u) = uid {
        s += &format!("X-UID: {u}\n");
    }
    s += &format!("\n{}\n\n", body(k));
    s
}

fn body(k: u32) -> String {
    (0..(k % 5 + 2) * 10)
        .map(|i| format!("line {i} of message {k}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a client of the Dovecot on the mount sees: UIDVALIDITY and a hash of each UID's bytes.
fn observe(port: u16, user: &str) -> (u32, BTreeMap<u32, String>) {
    let script = format!(
        r#"
import imaplib, hashlib, re
m = imaplib.IMAP4('127.0.0.1', {port})
m.login('{user}', 'pw')
typ, data = m.select('INBOX', readonly=True)
uv = m.untagged_responses['UIDVALIDITY'][0].decode()
print('V', uv)
if int(data[0]) > 0:
    typ, data = m.fetch('1:*', '(UID BODY.PEEK[])')
    for part in data:
        if isinstance(part, tuple):
            uid = re.search(rb'UID (\d+)', part[0]).group(1).decode()
            print(uid, hashlib.sha256(part[1]).hexdigest())
m.logout()
"#
    );
    let text = common::python(&script);
    let mut lines = text.lines();
    let uv: u32 = lines.next().unwrap()[2..].parse().unwrap();
    let msgs = lines
        .map(|l| {
            let (u, h) = l.split_once(' ').unwrap();
            (u.parse().unwrap(), h.to_string())
        })
        .collect();
    (uv, msgs)
}

/// Every (UIDVALIDITY, UID) seen, with the bytes it named, and the UIDVALIDITY seen last.
#[derive(Default)]
struct Promise {
    named: BTreeMap<(u32, u32), String>,
    last_uv: u32,
    steps: Vec<String>,
}

impl Promise {
    fn check(&mut self, step: &str, (uv, msgs): (u32, BTreeMap<u32, String>)) {
        self.steps
            .push(format!("{step}: UIDVALIDITY {uv}, UIDs {:?}", msgs.keys()));
        assert!(
            uv >= self.last_uv,
            "{step}: UIDVALIDITY went down ({} -> {uv})\n{}",
            self.last_uv,
            self.steps.join("\n")
        );
        self.last_uv = uv;
        for (uid, h) in msgs {
            if let Some(before) = self.named.insert((uv, uid), h.clone()) {
                assert_eq!(
                    before,
                    h,
                    "{step}: ({uv}, {uid}) names other bytes than before\n{}",
                    self.steps.join("\n")
                );
            }
        }
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The whole file rewritten in place, as c-client does.
fn rewrite(path: &Path, text: &str) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(0).unwrap();
    (&f).write_all(text.as_bytes()).unwrap();
}

#[test]
fn uidvalidity_never_goes_down_and_no_uid_names_two_messages() {
    common::require_root_and_tools(&["dovecot", "python3"]);
    let spool = hand_host(&["u"]);
    let inbox = spool.inbox("u");
    let v = 1_000_000;
    // Messages 1 and 2 as UW-IMAP left them.
    let mut text = stored(1, "RO", Some(1), Some((v, 2))) + &stored(2, "RO", Some(2), None);
    std::fs::write(&inbox, &text).unwrap();
    let minute_ago = std::time::SystemTime::now() - Duration::from_secs(60);
    common::set_mtime(&inbox, minute_ago);
    let extra = ["--owner", "nobody", "--recheck-ms", "100"];
    let mut m = Mount::start(&args(&spool), &extra);
    let dovecot = Dovecot::for_nobody(&format!("maildir:{}/%u", m.mountpoint.display()), "");
    let mut p = Promise::default();
    p.check("start", observe(dovecot.port, "u"));

    let mut last_uid = 2;
    for round in 0..3 {
        let k = 3 + round;
        // A delivery stalls half-way, with no lock: after a second the view shows what is
        // there.
        let whole = stored(k, "O", None, None);
        let (half, rest) = whole.split_at(whole.len() / 2);
        append(&inbox, half);
        std::thread::sleep(Duration::from_millis(1600));
        p.check(
            &format!("round {round}: stalled"),
            observe(dovecot.port, "u"),
        );
        append(&inbox, rest);
        std::thread::sleep(Duration::from_millis(600));
        p.check(
            &format!("round {round}: delivered"),
            observe(dovecot.port, "u"),
        );
        // UW-IMAP rewrites the file: the new message gets the next UID of the file's own
        // numbering, flags change, X-IMAPbase moves on.
        last_uid += 1;
        text = String::new();
        for j in 1..=k {
            let base = (j == 1).then_some((v, last_uid));
            let status = if j == k { "RO" } else { "O" };
            text += &stored(j, status, Some(j), base);
        }
        rewrite(&inbox, &text);
        std::thread::sleep(Duration::from_millis(600));
        p.check(
            &format!("round {round}: rewritten"),
            observe(dovecot.port, "u"),
        );
        if round == 1 {
            m.remount(&args(&spool), &extra);
            p.check("remounted", observe(dovecot.port, "u"));
        }
    }
    // UW-IMAP gives up its UIDs: a lower UIDVALIDITY and new UIDs. The view keeps its own.
    text = String::new();
    for j in 1..=5u32 {
        text += &stored(j, "RO", Some(j + 10), (j == 1).then_some((v - 5, j + 14)));
    }
    rewrite(&inbox, &text);
    std::thread::sleep(Duration::from_millis(600));
    let lower = observe(dovecot.port, "u");
    assert_eq!(lower.0, p.last_uv, "the view keeps its UIDVALIDITY");
    p.check("lower UIDVALIDITY in the mbox", lower);
    // `plan` says so (from the state directory), and names what materialize writes.
    let out = common::mboxfs()
        .args(["plan", "--json", "--state-dir"])
        .arg(m.state.path())
        .args(args(&spool))
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let planned = &plan["users"][0]["folders"][0];
    assert_eq!(planned["served_uidvalidity"], p.last_uv, "{planned}");
    assert_eq!(planned["uidvalidity"], v - 5, "{planned}");
    assert!(
        planned["problems"]
            .to_string()
            .contains("the mount serves UIDVALIDITY")
    );
    // And a higher one is taken, with the mbox's UIDs.
    text = String::new();
    for j in 1..=5u32 {
        text += &stored(j, "RO", Some(j), (j == 1).then_some((v + 5, 5)));
    }
    rewrite(&inbox, &text);
    std::thread::sleep(Duration::from_millis(600));
    let higher = observe(dovecot.port, "u");
    assert_eq!(higher.0, v + 5);
    assert_eq!(
        higher.1.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    p.check("higher UIDVALIDITY in the mbox", higher);
    m.remount(&args(&spool), &extra);
    p.check("remounted again", observe(dovecot.port, "u"));
    eprintln!("{}", p.steps.join("\n"));

    let log = dovecot.log();
    for line in log.lines() {
        assert!(
            !line.contains("Expunged message reappeared"),
            "Dovecot: {line}"
        );
        if let Some(rest) = line.split("UIDVALIDITY changed (").nth(1) {
            let nums: Vec<u64> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .take(2)
                .map(|s| s.parse().unwrap())
                .collect();
            assert!(nums[1] > nums[0], "UIDVALIDITY went down: {line}");
        }
    }
}

/// Takes the locks a writer takes: UW-IMAP's flock and Postfix's fcntl, both waiting.
fn writer_lock(f: &std::fs::File) -> Duration {
    let t = Instant::now();
    // SAFETY: the descriptor is open; `fl` is a live, zero-initialised struct.
    #[allow(unsafe_code)]
    unsafe {
        assert_eq!(libc::flock(f.as_raw_fd(), libc::LOCK_EX), 0);
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        assert_eq!(libc::fcntl(f.as_raw_fd(), libc::F_SETLKW, &fl), 0);
    }
    t.elapsed()
}

#[test]
fn locked_deliveries_are_never_held_back_long() {
    common::require_root_and_tools(&[]);
    let spool = hand_host(&["u"]);
    let inbox = spool.inbox("u");
    let mut text = String::new();
    for k in 1..=200 {
        text += &stored(k, "RO", None, None);
    }
    std::fs::write(&inbox, &text).unwrap();
    let m = Mount::start(&args(&spool), &["--recheck-ms", "0"]);
    let root = m.mountpoint.join("u");
    // Readers that keep the mount looking at the mbox (each access re-checks it).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (root, stop) = (root.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for sub in ["new", "cur"] {
                        for e in std::fs::read_dir(root.join(sub))
                            .into_iter()
                            .flatten()
                            .flatten()
                        {
                            let _ = std::fs::metadata(e.path());
                        }
                    }
                    let _ = std::fs::read(root.join("dovecot-uidlist"));
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut waits = Vec::new();
    for k in 201..=240 {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&inbox)
            .unwrap();
        waits.push(writer_lock(&f));
        f.write_all(stored(k, "O", None, None).as_bytes()).unwrap();
        drop(f);
        std::thread::sleep(Duration::from_millis(25));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let worst = waits.iter().max().unwrap();
    eprintln!(
        "40 locked deliveries under {reads} reads of the mount: worst wait {worst:?}, median {:?}",
        {
            let mut w = waits.clone();
            w.sort();
            w[w.len() / 2]
        }
    );
    assert!(reads > 40, "the readers hardly ran ({reads})");
    assert!(
        *worst < Duration::from_millis(100),
        "a delivery waited {worst:?} for the mount"
    );
    // And every delivery is shown.
    std::thread::sleep(Duration::from_millis(300));
    let shown = ["new", "cur"]
        .iter()
        .map(|s| std::fs::read_dir(root.join(s)).unwrap().count())
        .sum::<usize>();
    assert_eq!(shown, 240);
}

#[test]
fn users_inboxes_and_folders_that_appear_later_are_shown() {
    common::require_root_and_tools(&[]);
    let spool = hand_host(&["u", "fresh"]);
    std::fs::write(spool.inbox("u"), stored(1, "RO", None, None)).unwrap();
    let m = Mount::start(&args(&spool), &["--recheck-ms", "100"]);
    let count = |user: &str, dir: &str| -> usize {
        ["new", "cur"]
            .iter()
            .map(|s| {
                std::fs::read_dir(m.mountpoint.join(user).join(dir).join(s))
                    .map_or(0, |d| d.count())
            })
            .sum()
    };
    let eventually = |what: &str, f: &dyn Fn() -> bool| {
        common::wait_until(
            Duration::from_secs(5),
            Duration::from_millis(100),
            f,
            || format!("{what} did not appear"),
        );
    };
    assert_eq!(count("fresh", ""), 0);
    // The first delivery to a user whose inbox did not exist.
    std::fs::write(
        spool.inbox("fresh"),
        stored(1, "O", None, None) + &stored(2, "O", None, None),
    )
    .unwrap();
    eventually("the new inbox's mail", &|| count("fresh", "") == 2);
    let uidlist = std::fs::read_to_string(m.mountpoint.join("fresh/dovecot-uidlist")).unwrap();
    assert!(uidlist.lines().count() == 3, "{uidlist}");
    // A user added to the list, and a folder added to the folder list.
    std::fs::create_dir_all(spool.path().join("home/late")).unwrap();
    std::fs::write(spool.inbox("late"), stored(7, "O", None, None)).unwrap();
    std::fs::write(
        spool.path().join("home/u/Archive"),
        stored(8, "RO", None, None),
    )
    .unwrap();
    std::fs::write(spool.path().join("userlist"), "u\nfresh\nlate\n").unwrap();
    std::fs::write(spool.path().join("folderlist"), "u/Archive\n").unwrap();
    eventually("the new user", &|| {
        std::fs::read_dir(&m.mountpoint)
            .unwrap()
            .flatten()
            .any(|e| e.file_name() == "late")
    });
    eventually("the new user's mail", &|| count("late", "") == 1);
    eventually("the new folder", &|| count("u", ".Archive") == 1);
    // A user taken off the list is no longer shown.
    std::fs::write(spool.path().join("userlist"), "u\nlate\n").unwrap();
    eventually("the removal", &|| {
        !std::fs::read_dir(&m.mountpoint)
            .unwrap()
            .flatten()
            .any(|e| e.file_name() == "fresh")
    });
}

#[test]
fn fifteen_hundred_folders_under_a_limit_of_1024_open_files() {
    common::require_root_and_tools(&["prlimit"]);
    let spool = hand_host(&["u"]);
    std::fs::write(spool.inbox("u"), stored(1, "RO", None, None)).unwrap();
    let home = spool.path().join("home/u");
    let mut list = String::new();
    const N: u32 = 1500;
    for k in 0..N {
        let name = format!("f{k:04}");
        std::fs::write(home.join(&name), stored(k, "RO", None, None)).unwrap();
        list += &format!("u/{name}\n");
    }
    std::fs::write(spool.path().join("folderlist"), list).unwrap();
    // A spool is not being written as it is mounted: no last message is held back as possibly
    // incomplete.
    let minute_ago = std::time::SystemTime::now() - Duration::from_secs(60);
    for k in 0..N {
        common::set_mtime(&home.join(format!("f{k:04}")), minute_ago);
    }
    let m = Mount::start_under(&["prlimit", "--nofile=1024:1024", "--"], &args(&spool), &[]);
    let root = m.mountpoint.join("u");
    // Twice: the second pass finds most files closed again (the cache keeps a bounded number).
    for pass in 0..2 {
        let mut served = 0;
        for k in 0..N {
            let cur = root.join(format!(".f{k:04}")).join("cur");
            let entries: Vec<_> = std::fs::read_dir(&cur)
                .unwrap_or_else(|e| panic!("pass {pass}: {}: {e}", cur.display()))
                .flatten()
                .collect();
            assert_eq!(entries.len(), 1, "pass {pass}: {} is empty", cur.display());
            let data = std::fs::read(entries[0].path()).unwrap();
            assert!(
                String::from_utf8_lossy(&data).ends_with(&format!("{}\n", body(k))),
                "pass {pass}: folder {k}: wrong bytes"
            );
            served += 1;
        }
        assert_eq!(served, N);
    }
    let fds = std::fs::read_dir(format!("/proc/{}/fd", m.pid()))
        .unwrap()
        .count();
    assert!(fds < 1024, "{fds} files open");
    assert!(!m.log().contains("Too many open files"), "{}", m.log());
}

/// Every message file of every folder under a user's root, by folder directory.
fn tree_names(root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![String::new()];
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('.') {
            dirs.push(n);
        }
    }
    for d in dirs {
        let mut names = Vec::new();
        for sub in ["cur", "new"] {
            for e in std::fs::read_dir(root.join(&d).join(sub))
                .unwrap()
                .flatten()
            {
                names.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
        names.sort();
        out.insert(d, names);
    }
    out
}

#[test]
fn every_folder_keeps_its_names_and_uids_across_remounts() {
    common::require_root_and_tools(&[]);
    let host = common::Host::make(&[
        "--users",
        "2",
        "--folders",
        "4",
        "--messages",
        "8",
        "--seed",
        "3",
    ]);
    let mut m = Mount::start(&host.source_args(), &[]);
    let users = host.users();
    let before: Vec<_> = users
        .iter()
        .map(|u| tree_names(&m.mountpoint.join(u)))
        .collect();
    assert!(
        before
            .iter()
            .any(|t| t.keys().any(|d| d.matches('.').count() > 1)),
        "the host should have nested folders (and their parents): {before:?}"
    );
    for round in 0..2 {
        m.remount(&host.source_args(), &[]);
        let after: Vec<_> = users
            .iter()
            .map(|u| tree_names(&m.mountpoint.join(u)))
            .collect();
        assert_eq!(after, before, "remount {round}");
    }
}
