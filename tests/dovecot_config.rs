//! `mboxfs dovecot-config`: every configuration it writes is one `doveconf` accepts, the README
//! shows exactly what it prints, and the read-only preview answers every IMAP write with a clear
//! refusal (never [SERVERBUG]) and keeps no flag change, through a real Dovecot on the mount.

mod common;

use std::process::Command;

use common::imap::Imap;
use common::{Dovecot, Host, Mount, mboxfs};

fn dovecot_config(args: &[&str]) -> std::process::Output {
    mboxfs().arg("dovecot-config").args(args).output().unwrap()
}

fn doveconf_accepts(conf: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dovecot.conf");
    std::fs::write(&path, conf).unwrap();
    let out = Command::new("doveconf")
        .arg("-n")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn doveconf_accepts_every_combination() {
    common::require_root_and_tools(&["doveconf"]);
    let targets: [&[&str]; 4] = [
        &[],
        &["--writable"],
        &["--mountpoint", "/srv/preview", "--port", "2143"],
        &["--dest", "/data/mail2"],
    ];
    let users: [&[&str]; 3] = [
        &[],
        &["--virtual", "--owner", "nobody"],
        &[
            "--virtual",
            "--owner",
            "65534:65534",
            "--passwd-file",
            "/etc/mboxfs/users",
        ],
    ];
    let extras: [&[&str]; 3] = [
        &[],
        &[
            "--ssl-cert",
            "/etc/ssl/certs/ssl-cert-snakeoil.pem",
            "--ssl-key",
            "/etc/ssl/private/ssl-cert-snakeoil.key",
        ],
        &[
            "--listen",
            "127.0.0.1",
            "--log-path",
            "/var/log/dovecot-preview.log",
        ],
    ];
    let mut n = 0;
    for t in targets {
        for u in users {
            for e in extras {
                let args: Vec<&str> = [t, u, e].concat();
                let out = dovecot_config(&args);
                assert!(
                    out.status.success(),
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let conf = String::from_utf8(out.stdout).unwrap();
                doveconf_accepts(&conf).unwrap_or_else(|e| panic!("{args:?}: {e}\n{conf}"));
                // UW-IMAP's separator, and read-only unless writable or production.
                assert!(conf.contains("separator = /\n  prefix =\n"), "{conf}");
                let read_only = !args.contains(&"--writable") && !args.contains(&"--dest");
                assert_eq!(conf.contains("acl = vfile:"), read_only, "{args:?}");
                let port = if args.contains(&"--dest") {
                    "143"
                } else if args.contains(&"2143") {
                    "2143"
                } else {
                    "1043"
                };
                assert!(conf.contains(&format!("    port = {port}\n")), "{conf}");
                n += 1;
            }
        }
    }
    assert_eq!(n, 36);
    // Bad input: a clear message and exit status 2, never a configuration.
    for bad in [
        vec!["--mountpoint", "relative"],
        vec!["--dest", "/data/100%"],
        vec!["--virtual", "--owner", "no-such-user-here"],
        vec!["--dest", "/data/mail2", "--writable"],
        vec!["--port", "0"],
    ] {
        let out = dovecot_config(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty(), "{bad:?}");
        assert!(!out.stderr.is_empty(), "{bad:?}");
    }
}

#[test]
fn the_readme_shows_what_dovecot_config_prints() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let marker = "<!-- output of `mboxfs dovecot-config`: tests/dovecot_config.rs checks it -->";
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README lacks {marker}"));
    let rest = &readme[at + marker.len()..];
    let start = rest.find("```\n").unwrap() + 4;
    let end = rest[start..].find("```").unwrap() + start;
    let documented = &rest[start..end];
    let out = dovecot_config(&[]);
    assert_eq!(
        documented,
        String::from_utf8(out.stdout).unwrap(),
        "README's preview configuration is not what `mboxfs dovecot-config` prints: paste it again"
    );
}

fn flags_of(untagged: &[String]) -> Vec<String> {
    untagged
        .iter()
        .filter(|l| l.contains(" FETCH "))
        .cloned()
        .collect()
}

/// A Dovecot configured by `mboxfs dovecot-config` (virtual users, owner nobody) serving the
/// mount.
fn preview_dovecot(host: &Host, m: &Mount, writable: bool) -> Dovecot {
    let dir = common::open_dir("mboxfs-dvconf");
    let d = dir.path();
    for sub in ["homes", "volatile"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    common::chown_tree(&d.join("homes"), "nobody");
    std::fs::set_permissions(
        d.join("volatile"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let passwd: String = host
        .users()
        .iter()
        .map(|u| format!("{u}:{{PLAIN}}pw::::::\n"))
        .collect();
    std::fs::write(d.join("passwd"), passwd).unwrap();
    assert!(
        Command::new("chgrp")
            .arg("dovecot")
            .arg(d.join("passwd"))
            .status()
            .unwrap()
            .success()
    );
    let acl = dovecot_config(&["--print-acl"]);
    std::fs::write(d.join("readonly.acl"), acl.stdout).unwrap();
    let port = common::free_port();
    let p = |s: &str| d.join(s).display().to_string();
    let mut args = vec![
        "--mountpoint".to_string(),
        m.mountpoint.display().to_string(),
        "--virtual".into(),
        "--owner".into(),
        "nobody".into(),
        "--passwd-file".into(),
        p("passwd"),
        "--port".into(),
        port.to_string(),
        "--listen".into(),
        "127.0.0.1".into(),
        "--base-dir".into(),
        p("run"),
        "--log-path".into(),
        p("dovecot.log"),
        "--acl-file".into(),
        p("readonly.acl"),
        "--homes".into(),
        p("homes"),
        "--volatile-dir".into(),
        p("volatile"),
    ];
    if writable {
        args.push("--writable".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = dovecot_config(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The ACL file is in place: no warning about it.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(d.join("dovecot.conf"), &out.stdout).unwrap();
    Dovecot::serve(dir, port)
}

#[test]
fn the_read_only_preview_refuses_every_write_clearly_and_keeps_no_flag() {
    common::require_root_and_tools(&["dovecot", "doveadm"]);
    let host = Host::make(&[
        "--users",
        "2",
        "--folders",
        "2",
        "--messages",
        "6",
        "--seed",
        "5",
    ]);
    let before = common::tree_hashes(host.path());
    let m = Mount::start(&host.source_args(), &["--owner", "nobody"]);
    let dovecot = preview_dovecot(&host, &m, false);
    let port = dovecot.port;
    let users = host.users();
    let user = &users[0];
    // Only the passwd-file's users, with their password.
    let mut c = Imap::connect(port);
    let (_, a) = c.cmd("LOGIN nosuchuser pw", None);
    assert!(a.starts_with("NO [AUTHENTICATIONFAILED]"), "{a}");
    let (_, a) = c.cmd(&format!("LOGIN {user} wrong"), None);
    assert!(a.starts_with("NO [AUTHENTICATIONFAILED]"), "{a}");
    let (_, a) = c.cmd(&format!("LOGIN {user} pw"), None);
    assert!(a.starts_with("OK"), "{a}");
    let (list, _) = c.cmd("LIST \"\" *", None);
    let folder = list
        .iter()
        .filter_map(|l| l.rsplit(" \"/\" ").next())
        .map(|n| n.trim_matches('"').to_string())
        .find(|n| {
            n != "INBOX"
                && list
                    .iter()
                    .any(|l| l.ends_with(n) && l.contains("NoChildren"))
        })
        .expect("a filed folder");
    let (sel, a) = c.cmd("SELECT INBOX", None);
    assert_eq!(a, "OK [READ-ONLY] Select completed");
    assert!(
        sel.contains(&"* OK [PERMANENTFLAGS ()] Read-only mailbox.".to_string()),
        "{sel:?}"
    );
    let (f, _) = c.cmd("FETCH 1:* (UID FLAGS)", None);
    let flags_before = flags_of(&f);
    let exists = sel.iter().find(|l| l.ends_with(" EXISTS")).unwrap().clone();

    let message: &[u8] = b"From: t@example.org\r\nSubject: test\r\n\r\nhello\r\n";
    let q = |s: &str| format!("\"{s}\"");
    let answers: Vec<(String, String)> = vec![
        ("APPEND".into(), c.cmd("APPEND INBOX", Some(message)).1),
        (
            "APPEND (folder)".into(),
            c.cmd(&format!("APPEND {}", q(&folder)), Some(message)).1,
        ),
        ("CREATE".into(), c.cmd("CREATE NewFolder", None).1),
        (
            "DELETE".into(),
            c.cmd(&format!("DELETE {}", q(&folder)), None).1,
        ),
        (
            "RENAME".into(),
            c.cmd(&format!("RENAME {} Renamed", q(&folder)), None).1,
        ),
        (
            "COPY".into(),
            c.cmd(&format!("COPY 1 {}", q(&folder)), None).1,
        ),
        (
            "MOVE".into(),
            c.cmd(&format!("MOVE 1 {}", q(&folder)), None).1,
        ),
        (
            "STORE".into(),
            c.cmd("STORE 1:* +FLAGS (\\Flagged \\Deleted $Label1)", None)
                .1,
        ),
        ("STORE -".into(), c.cmd("STORE 1:* -FLAGS (\\Seen)", None).1),
        ("EXPUNGE".into(), c.cmd("EXPUNGE", None).1),
    ];
    let got: Vec<String> = answers.iter().map(|(w, a)| format!("{w}: {a}")).collect();
    let want = [
        "APPEND: NO [NOPERM] Permission denied",
        "APPEND (folder): NO [NOPERM] Permission denied",
        "CREATE: NO [NOPERM] Permission denied",
        "DELETE: NO [NOPERM] Permission denied",
        "RENAME: NO [NOPERM] Permission denied",
        "COPY: NO [NOPERM] Permission denied",
        "MOVE: NO [NOPERM] Permission denied",
        // Dovecot's answer in a [READ-ONLY] mailbox: OK, and nothing changes.
        "STORE: OK Store completed",
        "STORE -: OK Store completed",
        "EXPUNGE: OK Expunge completed",
    ];
    assert_eq!(got, want);
    let (r, a) = c.cmd("MYRIGHTS INBOX", None);
    assert_eq!(a, "OK Myrights completed");
    assert_eq!(r, ["* MYRIGHTS INBOX lr"]);
    let (f, _) = c.cmd("FETCH 1:* (UID FLAGS)", None);
    assert_eq!(flags_of(&f), flags_before, "flags changed in the session");
    c.cmd("LOGOUT", None);

    // A new login: the same messages with the same flags; no folder came or went.
    let mut c = Imap::connect(port);
    c.cmd(&format!("LOGIN {user} pw"), None);
    let (list2, _) = c.cmd("LIST \"\" *", None);
    assert_eq!(list2, list);
    let (sel, _) = c.cmd("SELECT INBOX", None);
    assert!(sel.contains(&exists), "{sel:?} lacks {exists}");
    let (f, _) = c.cmd("FETCH 1:* (UID FLAGS)", None);
    assert_eq!(
        flags_of(&f),
        flags_before,
        "flags changed after a new login"
    );
    c.cmd("LOGOUT", None);
    drop(c);

    let log = dovecot.log();
    assert!(!log.contains("Error:") && !log.contains("Panic:"), "{log}");
    drop(dovecot);
    drop(m);
    assert_eq!(common::tree_hashes(host.path()), before, "a source changed");
}

#[test]
fn the_writable_preview_lets_testers_write() {
    common::require_root_and_tools(&["dovecot", "doveadm"]);
    let host = Host::make(&[
        "--users",
        "1",
        "--folders",
        "2",
        "--messages",
        "5",
        "--seed",
        "6",
    ]);
    let before = common::tree_hashes(host.path());
    let m = Mount::start(&host.source_args(), &["--owner", "nobody", "--writable"]);
    let dovecot = preview_dovecot(&host, &m, true);
    let port = dovecot.port;
    let user = &host.users()[0];
    let message: &[u8] = b"From: t@example.org\r\nSubject: test\r\n\r\nhello\r\n";
    let mut c = Imap::connect(port);
    c.cmd(&format!("LOGIN {user} pw"), None);
    let (sel, a) = c.cmd("SELECT INBOX", None);
    assert_eq!(a, "OK [READ-WRITE] Select completed", "{sel:?}");
    let got: Vec<String> = [
        c.cmd("CREATE Tested", None).1,
        c.cmd("APPEND Tested", Some(message)).1,
        c.cmd("COPY 1 Tested", None).1,
        c.cmd("STORE 1 +FLAGS (\\Flagged)", None).1,
        c.cmd("RENAME Tested Tested2", None).1,
    ]
    .into_iter()
    .map(|a| {
        a.split(" [")
            .next()
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    })
    .collect();
    assert_eq!(got, ["OK"; 5], "{}", dovecot.log());
    c.cmd("LOGOUT", None);
    let mut c = Imap::connect(port);
    c.cmd(&format!("LOGIN {user} pw"), None);
    let (st, _) = c.cmd("STATUS Tested2 (MESSAGES)", None);
    assert_eq!(st, ["* STATUS Tested2 (MESSAGES 2)"]);
    c.cmd("SELECT INBOX", None);
    let (f, _) = c.cmd("FETCH 1 (FLAGS)", None);
    assert!(f[0].contains("\\Flagged"), "{f:?}");
    c.cmd("LOGOUT", None);
    let log = dovecot.log();
    assert!(!log.contains("Error:") && !log.contains("Panic:"), "{log}");
    drop(dovecot);
    drop(m);
    assert_eq!(common::tree_hashes(host.path()), before, "a source changed");
}
