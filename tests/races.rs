//! A hostile local user racing root: she swaps a directory of hers with a symbolic link
//! (`renameat2(RENAME_EXCHANGE)`, as fast as she can) while root materializes her tree or the
//! mount reads her folder, and she replaces a source while it is copied. Nothing outside her
//! own tree may change owner or mode, no byte of another user's mail may reach her, and the
//! swaps are reported.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{HandHost, Mount, TestUsers, mboxfs, run, text};

const ALICE: &str = "mbxtest-alice";
const BOB: &str = "mbxtest-bob";
/// How long each race runs.
const RACE: Duration = Duration::from_secs(20);

/// Swaps pairs of names (a directory and a symbolic link) with `RENAME_EXCHANGE` until its
/// time is up, empties some directories now and then (so that root has files to write), puts
/// everything back, and prints how many swaps it made.
const SWAPPER: &str = r#"
import ctypes, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
renameat2 = libc.renameat2
renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
AT_FDCWD, RENAME_EXCHANGE = -100, 2
cfg = json.loads(sys.argv[1])
os.chdir(cfg["root"])
pairs = [(a.encode(), b.encode()) for a, b in cfg["pairs"]]
flipped = [False] * len(pairs)
swaps, rounds = 0, 0
deadline = time.time() + cfg["seconds"]
while time.time() < deadline:
    for i, (a, b) in enumerate(pairs):
        if renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0:
            flipped[i] = not flipped[i]
            swaps += 1
    rounds += 1
    if rounds % 500 == 0:
        for d in cfg.get("empty", []):
            try:
                for name in os.listdir(d):
                    try:
                        os.unlink(os.path.join(d, name))
                    except OSError:
                        pass
            except OSError:
                pass
for i in reversed(range(len(pairs))):
    if flipped[i]:
        a, b = pairs[i]
        renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
print(swaps)
"#;

/// Reads every message of a folder of the mount over and over; prints reads, reads that held
/// the marker, and errors.
const READER: &str = r#"
import os, sys, time
root, marker, secs = sys.argv[1], sys.argv[2].encode(), float(sys.argv[3])
deadline = time.time() + secs
reads = leaks = errors = 0
while time.time() < deadline:
    for sub in ("cur", "new"):
        d = os.path.join(root, sub)
        try:
            names = os.listdir(d)
        except OSError:
            errors += 1
            continue
        for n in names:
            try:
                with open(os.path.join(d, n), "rb") as f:
                    data = f.read()
            except OSError:
                errors += 1
                continue
            reads += 1
            if marker in data:
                leaks += 1
print(reads, leaks, errors)
"#;

/// The system's python3 (one under root's home is not for other users).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs `python3 -c script args...` as `user`.
fn spawn_as(user: &str, script: &str, args: &[&str]) -> Child {
    Command::new("setpriv")
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={user}"))
        .args(["--init-groups", python(), "-c", script])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Owner, group and mode of everything under `roots` (links not followed), but `skip`.
fn modes(roots: &[&Path], skip: &Path) -> BTreeMap<PathBuf, (u32, u32, u32)> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = roots.iter().map(|p| p.to_path_buf()).collect();
    while let Some(p) = stack.pop() {
        if p.starts_with(skip) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        out.insert(p.clone(), (md.uid(), md.gid(), md.mode()));
        if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        }
    }
    out
}

fn chown(path: &Path, user: &str) {
    let ok = Command::new("chown")
        .arg("-h")
        .arg(format!("{user}:{user}"))
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Issue 10, hole 1: Alice swaps directories of her DEST tree (a folder, its `tmp/`, INBOX's
/// `cur/`) with links to a directory of root's while root runs `materialize` again and again.
/// Before the fix, the target became hers within 5 runs.
#[test]
fn materialize_never_gives_away_what_a_swapped_link_points_to() {
    common::require_root_and_tools(&["setpriv", "python3"]);
    let _users = TestUsers::hold(&[ALICE, BOB]);
    let host = common::Host::make(&[
        "--users",
        "2",
        "--folders",
        "3",
        "--messages",
        "6",
        "--seed",
        "7",
    ]);
    let p = host.path();
    host.rename_user("user000", ALICE);
    host.rename_user("user001", BOB);
    let dir = common::open_dir("mboxfs-race-dest");
    let dest = dir.path().join("d");
    // Her swaps change her tree after each run: without --revert-user-changes, the guard
    // (issue 13) would refuse every run after the first before writing anything.
    let materialize = || {
        run(
            "materialize",
            &dest,
            &host.source_args(),
            &["--revert-user-changes"],
        )
    };
    let out = materialize();
    assert!(out.status.success(), "{}", text(&out));
    // What she points her links at: a directory and a file of root's.
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("f"), "root's\n").unwrap();
    let mine = dest.join(ALICE);
    let folder = std::fs::read_dir(&mine)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with('.') && mine.join(n).join("cur").is_dir())
        .expect("a folder");
    for link in [
        format!("{folder}/tmpx"),
        format!("{folder}x"),
        "curx".to_string(),
    ] {
        std::os::unix::fs::symlink(&victim, mine.join(&link)).unwrap();
        chown(&mine.join(&link), ALICE);
    }
    let before = modes(&[p, dir.path()], &mine);
    let names = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        v.sort();
        v
    };
    let victim_files = names(&victim);
    let config = serde_json::json!({
        "root": mine,
        "seconds": RACE.as_secs_f64(),
        "pairs": [
            [format!("{folder}/tmp"), format!("{folder}/tmpx")],
            [folder.clone(), format!("{folder}x")],
            ["cur", "curx"],
        ],
        "empty": [format!("{folder}/cur"), format!("{folder}/new"), "cur", "new"],
    })
    .to_string();
    let swapper = spawn_as(ALICE, SWAPPER, &[&config]);
    let started = Instant::now();
    let (mut runs, mut reported) = (0, 0);
    while started.elapsed() < RACE || runs < 50 {
        let out = materialize();
        runs += 1;
        // Exit 0, or 1 with the swap reported; never a crash.
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "run {runs}: {}",
            text(&out)
        );
        if out.status.code() == Some(1) {
            let t = text(&out);
            assert!(t.contains("FAILED"), "run {runs}: {t}");
            if t.contains("symbolic link") {
                reported += 1;
            }
        }
    }
    let swaps: u64 = finish(swapper).parse().unwrap();
    eprintln!(
        "{runs} materialize runs in {:.1?}, {swaps} swaps, {reported} runs reported a link",
        started.elapsed()
    );
    // Nothing outside her own tree changed owner or mode; nothing was written to the victim.
    let after = modes(&[p, dir.path()], &mine);
    assert_eq!(before, after);
    assert_eq!(victim_files, names(&victim));
    assert_eq!(std::fs::read(victim.join("f")).unwrap(), b"root's\n");
    assert!(swaps > 1000, "{swaps} swaps");
    assert!(reported > 0, "no run reported the swapped link");
    // Her links removed, the next run finishes her tree and verify finds it exact.
    for link in [
        format!("{folder}/tmpx"),
        format!("{folder}x"),
        "curx".into(),
    ] {
        std::fs::remove_file(mine.join(link)).unwrap();
    }
    let out = materialize();
    assert!(out.status.success(), "{}", text(&out));
    let out = run("verify", &dest, &host.source_args(), &[]);
    assert!(out.status.success(), "{}", text(&out));
}

/// An mbox of `n` messages whose bodies are `tag` repeated.
fn mbox(tag: &str, uidvalidity: u32, n: usize, body_lines: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..n {
        out += &format!(
            "From sender@example.org Mon Jan  1 00:{:02}:{:02} 2001\n",
            i / 60 % 60,
            i % 60
        );
        if i == 0 {
            out += &format!("X-IMAPbase: {uidvalidity} {}\n", n + 1);
        }
        out += &format!("Subject: {tag} {i}\nX-UID: {}\nStatus: RO\n\n", i + 1);
        for _ in 0..body_lines {
            out += &format!("{tag} {i} {}\n", "x".repeat(60));
        }
        out += "\n";
    }
    out.into_bytes()
}

/// Issue 10, hole 2: Alice swaps `~/x` (a directory holding a decoy mbox named like Bob's
/// inbox: her folder `x/mbxtest-bob`) with a link to the spool directory, while she reads her folder
/// through the mount from another process. Before the fix she read Bob's mail within 25 s. The
/// mount trusts owners here, so that only the walk stands between her and Bob's inbox.
#[test]
fn the_mount_never_serves_another_users_mail_through_a_swapped_link() {
    common::require_root_and_tools(&["setpriv", "python3"]);
    let _users = TestUsers::hold(&[ALICE, BOB]);
    let dir = common::open_dir("mboxfs-race-mount");
    let d = dir.path();
    let spool = d.join("spool");
    let home = d.join("home").join(ALICE);
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::create_dir_all(home.join("x")).unwrap();
    let marker = "BOB-SECRET-7f3a9c";
    let minute_ago = std::time::SystemTime::now() - Duration::from_secs(60);
    let write = |path: &Path, bytes: &[u8], user: &str| {
        std::fs::write(path, bytes).unwrap();
        common::set_mtime(path, minute_ago);
        chown(path, user);
    };
    write(&spool.join(BOB), &mbox(marker, 1_000_000, 20, 3), BOB);
    write(&spool.join(ALICE), &mbox("alice", 2_000_000, 3, 1), ALICE);
    write(
        &home.join("x").join(BOB),
        &mbox("decoy", 3_000_000, 20, 3),
        ALICE,
    );
    std::os::unix::fs::symlink(&spool, home.join("xl")).unwrap();
    chown(&home.join("xl"), ALICE);
    common::chown_tree(&home, ALICE);
    std::fs::write(d.join("userlist"), format!("{ALICE}\n{BOB}\n")).unwrap();
    std::fs::write(d.join("folderlist"), format!("{ALICE}/x/{BOB}\n")).unwrap();
    // Bob has no home here: not a HandHost, which makes one for every user.
    let mut args = common::source_args_at(d, "spool");
    args.push("--trust-owners".to_string());
    // The folder is looked at again every 20 ms: a thousand chances for the race in 20 s, each
    // followed by enough time to read what was indexed.
    let m = Mount::start(&args, &["--recheck-ms", "20"]);
    let folder = m.mountpoint.join(ALICE).join(format!(".x.{BOB}"));
    let config = serde_json::json!({
        "root": home,
        "seconds": RACE.as_secs_f64(),
        "pairs": [["x", "xl"]],
    })
    .to_string();
    let started = Instant::now();
    let swapper = spawn_as(ALICE, SWAPPER, &[&config]);
    let reader = spawn_as(
        ALICE,
        READER,
        &[
            folder.to_str().unwrap(),
            marker,
            &RACE.as_secs_f64().to_string(),
        ],
    );
    let result = finish(reader);
    let swaps: u64 = finish(swapper).parse().unwrap();
    let nums: Vec<u64> = result.split(' ').map(|n| n.parse().unwrap()).collect();
    eprintln!(
        "{:.1?}: {swaps} swaps, {} reads, {} with Bob's mail, {} errors",
        started.elapsed(),
        nums[0],
        nums[1],
        nums[2]
    );
    assert_eq!(nums[1], 0, "Alice read Bob's mail");
    assert!(nums[0] > 200, "only {} reads", nums[0]);
    assert!(swaps > 1000, "{swaps} swaps");
    // The swaps were seen, and said so.
    let log = m.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("x/{BOB}")) && l.contains("symbolic link")),
        "{log}"
    );
    // Her folder is her decoy again once she stops.
    std::thread::sleep(Duration::from_millis(100));
    let (ok, err) = common::as_user(
        ALICE,
        &format!("cat '{}'/cur/* | grep -q decoy", folder.display()),
    );
    assert!(ok, "{err}");
}

/// Issue 10, hole 4: a folder's mbox is replaced (`mv`) while `materialize` runs (one job: the
/// inbox, as big, is copied first, so the replacement may land before, while or after the folder
/// is copied). Each run either copies one whole file (the old or the new one), exactly as a run on
/// that file alone does, or fails with exit status 1; a run afterwards finishes DEST and verify
/// finds it exact.
#[test]
fn a_source_replaced_while_it_is_copied_is_copied_whole_or_failed() {
    common::require_root_and_tools(&[]);
    let host = HandHost::new(
        tempfile::tempdir().unwrap(),
        "spool",
        &["mbxrace"],
        "mbxrace/box\n",
    );
    let d = host.path();
    std::fs::write(host.inbox("mbxrace"), mbox("INBOX", 1_000, 100, 1500)).unwrap();
    // The new file is the longer: copied by the old file's index, it gives slices, not errors.
    let (a, b) = (
        mbox("AAAA", 1_100_000, 60, 1500),
        mbox("BBBB", 2_200_000, 64, 1500),
    );
    let source = d.join("home/mbxrace/box");
    let next = d.join("home/mbxrace/.next");
    let args = host.source_args();
    let materialize = |dest: &Path| {
        mboxfs()
            .arg("materialize")
            .arg(dest)
            .args(&args)
            .args(["--jobs", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The folder's files (messages and control files), by path under its directory.
    let folder = |dest: &Path| -> Vec<(PathBuf, String)> {
        let root = dest.join("mbxrace/.box");
        common::tree_hashes(&root)
            .into_iter()
            .map(|(p, h)| (p.strip_prefix(&root).unwrap().to_path_buf(), h))
            .collect()
    };
    // What a run on each file alone gives.
    let mut reference = Vec::new();
    let mut took = Duration::ZERO;
    for (i, bytes) in [&a, &b].into_iter().enumerate() {
        std::fs::write(&source, bytes).unwrap();
        let dest = d.join(format!("ref{i}"));
        let t = Instant::now();
        let out = materialize(&dest).wait_with_output().unwrap();
        took = took.max(t.elapsed());
        assert!(out.status.success(), "{}", text(&out));
        reference.push(folder(&dest));
    }
    assert_ne!(reference[0], reference[1]);
    let (mut old, mut new, mut failed, mut reread) = (0, 0, 0, 0);
    // At least 12 runs, spread over a run's length; more (up to 48) until one was caught by the
    // replacement while copying, as timings vary with the machine's load.
    const SPREAD: u32 = 12;
    let mut runs = 0;
    for i in 0..4 * SPREAD {
        if i >= SPREAD && reread > 0 {
            break;
        }
        runs += 1;
        std::fs::write(&source, &a).unwrap();
        std::fs::write(&next, &b).unwrap();
        let dest = d.join(format!("dest{i}"));
        let started = Instant::now();
        let child = materialize(&dest);
        // Spread over the run: before the folder is opened, while the inbox or the folder is
        // copied, after.
        std::thread::sleep(took * (i % SPREAD) / SPREAD);
        std::fs::rename(&next, &source).unwrap();
        let out = child.wait_with_output().unwrap();
        took = took.max(started.elapsed());
        let t = text(&out);
        if t.contains("changed while it was copied") {
            reread += 1;
        }
        match out.status.code() {
            Some(0) => {
                let got = folder(&dest);
                if got == reference[0] {
                    old += 1;
                } else if got == reference[1] {
                    new += 1;
                } else {
                    panic!("run {i}: the folder is neither file's copy:\n{t}");
                }
            }
            Some(1) => {
                assert!(t.contains("FAILED"), "{t}");
                failed += 1;
            }
            _ => panic!("run {i}: {t}"),
        }
        let out = materialize(&dest).wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let out = run("verify", &dest, &args, &[]);
        assert!(out.status.success(), "run {i}: {}", text(&out));
        std::fs::remove_dir_all(&dest).unwrap();
    }
    eprintln!(
        "{runs} runs (up to {took:.1?} each): {old} copied the old file, {new} the new one, {failed} failed; {reread} noticed the change while copying"
    );
    assert!(
        reread > 0,
        "no run was caught by the replacement while copying"
    );
}
