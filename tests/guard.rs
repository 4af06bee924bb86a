//! The guard: once Dovecot has changed DEST (a client set a flag through IMAP), `materialize`
//! refuses, naming what it found, and changes nothing; `verify` still reports; only
//! `--revert-user-changes` writes, and a rerun after that is accepted again.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::imap::Imap;
use common::{Dovecot, Host};

/// Runs `mboxfs CMD DEST` on the host; returns the exit code, standard output and standard error.
fn run(host: &Host, cmd: &str, dest: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = common::run(cmd, dest, &host.source_args(), extra);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a change to an entry would touch: mode, size, mtime, ctime (seconds, nanoseconds),
/// inode, and a file's bytes.
type Entry = (u32, u64, i64, i64, i64, u64, Vec<u8>);

/// Every entry under `root`.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let bytes = if md.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                stack.push(e.path());
                Vec::new()
            };
            out.insert(
                e.path(),
                (
                    md.mode(),
                    md.size(),
                    md.mtime(),
                    md.ctime(),
                    md.ctime_nsec(),
                    md.ino(),
                    bytes,
                ),
            );
        }
    }
    out
}

/// Logs in and runs IMAP commands, returning the tagged answers.
fn imap(port: u16, user: &str, commands: &[&str]) -> Vec<String> {
    let mut c = Imap::connect(port);
    let all = [
        vec![format!("LOGIN {user} pw")],
        commands.iter().map(|c| c.to_string()).collect(),
        vec!["LOGOUT".into()],
    ]
    .concat();
    all.iter().map(|cmd| c.cmd(cmd, None).1).collect()
}

#[test]
fn materialize_refuses_a_dest_where_dovecot_changed_flags_and_changes_nothing() {
    common::require_root_and_tools(&["dovecot"]);
    let host = Host::make(&[
        "--users",
        "2",
        "--folders",
        "2",
        "--messages",
        "8",
        "--seed",
        "13",
    ]);
    let dir = common::open_dir("mboxfs-guard");
    let dest = dir.path().join("mail2");
    let (code, out, err) = run(&host, "materialize", &dest, &["--owner", "nobody"]);
    assert_eq!(code, Some(0), "{out}{err}");
    // A rerun with nothing changed is accepted (and writes nothing).
    let (code, out, err) = run(&host, "materialize", &dest, &["--owner", "nobody"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("nothing written"), "{out}");

    // A user flags a message through a real Dovecot serving DEST.
    let user = host.users()[0].clone();
    let dovecot = Dovecot::for_nobody(&format!("maildir:{}/%u", dest.display()), "");
    let answers = imap(
        dovecot.port,
        &user,
        &[
            "SELECT INBOX",
            "STORE 1:* +FLAGS (\\Flagged \\Answered \\Draft)",
        ],
    );
    assert!(answers.iter().all(|a| a.starts_with("OK")), "{answers:?}");
    drop(dovecot);

    let before = snapshot(&dest);
    let (code, out, err) = run(&host, "materialize", &dest, &["--owner", "nobody"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("has been used by Dovecot since mboxfs wrote it"),
        "{err}"
    );
    assert!(err.contains(&format!("{user}/INBOX: ")), "{err}");
    assert!(err.contains("renamed since mboxfs wrote them"), "{err}");
    assert!(
        err.contains("Dovecot's index files: dovecot.index"),
        "{err}"
    );
    assert!(err.contains("--revert-user-changes"), "{err}");
    assert_eq!(
        snapshot(&dest),
        before,
        "materialize changed DEST although it refused"
    );

    // verify still runs, reports the flag, and notes who did it.
    let (code, out, err) = run(&host, "verify", &dest, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains(&format!("{user}/INBOX:")) && out.contains(":2,DF"),
        "{out}"
    );
    assert!(err.contains("Dovecot has used"), "{err}");
    assert_eq!(snapshot(&dest), before, "verify changed DEST");

    // A DEST without the guard's stamps (made before it existed): Dovecot's index files
    // are enough to refuse.
    let stamps = dest.join(".mboxfs-guard");
    let saved = tempfile::tempdir().unwrap();
    std::fs::rename(&stamps, saved.path().join("s")).unwrap();
    let (code, _, err) = run(&host, "materialize", &dest, &["--owner", "nobody"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("Dovecot's index files"), "{err}");
    std::fs::rename(saved.path().join("s"), &stamps).unwrap();

    // Told explicitly, it puts the source's state back; the next run is accepted again.
    let (code, out, err) = run(
        &host,
        "materialize",
        &dest,
        &["--owner", "nobody", "--revert-user-changes"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("reverting what Dovecot changed"), "{err}");
    let (code, out, err) = run(&host, "verify", &dest, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&host, "materialize", &dest, &["--owner", "nobody"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("nothing written"), "{out}");
}

#[test]
fn a_message_delivered_into_dest_is_found() {
    common::require_root_and_tools(&[]);
    let host = Host::make(&[
        "--users",
        "1",
        "--folders",
        "1",
        "--messages",
        "4",
        "--seed",
        "14",
    ]);
    let dir = common::open_dir("mboxfs-guard");
    let dest = dir.path().join("mail2");
    let (code, out, err) = run(&host, "materialize", &dest, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let user = host.users()[0].clone();
    // Postfix delivering into the new tree (mail_spool_directory = DEST/).
    std::fs::write(
        dest.join(&user).join("new/1767225600.M1P2.mailhost"),
        "Subject: new\n\nhi\n",
    )
    .unwrap();
    // A symbolic link in the tree is not followed: what it points to is not looked at.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir(elsewhere.path().join("cur")).unwrap();
    std::fs::write(elsewhere.path().join("dovecot.index"), "x").unwrap();
    std::fs::write(elsewhere.path().join("cur/foreign-message"), "x").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dest.join(&user).join(".Linked")).unwrap();
    let (code, _, err) = run(&host, "materialize", &dest, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("1 message mboxfs did not write"), "{err}");
    assert!(err.contains("new/1767225600.M1P2.mailhost"), "{err}");
    assert!(
        !err.contains("Linked") && !err.contains("dovecot.index") && !err.contains("foreign"),
        "{err}"
    );
}
