//! `mboxfs materialize` and `mboxfs verify`, run as an admin would.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{Dovecot, Host, Mount, SmallDisk, mboxfs, run, text};

fn materialize(host: &Host, dest: &Path, extra: &[&str]) -> std::process::Output {
    run("materialize", dest, &host.source_args(), extra)
}

fn verify(host: &Host, dest: &Path) -> std::process::Output {
    run("verify", dest, &host.source_args(), &[])
}

/// Every regular file under `root` (relative path -> (bytes, mtime)), leaving out what is not
/// part of the model (Dovecot's files, the marker).
fn tree_files(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            if t.is_dir() {
                if name != ".mboxfs-guard" {
                    stack.push(e.path());
                }
            } else if !name.starts_with("dovecot.") && name != ".mboxfs-materialize" {
                let md = std::fs::metadata(e.path()).unwrap();
                out.insert(
                    e.path().strip_prefix(root).unwrap().to_path_buf(),
                    (std::fs::read(e.path()).unwrap(), md.mtime()),
                );
            }
        }
    }
    out
}

#[test]
fn dovecot_serves_dest_and_verify_accepts_what_dovecot_did() {
    common::require_root_and_tools(&["dovecot", "python3"]);
    let host = Host::make(&[
        "--users",
        "4",
        "--folders",
        "15",
        "--messages",
        "30",
        "--big-every",
        "20",
        "--seed",
        "21",
    ]);
    let dest_dir = common::open_dir("mboxfs-dest");
    let dest = dest_dir.path().join("mail2");
    let out = materialize(&host, &dest, &["--owner", "nobody"]);
    assert!(out.status.success(), "{}", text(&out));
    // Ownership and modes.
    for (path, md) in walk(&dest) {
        if path == dest
            || path == dest.join(".mboxfs-materialize")
            || path.starts_with(dest.join(".mboxfs-guard"))
        {
            continue;
        }
        assert_eq!(md.uid(), 65534, "{}", path.display());
        let mode = md.permissions().mode() & 0o777;
        assert_eq!(
            mode,
            if md.is_dir() { 0o700 } else { 0o600 },
            "{}",
            path.display()
        );
    }
    let dovecot = Dovecot::for_nobody(&format!("maildir:{}/%u", dest.display()), "");
    // A client SELECTs every INBOX read-write: Dovecot moves new/ to cur/ and writes indexes.
    let script = format!(
        "import imaplib\nfor u in open('{}').read().split():\n    m = imaplib.IMAP4('127.0.0.1', {})\n    m.login(u, 'pw')\n    m.select('INBOX')\n    m.logout()\n",
        host.path().join("userlist").display(),
        dovecot.port
    );
    common::python(&script);
    let (out, passed, failed) = dovecot.imapcheck(
        &host.path().join("userlist"),
        &host.path().join("manifest.jsonl"),
    );
    assert_eq!((passed, failed), (host.manifest().len(), 0), "{out}");
    assert!(
        dovecot.complaints().is_empty(),
        "{}",
        dovecot.complaints().join("\n")
    );
    drop(dovecot);
    let user0 = &host.users()[0];
    assert_eq!(
        std::fs::read_dir(dest.join(user0).join("new"))
            .unwrap()
            .count(),
        0,
        "Dovecot moved new/ to cur/"
    );
    let out = verify(&host, &dest);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("DEST is exactly what the sources give"));
}

/// Every message file in `cur/` and `new/` has the size its name says (`,S=`).
fn assert_no_partial_messages(dest: &Path) {
    for (p, md) in walk(dest) {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.parent()
            .is_some_and(|d| d.ends_with("cur") || d.ends_with("new"))
        {
            let size: u64 = name
                .split(",S=")
                .nth(1)
                .unwrap()
                .split([',', ':'])
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(md.len(), size, "{} is partial", p.display());
        }
    }
}

/// Everything under `root` (entries that vanish meanwhile are left out).
fn walk(root: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let Ok(md) = std::fs::symlink_metadata(root) else {
        return vec![];
    };
    let mut out = vec![(root.to_path_buf(), md)];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(md) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), md));
        }
    }
    out
}

#[test]
fn the_mount_and_dest_hold_the_same_tree() {
    common::require_root_and_tools(&[]);
    let host = Host::make(&[
        "--users",
        "3",
        "--folders",
        "8",
        "--messages",
        "25",
        "--big-every",
        "15",
        "--seed",
        "8",
    ]);
    let dest_dir = tempfile::tempdir().unwrap();
    let dest = dest_dir.path().join("d");
    let out = materialize(&host, &dest, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let mount = Mount::start(&host.source_args(), &[]);
    let mounted = tree_files(&mount.mountpoint);
    let written = tree_files(&dest);
    assert_eq!(
        mounted.keys().collect::<Vec<_>>(),
        written.keys().collect::<Vec<_>>()
    );
    for (k, v) in &mounted {
        assert!(written[k] == *v, "{} differs", k.display());
    }
    assert!(mounted.len() > host.manifest().len());
}

#[test]
fn verify_finds_changed_missing_and_extra_messages() {
    let host = Host::make(&["--users", "2", "--folders", "3", "--messages", "20"]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("d");
    assert!(materialize(&host, &dest, &[]).status.success());
    assert!(verify(&host, &dest).status.success());
    let user = &host.users()[0];
    let cur = dest.join(user).join("cur");
    let files: Vec<PathBuf> = std::fs::read_dir(&cur)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();

    // One byte changed (same size).
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[3] ^= 1;
    let mtime = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    std::fs::write(&files[0], &bytes).unwrap();
    common::set_mtime(&files[0], mtime);
    let out = verify(&host, &dest);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("bytes differ"), "{}", text(&out));
    bytes[3] ^= 1;
    std::fs::write(&files[0], &bytes).unwrap();
    common::set_mtime(&files[0], mtime);
    assert!(verify(&host, &dest).status.success());

    // One removed.
    let saved = std::fs::read(&files[1]).unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    let out = verify(&host, &dest);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("missing: UID"), "{}", text(&out));
    std::fs::write(&files[1], saved).unwrap();

    // One added.
    std::fs::write(cur.join("1234.M1P1.host:2,S"), b"Subject: stray\n\nhi\n").unwrap();
    let out = verify(&host, &dest);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("extra: cur/1234.M1P1.host:2,S"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_run_killed_midway_is_finished_by_the_next() {
    common::require_root_and_tools(&[]);
    let host = Host::make(&[
        "--users",
        "3",
        "--folders",
        "6",
        "--messages",
        "150",
        "--big-every",
        "4",
        "--seed",
        "31",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("d");
    for kill_after in [40usize, 400] {
        let mut child = mboxfs()
            .arg("materialize")
            .arg(&dest)
            .args(host.source_args())
            .args(["--jobs", "2", "--fsync"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        loop {
            let written = walk(&dest)
                .iter()
                .filter(|(p, _)| {
                    p.parent()
                        .is_some_and(|d| d.ends_with("cur") || d.ends_with("new"))
                })
                .count();
            if written >= kill_after {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "finished before it could be killed"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // No partial message in cur/ or new/: every file has the size its name says.

        assert_no_partial_messages(&dest);
    }
    let out = verify(&host, &dest);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unfinished DEST must not verify"
    );
    let out = materialize(&host, &dest, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = verify(&host, &dest);
    assert!(out.status.success(), "{}", text(&out));
    let again = materialize(&host, &dest, &[]);
    assert!(
        text(&again).contains("already complete"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_foreign_dest_is_refused_unless_forced() {
    let host = Host::make(&["--users", "1", "--folders", "1", "--messages", "5"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("important.txt"), b"keep me").unwrap();
    let out = materialize(&host, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("not empty and was not made by mboxfs"),
        "{}",
        text(&out)
    );
    let out = materialize(&host, dir.path(), &["--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(dir.path().join("important.txt")).unwrap(),
        b"keep me"
    );
}

#[test]
fn a_full_disk_leaves_no_partial_message_and_a_rerun_completes() {
    common::require_root_and_tools(&["mount", "umount"]);
    let small = SmallDisk::new();
    let (host, dest) = (&small.host, &small.dest);
    let out = materialize(host, dest, &["--jobs", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("the disk is full"), "{}", text(&out));
    assert_no_partial_messages(dest);
    small.tmpfs.resize_tmpfs("200m");
    let out = materialize(host, dest, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(verify(host, dest).status.success());
}
