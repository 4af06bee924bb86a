//! `mboxfs mount`, served from a child process, read by this one and by a real Dovecot.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{Dovecot, Host, Mount};
use mboxfs::mbox::{self, ReadMode};
use mboxfs::model::{Tree, parse_message_name};

fn host_for_dovecot() -> Host {
    // Several users, nested and oddly named folders (all of mkcorpus's names), big attachments.
    Host::make(&[
        "--users",
        "4",
        "--folders",
        "15",
        "--messages",
        "30",
        "--big-every",
        "20",
        "--seed",
        "3",
    ])
}

fn source_tree(host: &Host, extra: &[&str]) -> (Tree, mboxfs::cli::SourceConfig) {
    let mut args = vec!["mboxfs".to_string(), "plan".into()];
    args.extend(host.source_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let cli: mboxfs::cli::Cli = clap::Parser::parse_from(&args);
    let mboxfs::cli::Command::Plan(plan) = cli.command else {
        unreachable!()
    };
    let config = plan.source.config(ReadMode::Map).unwrap();
    (
        Tree::build(&config.layout.load().unwrap(), &config.tree),
        config,
    )
}

#[test]
fn dovecot_serves_the_mount_with_uw_uids_and_no_errors() {
    common::require_root_and_tools(&["dovecot", "python3"]);
    let host = host_for_dovecot();
    let before = common::tree_hashes(host.path());
    let mount = Mount::start(&host.source_args(), &["--owner", "nobody"]);
    let dovecot = Dovecot::for_nobody(&format!("maildir:{}/%u", mount.mountpoint.display()), "");
    let (out, passed, failed) = dovecot.imapcheck(
        &host.path().join("userlist"),
        &host.path().join("manifest.jsonl"),
    );
    assert_eq!(failed, 0, "{out}");
    assert_eq!(passed, host.manifest().len(), "{out}");
    assert!(
        dovecot.complaints().is_empty(),
        "Dovecot complained:\n{}",
        dovecot.complaints().join("\n")
    );
    drop(dovecot);
    drop(mount);
    assert_eq!(
        common::tree_hashes(host.path()),
        before,
        "the sources changed"
    );
}

/// Every message file of the mount: (user, dir relative to the user, name) -> path.
fn message_files(root: &Path) -> BTreeMap<(String, String, String), std::path::PathBuf> {
    let mut out = BTreeMap::new();
    for user in std::fs::read_dir(root).unwrap().flatten() {
        let uname = user.file_name().to_string_lossy().to_string();
        let mut dirs = vec![String::new()];
        for e in std::fs::read_dir(user.path()).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with('.') && e.file_type().unwrap().is_dir() {
                dirs.push(n);
            }
        }
        for d in dirs {
            for sub in ["cur", "new"] {
                let rel = if d.is_empty() {
                    sub.to_string()
                } else {
                    format!("{d}/{sub}")
                };
                for f in std::fs::read_dir(user.path().join(&rel)).unwrap().flatten() {
                    out.insert(
                        (
                            uname.clone(),
                            rel.clone(),
                            f.file_name().to_string_lossy().to_string(),
                        ),
                        f.path(),
                    );
                }
            }
        }
    }
    out
}

#[test]
fn reading_the_mount_twice_gives_the_models_bytes() {
    common::require_root_and_tools(&[]);
    let host = Host::make(&[
        "--users",
        "2",
        "--folders",
        "6",
        "--messages",
        "40",
        "--big-every",
        "15",
        "--seed",
        "11",
    ]);
    let (tree, config) = source_tree(&host, &[]);
    let mount = Mount::start(&host.source_args(), &[]);
    // What the model says the tree holds.
    let mut want = BTreeMap::new();
    for user in &tree.users {
        for f in &user.folders {
            let (index, _) = f.index(&config.index).unwrap();
            let file = f.source.as_ref().map(|p| mbox::open(p).unwrap().0);
            for m in &index.messages {
                let (sub, name) = f.message_file(&index, m);
                let rel = if f.dir.is_empty() {
                    sub.name().to_string()
                } else {
                    format!("{}/{}", f.dir, sub.name())
                };
                let bytes = mbox::served_bytes(file.as_ref().unwrap(), &index, m).unwrap();
                want.insert((user.name.clone(), rel, name), (bytes, m.time));
            }
        }
    }
    let got = message_files(&mount.mountpoint);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert_eq!(got.len(), host.manifest().len());
    for round in 0..2 {
        for (key, path) in &got {
            let (bytes, time) = &want[key];
            let mut data = Vec::new();
            // Small reads too, to cross hidden-header boundaries at odd offsets.
            let mut f = std::fs::File::open(path).unwrap();
            let mut buf = vec![0u8; 1000 + round * 3001];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            assert!(data == *bytes, "{key:?}: bytes differ in round {round}");
            let meta = std::fs::metadata(path).unwrap();
            assert_eq!(meta.len(), bytes.len() as u64);
            assert_eq!(meta.mtime(), *time, "{key:?}: mtime");
            let (_, uid) = parse_message_name(key.2.as_bytes()).unwrap();
            assert!(key.2.contains(&format!(",S={},", bytes.len())), "{key:?}");
            assert!(uid > 0);
        }
    }
}

#[test]
fn signals_and_umount_end_the_mount_cleanly() {
    common::require_root_and_tools(&["umount", "fusermount3"]);
    let host = Host::make(&["--users", "1", "--folders", "1", "--messages", "5"]);
    for how in ["SIGINT", "SIGTERM", "umount", "fusermount3"] {
        let mut m = Mount::start(&host.source_args(), &[]);
        assert!(std::fs::read_dir(&m.mountpoint).unwrap().count() == 1);
        let status = match how {
            "SIGINT" => m.stop_with(libc::SIGINT),
            "SIGTERM" => m.stop_with(libc::SIGTERM),
            "umount" => {
                assert!(
                    std::process::Command::new("umount")
                        .arg(&m.mountpoint)
                        .status()
                        .unwrap()
                        .success()
                );
                m.wait()
            }
            _ => {
                assert!(
                    std::process::Command::new("fusermount3")
                        .arg("-u")
                        .arg(&m.mountpoint)
                        .status()
                        .unwrap()
                        .success()
                );
                m.wait()
            }
        };
        assert!(status.success(), "{how}: {status}\n{}", m.log());
        assert!(!common::is_mounted(&m.mountpoint), "{how}: still mounted");
    }
}

#[test]
fn writes_are_refused_with_eacces_the_way_dovecot_understands() {
    common::require_root_and_tools(&["setpriv"]);
    let host = Host::make(&["--users", "1", "--folders", "2", "--messages", "5"]);
    let user = &host.users()[0];
    let m = Mount::start(&host.source_args(), &["--owner", "nobody"]);
    let root = m.mountpoint.join(user);
    let msg = common::first_entry(&root.join("cur"));
    let q = |p: &Path| format!("'{}'", p.display());
    for (what, script) in [
        ("create in cur", format!("touch {}", q(&root.join("cur/x")))),
        ("create in new", format!("touch {}", q(&root.join("new/x")))),
        ("write a message", format!("echo x >> {}", q(&msg))),
        (
            "rename a message",
            format!("mv {} {}", q(&msg), q(&root.join("cur/renamed:2,S"))),
        ),
        ("make a folder", format!("mkdir {}", q(&root.join(".New")))),
        (
            "write the uidlist",
            format!("echo x >> {}", q(&root.join("dovecot-uidlist"))),
        ),
    ] {
        let (ok, err) = common::as_user("nobody", &script);
        assert!(!ok, "{what} succeeded");
        assert!(err.contains("Permission denied"), "{what}: {err}");
        assert!(!err.contains("Read-only file system"), "{what}: {err}");
    }
    // Root is refused too (the view, not only the mode bits, says no).
    assert_eq!(
        std::fs::write(root.join("cur/x"), b"x")
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EACCES)
    );
    // Dovecot's own files go to the state directory.
    let (ok, err) = common::as_user(
        "nobody",
        &format!(
            "echo hello > {} && cat {}",
            q(&root.join("dovecot.index.log")),
            q(&root.join("dovecot.index.log"))
        ),
    );
    assert!(ok, "{err}");
    assert!(
        m.state
            .path()
            .join(user)
            .join("_INBOX/dovecot.index.log")
            .is_file()
    );
    // Another user cannot even look.
    let (ok, err) = common::as_user("mail", &format!("ls {}", q(&root)));
    assert!(!ok && err.contains("Permission denied"), "{err}");
}

#[test]
fn the_daemon_survives_truncation_and_rewrites_while_reading() {
    common::require_root_and_tools(&[]);
    let host = Host::make(&[
        "--users",
        "1",
        "--folders",
        "0",
        "--messages",
        "60",
        "--big-every",
        "3",
        "--seed",
        "5",
    ]);
    let user = host.users()[0].clone();
    let inbox = host.inbox(&user);
    let original = std::fs::read(&inbox).unwrap();
    let mut m = Mount::start(&host.source_args(), &["--recheck-ms", "50"]);
    let cur = m.mountpoint.join(&user).join("cur");
    let names: Vec<_> = std::fs::read_dir(&cur)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let old_bytes: BTreeMap<_, _> = names
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();

    // A reader walks the folder while the mbox is truncated and rewritten under it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, cur, old_bytes) = (stop.clone(), cur.clone(), old_bytes.clone());
        std::thread::spawn(move || {
            let mut wrong = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for e in std::fs::read_dir(&cur).into_iter().flatten().flatten() {
                    if let Ok(data) = std::fs::read(e.path()) {
                        if let Some(old) = old_bytes.get(&e.path()) {
                            // Same name: must be the same message.
                            if *old != data {
                                wrong.push(e.path());
                            }
                        }
                    }
                }
            }
            wrong
        })
    };
    let other = Host::make(&[
        "--users",
        "1",
        "--folders",
        "0",
        "--messages",
        "40",
        "--big-every",
        "3",
        "--seed",
        "99",
    ]);
    let replacement = std::fs::read(other.inbox(&user)).unwrap();
    for i in 0..20 {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&inbox)
            .unwrap();
        f.set_len(0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let content = if i % 2 == 0 { &replacement } else { &original };
        std::fs::write(&inbox, content).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    std::fs::write(&inbox, &replacement).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let wrong = reader.join().unwrap();
    assert!(wrong.is_empty(), "old names served new bytes: {wrong:?}");
    assert!(m.alive(), "the daemon died:\n{}", m.log());
    // The new content is what the folder shows now.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let now = std::fs::read_dir(&cur).unwrap().count()
        + std::fs::read_dir(m.mountpoint.join(&user).join("new"))
            .unwrap()
            .count();
    assert_eq!(now, other.manifest().len());
}
