//! `mboxfs plan`, run as a user would.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{Host, mboxfs};

fn plan(host: &Host, extra: &[&str]) -> std::process::Output {
    mboxfs()
        .arg("plan")
        .args(host.source_args())
        .args(extra)
        .output()
        .unwrap()
}

/// Every file under `dir` with its size, mtime and atime.
fn snapshot(dir: &std::path::Path) -> Vec<(String, u64, i64, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((
                    e.path().display().to_string(),
                    m.len(),
                    m.mtime(),
                    m.atime(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn plan_of_a_clean_host() {
    let host = Host::make(&["--users", "2", "--folders", "5", "--messages", "30"]);
    // The mail: the spool and the homes (the lists are configuration, read as any file is).
    let mail = |h: &Host| {
        [
            snapshot(&h.path().join("var")),
            snapshot(&h.path().join("home")),
        ]
        .concat()
    };
    let before = mail(&host);
    let out = plan(&host, &["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["totals"]["messages"].as_u64().unwrap() as usize,
        host.manifest().len()
    );
    assert_eq!(json["totals"]["errors"], 0);
    assert_eq!(json["users"].as_array().unwrap().len(), 2);
    let inbox = &json["users"][0]["folders"][0];
    assert_eq!(inbox["name"], "INBOX");
    assert!(
        inbox["uidvalidity_source"] == "pseudo-message"
            || inbox["uidvalidity_source"] == "x-imapbase"
    );
    // The text form says the same.
    let text = String::from_utf8(plan(&host, &[]).stdout).unwrap();
    assert!(
        text.contains(&format!("{} messages", host.manifest().len())),
        "{text}"
    );
    // No mail file was written, nor even marked as read.
    assert_eq!(mail(&host), before);
}

#[test]
fn every_problem_is_named_and_the_exit_status_says_so() {
    let host = Host::make(&["--users", "2", "--folders", "2", "--messages", "10"]);
    let users = host.users();
    let (alice, bob) = (&users[0], &users[1]);
    let home = host.path().join("home").join(alice);
    std::fs::write(home.join("Trash"), b"*mbx*\r\n0000000000000000\r\n").unwrap();
    std::fs::write(home.join("notes"), b"Dear diary,\n").unwrap();
    std::fs::write(home.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink(host.inbox(bob), home.join("bobs-inbox")).unwrap();
    let mut list = std::fs::read_to_string(host.path().join("folderlist")).unwrap();
    for f in ["Trash", "notes", "empty", "bobs-inbox", "missing"] {
        list += &format!("{alice}/{f}\n");
    }
    std::fs::write(host.path().join("folderlist"), list).unwrap();
    let out = plan(&host, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
            .to_string()
    };
    assert!(line("Trash: not migrated").contains("mbx"));
    assert!(line("notes: not migrated").contains("first line is not a From_ line"));
    assert!(line("empty: empty").contains("note"));
    assert!(line("bobs-inbox:").contains("symbolic link"));
    assert!(line("missing:").contains("does not exist"));
}

#[test]
fn bad_list_lines_stop_everything_unless_skipped() {
    let host = Host::make(&["--users", "2", "--folders", "1", "--messages", "5"]);
    let mut list = std::fs::read_to_string(host.path().join("folderlist")).unwrap();
    list += "# comment\n\nnobody-here/x\nuser000/../../etc/shadow\n";
    std::fs::write(host.path().join("folderlist"), list).unwrap();
    let out = plan(&host, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("folderlist: line 5: user \"nobody-here\" is not in the userlist"),
        "{err}"
    );
    assert!(
        err.contains("folderlist: line 6: \"user000/../../etc/shadow\": '..' in the path"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = plan(&host, &["--skip-bad"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout).unwrap().contains("(skipped)"));
}
