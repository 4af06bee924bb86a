//! DEST as an admin meets it: a second run while one is writing, a read-only file system, a
//! full disk, and dates a file's time cannot hold.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{HandHost, Host, MountGuard, SmallDisk, mboxfs, run, text};

/// Message files under `dest` (every `cur/` and `new/`).
fn message_files(dest: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dest.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() && (d.ends_with("cur") || d.ends_with("new")) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_second_materialize_on_one_dest_refuses_at_once() {
    common::require_root_and_tools(&[]);
    let host = Host::make(&[
        "--users",
        "2",
        "--folders",
        "4",
        "--messages",
        "40",
        "--seed",
        "17",
    ]);
    let dir = tempfile::tempdir().unwrap();
    // The first run is stopped (SIGSTOP) once it holds DEST, then the second one starts.
    for attempt in 0..20 {
        let dest = dir.path().join(format!("d{attempt}"));
        let mut first = mboxfs()
            .arg("materialize")
            .arg(&dest)
            .args(host.source_args())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while !dest.join(".mboxfs-materialize").exists() && first.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_micros(200));
        }
        common::signal(first.id(), libc::SIGSTOP);
        if first.try_wait().unwrap().is_some() {
            continue; // It ended before it was stopped: try again.
        }
        let t = Instant::now();
        let second = run("materialize", &dest, &host.source_args(), &[]);
        let took = t.elapsed();
        let verify = run("verify", &dest, &host.source_args(), &[]);
        common::signal(first.id(), libc::SIGCONT);
        assert!(first.wait().unwrap().success());
        assert_eq!(second.status.code(), Some(2), "{}", text(&second));
        assert!(
            text(&second).contains("another mboxfs materialize is writing it"),
            "{}",
            text(&second)
        );
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert_eq!(verify.status.code(), Some(2), "{}", text(&verify));
        assert!(text(&verify).contains("is writing it"), "{}", text(&verify));
        // Once it has ended, DEST is whole.
        let v = run("verify", &dest, &host.source_args(), &[]);
        assert!(v.status.success(), "{}", text(&v));
        return;
    }
    panic!("the first run always ended before it could be stopped");
}

#[test]
fn a_finished_dest_on_a_read_only_file_system_verifies_and_reruns() {
    common::require_root_and_tools(&["mount", "umount"]);
    let host = Host::make(&[
        "--users",
        "2",
        "--folders",
        "3",
        "--messages",
        "10",
        "--seed",
        "5",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("d");
    let out = run("materialize", &dest, &host.source_args(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    // `mount --bind` then a read-only remount of the bind.
    let _guard = MountGuard::read_only_bind(&dest, &ro);
    assert!(
        std::fs::write(ro.join("probe"), "x").is_err(),
        "not read-only"
    );
    let v = run("verify", &ro, &host.source_args(), &[]);
    assert!(v.status.success(), "{}", text(&v));
    let m = run("materialize", &ro, &host.source_args(), &[]);
    assert!(m.status.success(), "{}", text(&m));
    assert!(text(&m).contains("nothing written"), "{}", text(&m));
}

/// The summary line's `<n> messages (<w> written`.
fn summary_counts(out: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.contains(" messages (") && l.contains(" written"))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"));
    let num = |after: &str| -> u64 {
        let at = line.find(after).unwrap();
        line[..at]
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (num(" messages ("), num(" written"))
}

#[test]
fn after_a_full_disk_the_summary_counts_what_is_on_disk() {
    common::require_root_and_tools(&["mount", "umount"]);
    let small = SmallDisk::new();
    let (host, dest) = (&small.host, &small.dest);
    let out = run("materialize", dest, &host.source_args(), &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("the disk is full"), "{t}");
    let on_disk = message_files(dest).len() as u64;
    assert!(on_disk > 0);
    assert_eq!(summary_counts(&t), (on_disk, on_disk), "{t}");
    small.tmpfs.resize_tmpfs("200m");
    let out = run("materialize", dest, &host.source_args(), &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let total = message_files(dest).len() as u64;
    assert_eq!(summary_counts(&t), (total, total - on_disk), "{t}");
}

#[test]
fn dates_a_file_cannot_hold_are_reported_and_agreed_on() {
    common::require_root_and_tools(&[]);
    let host = HandHost::new(tempfile::tempdir().unwrap(), "spool", &["mbxdates"], "");
    std::fs::write(
        host.inbox("mbxdates"),
        // c-client reads these years as 2050 and 2097 (the last it can hold): past what every
        // file system stores as an mtime.
        "From a@example.org Sat Dec 31 23:59:59 2050\nSubject: year 2050\n\nlater\n\n\
         From a@example.org Thu Dec 31 23:59:59 2097\nSubject: year 2097\n\nlast\n\n\
         From a@example.org Wed Dec  2 05:53:22 1992\nSubject: fine\n\nok\n",
    )
    .unwrap();
    let args = host.source_args();
    let plan = mboxfs().arg("plan").args(&args).output().unwrap();
    let t = text(&plan);
    assert!(plan.status.success(), "{t}");
    assert!(t.contains("2 message(s) dated outside"), "{t}");
    assert!(t.contains("warning"), "{t}");
    let dest = host.path().join("dest");
    let out = run("materialize", &dest, &args, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let mut mtimes: Vec<i64> = message_files(&dest)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().mtime())
        .collect();
    mtimes.sort();
    assert_eq!(
        mtimes,
        [723_275_602, i64::from(i32::MAX), i64::from(i32::MAX)]
    );
    let v = run("verify", &dest, &args, &[]);
    assert!(v.status.success(), "{}", text(&v));
    let again = run("materialize", &dest, &args, &[]);
    assert!(text(&again).contains("nothing written"), "{}", text(&again));
}
