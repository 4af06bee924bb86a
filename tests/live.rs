//! The mount follows the mbox files while the old server keeps running: deliveries append,
//! UW-IMAP rewrites. Served from a child process, read by this one and by a real Dovecot.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Dovecot, Host, Mount};
use mboxfs::model::parse_message_name;

/// A message as a delivery writes it, and the bytes IMAP must show for it.
fn delivery(k: usize) -> (String, String) {
    let body = format!(
        "Subject: live {k}\nMessage-ID: <live{k}@example.org>\n\n{}\n",
        (0..(k % 7 + 1) * 40)
            .map(|i| format!("line {i} of message {k}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stored = format!(
        "From sender@example.org Thu Nov 26 10:{:02}:{:02} 2026\n{body}\n",
        k / 60 % 60,
        k % 60
    );
    (stored, body)
}

/// (name, path) of every message file of a folder directory.
fn files(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            out.insert(e.file_name().to_string_lossy().to_string(), e.path());
        }
    }
    out
}

fn uid_next(uidlist: &Path) -> u32 {
    let text = std::fs::read_to_string(uidlist).unwrap();
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('N'))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn appended_mail_appears_complete_and_in_order() {
    common::require_root_and_tools(&[]);
    let host = Host::make(&[
        "--users",
        "1",
        "--folders",
        "0",
        "--messages",
        "30",
        "--seed",
        "41",
    ]);
    let user = host.users()[0].clone();
    let inbox = host.inbox(&user);
    let m = Mount::start(&host.source_args(), &["--recheck-ms", "100"]);
    let root = m.mountpoint.join(&user);
    let before = files(&root);
    assert_eq!(before.len(), host.manifest().len());
    let first_uid = uid_next(&root.join("dovecot-uidlist"));
    const N: usize = 60;

    // A writer that takes no lock, and writes each message in pieces.
    let writer = {
        let inbox = inbox.clone();
        std::thread::spawn(move || {
            for k in 0..N {
                let (stored, _) = delivery(k);
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&inbox)
                    .unwrap();
                let cut = [stored.len() / 3, stored.len() * 2 / 3];
                f.write_all(&stored.as_bytes()[..cut[0]]).unwrap();
                std::thread::sleep(Duration::from_millis(7));
                f.write_all(&stored.as_bytes()[cut[0]..cut[1]]).unwrap();
                std::thread::sleep(Duration::from_millis(7));
                f.write_all(&stored.as_bytes()[cut[1]..]).unwrap();
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    // A reader that walks the folder meanwhile: whatever it sees must be whole and exact.
    let mut seen = BTreeMap::new();
    let check = |seen: &mut BTreeMap<u32, String>| {
        for (name, path) in files(&root) {
            if before.contains_key(&name) {
                continue;
            }
            let (_, uid) = parse_message_name(name.as_bytes()).unwrap();
            let k = (uid - first_uid) as usize;
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            assert_eq!(
                String::from_utf8_lossy(&data),
                delivery(k).1,
                "UID {uid} ({name}) is not the whole message"
            );
            seen.insert(uid, name);
        }
    };
    while !writer.is_finished() {
        check(&mut seen);
    }
    writer.join().unwrap();
    let done = Instant::now();
    while seen.len() < N && done.elapsed() < Duration::from_secs(5) {
        check(&mut seen);
        std::thread::sleep(Duration::from_millis(50));
    }
    let uids: Vec<u32> = seen.keys().copied().collect();
    assert_eq!(uids, (first_uid..first_uid + N as u32).collect::<Vec<_>>());
    eprintln!(
        "the last message showed {:?} after it was written",
        done.elapsed()
    );
    // The uidlist agrees.
    assert_eq!(
        uid_next(&root.join("dovecot-uidlist")),
        first_uid + N as u32
    );
    assert!(files(&root).len() == before.len() + N);
}

/// The messages of an mkcorpus mbox (each starting with its From_ line).
fn split_mbox(data: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in data.match_indices("\n\nFrom ") {
        out.push(data[start..i + 2].to_string());
        start = i + 2;
    }
    out.push(data[start..].to_string());
    out
}

#[test]
fn a_uw_rewrite_keeps_names_and_uids_and_updates_flags() {
    common::require_root_and_tools(&[]);
    let host = Host::make(&[
        "--users",
        "1",
        "--folders",
        "1",
        "--messages",
        "40",
        "--seed",
        "12",
    ]);
    let user = host.users()[0].clone();
    let inbox = host.inbox(&user);
    let m = Mount::start(&host.source_args(), &["--recheck-ms", "50"]);
    let root = m.mountpoint.join(&user);
    let before: BTreeMap<u32, (String, Vec<u8>)> = files(&root)
        .into_iter()
        .map(|(n, p)| {
            (
                parse_message_name(n.as_bytes()).unwrap().1,
                (n, std::fs::read(p).unwrap()),
            )
        })
        .collect();
    let n_before = uid_next(&root.join("dovecot-uidlist"));

    // UW-IMAP's rewrite: expunge every third message, mark every other one answered and seen,
    // written in place (same inode), as c-client does.
    let data = std::fs::read_to_string(&inbox).unwrap();
    let parts = split_mbox(&data);
    let first_is_pseudo = parts[0].contains("\nX-IMAP: ");
    let mut kept = String::new();
    let (mut expunged, mut flagged) = (Vec::new(), Vec::new());
    for (i, p) in parts.iter().enumerate() {
        let uid: u32 = p
            .split("\nX-UID: ")
            .nth(1)
            .map(|r| r.split('\n').next().unwrap().trim().parse().unwrap())
            .unwrap_or(0);
        let is_message = !(i == 0 && first_is_pseudo);
        if is_message && i % 3 == 1 && i + 1 != parts.len() {
            expunged.push(uid);
            continue;
        }
        if is_message && i % 2 == 0 && p.contains("\nStatus: O\n") {
            flagged.push(uid);
            kept += &p
                .replacen("\nStatus: O\n", "\nStatus: RO\nX-Status: A\n", 1)
                .replacen("\nX-Status: \n", "\n", 1);
        } else {
            kept += p;
        }
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&inbox)
        .unwrap();
    f.set_len(0).unwrap();
    (&f).write_all(kept.as_bytes()).unwrap();
    drop(f);
    assert!(!expunged.is_empty() && !flagged.is_empty());

    std::thread::sleep(Duration::from_millis(1500));
    let after: BTreeMap<u32, (String, Vec<u8>)> = files(&root)
        .into_iter()
        .map(|(n, p)| {
            (
                parse_message_name(n.as_bytes()).unwrap().1,
                (n, std::fs::read(p).unwrap()),
            )
        })
        .collect();
    for uid in &expunged {
        assert!(
            !after.contains_key(uid),
            "UID {uid} was expunged but is still shown"
        );
    }
    for (uid, (name, bytes)) in &before {
        if expunged.contains(uid) {
            continue;
        }
        let (new_name, new_bytes) = after.get(uid).unwrap_or_else(|| panic!("UID {uid} lost"));
        assert_eq!(new_bytes, bytes, "UID {uid}: bytes changed");
        let base = |n: &str| n.split(':').next().unwrap().to_string();
        assert_eq!(base(new_name), base(name), "UID {uid}: base name changed");
        if flagged.contains(uid) {
            let flags = new_name.split(":2,").nth(1).unwrap();
            assert!(
                flags.contains('R') && flags.contains('S'),
                "UID {uid}: flags not updated: {new_name}"
            );
        } else {
            assert_eq!(new_name, name, "UID {uid}: renamed without a flag change");
        }
    }
    assert!(
        uid_next(&root.join("dovecot-uidlist")) >= n_before,
        "N was lowered"
    );
}

#[test]
fn a_connected_dovecot_client_sees_new_mail_without_reconnecting() {
    common::require_root_and_tools(&["dovecot", "python3"]);
    let host = Host::make(&[
        "--users",
        "1",
        "--folders",
        "1",
        "--messages",
        "10",
        "--seed",
        "77",
    ]);
    let user = host.users()[0].clone();
    let inbox = host.inbox(&user);
    let m = Mount::start(
        &host.source_args(),
        &["--owner", "nobody", "--recheck-ms", "200"],
    );
    let dovecot = Dovecot::for_nobody(
        &format!("maildir:{}/%u", m.mountpoint.display()),
        "mailbox_idle_check_interval = 1 secs",
    );
    // The client connects and selects INBOX, then mail arrives, then it polls with NOOP.
    let (stored, body) = delivery(5);
    let script = format!(
        r#"
import imaplib, time, hashlib
m = imaplib.IMAP4('127.0.0.1', {port})
m.login('{user}', 'pw')
typ, data = m.select('INBOX', readonly=True)
before = int(data[0])
open('{inbox}', 'a').write({stored:?})
deadline = time.time() + 8
count = before
while time.time() < deadline and count == before:
    time.sleep(0.2)
    typ, data = m.noop()
    for r in m.untagged_responses.get('EXISTS', []):
        count = int(r)
    m.untagged_responses.pop('EXISTS', None)
typ, data = m.fetch(str(count), '(BODY.PEEK[])')
print(before, count, hashlib.sha256(data[0][1].replace(b'\r\n', b'\n')).hexdigest())
m.logout()
"#,
        port = dovecot.port,
        user = user,
        inbox = inbox.display(),
        stored = stored
    );
    let text = common::python(&script);
    let f: Vec<&str> = text.split_whitespace().collect();
    let (before, after): (u32, u32) = (f[0].parse().unwrap(), f[1].parse().unwrap());
    assert_eq!(after, before + 1, "the new message was not seen");
    use sha2::Digest;
    assert_eq!(f[2], format!("{:x}", sha2::Sha256::digest(body.as_bytes())));
    assert!(
        dovecot.complaints().is_empty(),
        "{}",
        dovecot.complaints().join("\n")
    );
}

#[test]
fn a_recreated_folder_is_a_new_generation_dovecot_takes_in_stride() {
    common::require_root_and_tools(&["dovecot", "python3"]);
    let host = Host::make(&[
        "--users",
        "1",
        "--folders",
        "0",
        "--messages",
        "12",
        "--seed",
        "90",
    ]);
    let other = Host::make(&[
        "--users",
        "1",
        "--folders",
        "0",
        "--messages",
        "7",
        "--seed",
        "91",
    ]);
    let user = host.users()[0].clone();
    let inbox = host.inbox(&user);
    let m = Mount::start(
        &host.source_args(),
        &["--owner", "nobody", "--recheck-ms", "200"],
    );
    let dovecot = Dovecot::for_nobody(&format!("maildir:{}/%u", m.mountpoint.display()), "");
    let status = |port: u16| {
        let script = format!(
            "import imaplib\nm = imaplib.IMAP4('127.0.0.1', {port})\nm.login('{user}', 'pw')\nprint(m.status('INBOX', '(MESSAGES UIDVALIDITY)')[1][0].decode())\nm.select('INBOX', readonly=True)\nprint(len(m.fetch('1:*', '(UID)')[1]))\nm.logout()\n"
        );
        common::python(&script)
    };
    let first = status(dovecot.port);
    assert!(
        first.contains(&format!("MESSAGES {} ", host.manifest().len())),
        "{first}"
    );
    // The user deleted and recreated the folder on the old server: a new mbox, a new UIDVALIDITY.
    let replacement = std::fs::read(other.inbox(&other.users()[0])).unwrap();
    std::fs::remove_file(&inbox).unwrap();
    std::fs::write(&inbox, replacement).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let second = status(dovecot.port);
    assert!(
        second.contains(&format!("MESSAGES {} ", other.manifest().len())),
        "{second}"
    );
    assert_ne!(first.lines().next(), second.lines().next());
    let errors: Vec<String> = dovecot
        .complaints()
        .into_iter()
        .filter(|l| !l.contains("Warning:"))
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    eprintln!(
        "Dovecot's log on the generation change:\n{}",
        dovecot.complaints().join("\n")
    );
}
