//! The migration paper's step 10 on `mboxfs mount --writable`: testers sign on to a stock
//! Dovecot serving the mount and (a) create and delete folders, (b) see their mail sorted by
//! date, (c) move mail between folders, (d) find the inbox and every folder. What they change
//! survives a new login and a remount, new mail still arrives underneath, and no mbox file
//! changes (bytes, size, mtime, inode); `materialize` and `verify` see the untouched sources.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::{Dovecot, HandHost, Mount, python, run};

/// A small host: alice's inbox and one folder, written by hand.
fn host() -> HandHost {
    let d = tempfile::Builder::new()
        .prefix("mboxfs-writable")
        .tempdir()
        .unwrap();
    let h = HandHost::new(d, "spool", &["alice"], "alice/mail/Archive\n");
    let p = h.path();
    std::fs::create_dir_all(p.join("home/alice/mail")).unwrap();
    let msg = |k: u32, day: u32, status: &str, uid: u32, base: bool| {
        format!(
            "From sender{k}@example.org Mon Jan {day:2} 10:00:00 2004\n{}Subject: message {k}\nMessage-ID: <m{k}@example.org>\nStatus: {status}\nX-UID: {uid}\n\nbody of message {k}\n\n",
            if base {
                "X-IMAPbase: 1100000000 0000000009\n"
            } else {
                ""
            }
        )
    };
    let inbox: String = (1..=6)
        .map(|k| msg(k, 10 - k, if k % 2 == 0 { "RO" } else { "O" }, k, k == 1))
        .collect();
    std::fs::write(p.join("spool/alice"), inbox).unwrap();
    let archive: String = (7..=9)
        .map(|k| msg(k, k + 2, "RO", k - 6, k == 7))
        .collect();
    std::fs::write(p.join("home/alice/mail/Archive"), archive).unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for f in ["spool/alice", "home/alice/mail/Archive"] {
        common::set_mtime(&p.join(f), hour_ago);
    }
    h
}

fn args(h: &HandHost) -> Vec<String> {
    h.source_args_with(&["--trust-owners", "--strip-prefix="])
}

/// (sha256, size, mtime, inode) of each source file.
fn sources(p: &Path) -> BTreeMap<String, (String, u64, i64, u64)> {
    use sha2::Digest;
    ["spool/alice", "home/alice/mail/Archive"]
        .iter()
        .map(|f| {
            let m = std::fs::metadata(p.join(f)).unwrap();
            let h = sha2::Sha256::digest(std::fs::read(p.join(f)).unwrap());
            (
                f.to_string(),
                (format!("{h:x}"), m.len(), m.mtime(), m.ino()),
            )
        })
        .collect()
}

/// Every folder with, per message: UID, flags, INTERNALDATE and a hash of its bytes.
fn state_script(port: u16) -> String {
    format!(
        r#"
import imaplib, hashlib, re, json
m = imaplib.IMAP4('127.0.0.1', {port})
m.login('alice', 'pw')
out = {{}}
typ, boxes = m.list('""', '*')
for b in boxes:
    name = b.decode().rsplit(' ', 1)[1].strip('"')
    if '\\Noselect' in b.decode():
        continue
    typ, data = m.select('"%s"' % name, readonly=True)
    uv = m.untagged_responses['UIDVALIDITY'][0].decode()
    msgs = []
    if int(data[0]) > 0:
        typ, rows = m.fetch('1:*', '(UID FLAGS INTERNALDATE BODY.PEEK[])')
        for part in rows:
            if isinstance(part, tuple):
                head = part[0].decode()
                uid = int(re.search(r'UID (\d+)', head).group(1))
                flags = sorted(re.search(r'FLAGS \(([^)]*)\)', head).group(1).split())
                flags = [f for f in flags if f != '\\Recent']
                date = re.search(r'INTERNALDATE "([^"]+)"', head).group(1)
                msgs.append([uid, flags, date, hashlib.sha256(part[1]).hexdigest()[:16]])
    out[name] = [uv, sorted(msgs)]
m.logout()
print(json.dumps(out, sort_keys=True))
"#
    )
}

#[test]
fn testers_change_mail_and_the_mbox_files_stay_untouched() {
    common::require_root_and_tools(&["dovecot", "python3"]);
    let h = host();
    let before = sources(h.path());
    let extra = ["--owner", "nobody", "--writable", "--recheck-ms", "100"];
    let mut m = Mount::start(&args(&h), &extra);
    let dovecot = Dovecot::for_nobody(
        &format!("maildir:{}/%u", m.mountpoint.display()),
        "namespace inbox {\n  inbox = yes\n  separator = /\n  prefix =\n}\n",
    );
    let port = dovecot.port;

    // Step 10 as a tester does it.
    let out = python(&format!(
        r#"
import imaplib, time, re
m = imaplib.IMAP4('127.0.0.1', {port})
m.login('alice', 'pw')
def ok(r, what):
    assert r[0] == 'OK', (what, r)
    return r
# (d) the inbox and every folder are there
names = sorted(b.decode().rsplit(' ', 1)[1].strip('"') for b in m.list('""', '*')[1])
print('folders', names)
assert 'INBOX' in names and 'mail/Archive' in names, names
# (a) folders can be created, renamed and deleted
ok(m.create('Test'), 'create')
ok(m.create('Test/Sub'), 'create sub')
ok(m.rename('Test', 'Tested'), 'rename')
ok(m.delete('Tested/Sub'), 'delete')
ok(m.create('Scratch'), 'create scratch')
ok(m.delete('Scratch'), 'delete scratch')
names = sorted(b.decode().rsplit(' ', 1)[1].strip('"') for b in m.list('""', '*')[1])
print('folders', names)
assert 'Tested' in names and 'Test' not in names and 'Scratch' not in names, names
# (b) mail is visible and sorts by date
typ, data = ok(m.select('INBOX'), 'select')
assert int(data[0]) == 6, data
typ, data = ok(m.sort('(DATE)', 'UTF-8', 'ALL'), 'sort')
print('by date', data[0].decode())
assert data[0].decode().split() == ['6', '5', '4', '3', '2', '1'], data
# (c) mail moves between folders: COPY, MOVE, APPEND; flags and a keyword; EXPUNGE
ok(m.uid('COPY', '1', 'Tested'), 'copy')
ok(m.uid('MOVE', '2', 'mail/Archive'), 'move')
ok(m.append('Tested', '(\\Seen)', imaplib.Time2Internaldate(time.mktime((2005, 3, 4, 5, 6, 7, 0, 0, 0))),
            b'Subject: appended by a tester\r\n\r\nhello\r\n'), 'append')
ok(m.uid('STORE', '3', '+FLAGS', '(\\Flagged $Tester)'), 'store')
ok(m.uid('STORE', '4', '-FLAGS', '(\\Seen)'), 'store')
ok(m.uid('STORE', '5', '+FLAGS', '(\\Deleted)'), 'store deleted')
ok(m.expunge(), 'expunge')
typ, data = ok(m.select('INBOX'), 'select')
print('inbox now', data[0].decode())
assert int(data[0]) == 4, data
m.logout()
"#
    ));
    eprintln!("{out}");
    let first = python(&state_script(port));
    let state: serde_json::Value = serde_json::from_str(&first).unwrap();
    let uids = |folder: &str| -> Vec<u64> {
        state[folder][1]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m[0].as_u64().unwrap())
            .collect()
    };
    assert_eq!(uids("INBOX"), [1, 3, 4, 6], "{first}");
    assert_eq!(uids("Tested").len(), 2, "{first}");
    assert_eq!(uids("mail/Archive").len(), 4, "{first}");
    let inbox = state["INBOX"][1].as_array().unwrap();
    let flags_of = |uid: u64| inbox.iter().find(|m| m[0] == uid).unwrap()[1].clone();
    assert_eq!(flags_of(3), serde_json::json!(["$Tester", "\\Flagged"]));
    assert_eq!(flags_of(4), serde_json::json!([]));
    assert_eq!(inbox.len(), 4, "{first}");

    // A new login, then a remount: the same.
    assert_eq!(python(&state_script(port)), first);
    m.remount(&args(&h), &extra);
    assert_eq!(python(&state_script(port)), first, "after a remount");

    // Everything testers did, and two mounts, left every mbox file as it was: bytes, size,
    // mtime, inode.
    assert_eq!(sources(h.path()), before, "a source file changed");

    // New mail delivered to the mbox underneath arrives next to the changes.
    let delivery = "From late@example.org Tue Jan 20 10:00:00 2004\nSubject: late\n\nlate mail\n\n";
    std::fs::OpenOptions::new()
        .append(true)
        .open(h.path().join("spool/alice"))
        .map(|mut f| std::io::Write::write_all(&mut f, delivery.as_bytes()))
        .unwrap()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let after: serde_json::Value = serde_json::from_str(&python(&state_script(port))).unwrap();
    let inbox_after = after["INBOX"][1].as_array().unwrap();
    assert_eq!(inbox_after.len(), 5, "{after}");
    assert_eq!(
        &inbox_after[..4],
        &inbox[..4],
        "testers' changes were undone"
    );
    assert!(inbox_after[4][0].as_u64().unwrap() > 9, "{after}");
    assert_eq!(after["Tested"], state["Tested"]);
    assert_eq!(after["mail/Archive"], state["mail/Archive"]);

    // No mbox file changed but by that delivery; no error in Dovecot's log.
    let now = sources(h.path());
    assert_eq!(
        now["home/alice/mail/Archive"],
        before["home/alice/mail/Archive"]
    );
    assert_eq!(
        now["spool/alice"].3, before["spool/alice"].3,
        "inode changed"
    );
    assert_eq!(
        now["spool/alice"].1,
        before["spool/alice"].1 + delivery.len() as u64
    );
    let complaints = dovecot.complaints();
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
    drop(dovecot);
    drop(m);

    // The final copy comes from the sources alone.
    let dest = tempfile::tempdir().unwrap();
    let st = run("materialize", &dest.path().join("mail"), &args(&h), &[]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let v = run("verify", &dest.path().join("mail"), &args(&h), &[]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let count = |d: &str| {
        ["cur", "new"]
            .iter()
            .map(|s| {
                std::fs::read_dir(dest.path().join("mail/alice").join(d).join(s))
                    .map_or(0, |r| r.count())
            })
            .sum::<usize>()
    };
    assert_eq!(count(""), 7, "the inbox as the mbox has it");
    assert_eq!(count(".mail.Archive"), 3);
    assert!(!dest.path().join("mail/alice/.Tested").exists());
}

#[test]
fn changes_are_counted_and_thrown_away_on_request() {
    common::require_root_and_tools(&["dovecot", "python3"]);
    let h = host();
    let extra = ["--owner", "nobody", "--writable"];
    let mut m = Mount::start(&args(&h), &extra);
    let dovecot = Dovecot::for_nobody(
        &format!("maildir:{}/%u", m.mountpoint.display()),
        "namespace inbox {\n  inbox = yes\n  separator = /\n  prefix =\n}\n",
    );
    python(&format!(
        r#"
import imaplib
m = imaplib.IMAP4('127.0.0.1', {port})
m.login('alice', 'pw')
assert m.create('Kept')[0] == 'OK'
m.select('INBOX')
assert m.uid('COPY', '1', 'Kept')[0] == 'OK'
assert m.uid('STORE', '1', '+FLAGS', '(\\Deleted)')[0] == 'OK'
m.expunge()
m.logout()
"#,
        port = dovecot.port
    ));
    let first_uv = python(&state_script(dovecot.port));
    drop(dovecot);
    let state = m.state.path().to_path_buf();
    let status = m.stop_with(libc::SIGTERM);
    assert!(status.success());
    // A read-only mount over these changes is refused, and says why.
    let out = common::mboxfs()
        .arg("mount")
        .arg(&m.mountpoint)
        .arg("--state-dir")
        .arg(&state)
        .args(args(&h))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("testers' changes") && err.contains("discard-changes"),
        "{err}"
    );
    // `plan` counts them.
    let out = common::mboxfs()
        .args(["plan", "--state-dir"])
        .arg(&state)
        .args(args(&h))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("testers' changes (folders changed 1, messages changed 1, messages added 1)"),
        "{text}"
    );
    // Thrown away, with the count.
    let out = common::mboxfs()
        .arg("discard-changes")
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("alice: folders changed 1, messages changed 1, messages added 1"),
        "{text}"
    );
    // The read-only view is back, with a new UIDVALIDITY where things were undone.
    m.remount(&args(&h), &["--owner", "nobody"]);
    let dovecot = Dovecot::for_nobody(
        &format!("maildir:{}/%u", m.mountpoint.display()),
        "namespace inbox {\n  inbox = yes\n  separator = /\n  prefix =\n}\n",
    );
    let again: serde_json::Value =
        serde_json::from_str(&python(&state_script(dovecot.port))).unwrap();
    let first: serde_json::Value = serde_json::from_str(&first_uv).unwrap();
    assert!(again.get("Kept").is_none(), "{again}");
    assert_eq!(again["INBOX"][1].as_array().unwrap().len(), 6);
    let uv = |v: &serde_json::Value| v["INBOX"][0].as_str().unwrap().parse::<u64>().unwrap();
    assert!(uv(&again) > uv(&first), "{again} after {first}");
}

#[test]
fn what_a_user_may_write_into_the_state_directory_is_bounded() {
    common::require_root_and_tools(&["dovecot", "python3"]);
    let h = host();
    let extra = ["--owner", "nobody", "--writable", "--state-quota", "400K"];
    let m = Mount::start(&args(&h), &extra);
    let dovecot = Dovecot::for_nobody(
        &format!("maildir:{}/%u", m.mountpoint.display()),
        "namespace inbox {\n  inbox = yes\n  separator = /\n  prefix =\n}\n",
    );
    let out = python(&format!(
        r#"
import imaplib
m = imaplib.IMAP4('127.0.0.1', {port})
m.login('alice', 'pw')
body = b'Subject: big\r\n\r\n' + b'x' * 60000 + b'\r\n'
answers = []
for i in range(20):
    typ, data = m.append('INBOX', None, None, body)
    answers.append(typ)
    if typ != 'OK':
        print('refused after', i, data[0].decode())
        break
m.logout()
print(answers.count('OK'))
"#,
        port = dovecot.port
    ));
    let accepted: usize = out.lines().last().unwrap().trim().parse().unwrap();
    assert!(out.contains("refused after"), "never refused:\n{out}");
    assert!(
        out.to_lowercase().contains("quota"),
        "the refusal does not say why:\n{out}"
    );
    assert!((1..7).contains(&accepted), "{out}");
    let used: u64 = walkdir_size(&m.state.path().join("alice"));
    assert!(
        used <= 400 * 1024 + 64 * 1024,
        "{used} bytes in the state directory"
    );
    assert!(m.log().contains("--state-quota"), "{}", m.log());
}

fn walkdir_size(d: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let m = e.metadata().unwrap();
        if m.is_dir() {
            if e.file_name() != ".mboxfs" {
                total += walkdir_size(&e.path());
            }
        } else {
            total += m.len();
        }
    }
    total
}
