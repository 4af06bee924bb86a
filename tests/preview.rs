//! README's first command, `scripts/preview.sh`, run to the point where it shows what a client
//! sees (MBOXFS_PREVIEW_ONESHOT), on a spare port: Dovecot serves through the configuration
//! `mboxfs dovecot-config` wrote, only the sample's users log in, writes are refused, and
//! mboxfs's log stays out of the listing.

mod common;

use common::imap::Imap;

#[test]
fn the_preview_shows_every_users_mail_and_cleans_up() {
    common::require_root_and_tools(&["dovecot", "doveadm"]);
    let port = common::free_port();
    let keep = tempfile::tempdir().unwrap();
    // preview.sh makes the system user that owns the sample's trees; the test removes it again
    // unless it was there before.
    let _user = RemoveUser::if_new("mboxfs-preview");
    let out =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/preview.sh"))
            .env("MBOXFS_BIN", env!("CARGO_BIN_EXE_mboxfs"))
            .env("MBOXFS_PREVIEW_ONESHOT", "1")
            .env("MBOXFS_PREVIEW_PORT", port.to_string())
            .env("MBOXFS_PREVIEW_KEEP", keep.path())
            .output()
            .unwrap();
    let env = std::fs::read_to_string(keep.path().join("env")).unwrap_or_default();
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    let running = Running {
        run: get("run"),
        pids: [get("dovecot_pid"), get("mboxfs_pid")],
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every user's INBOX, with the message count the sample's manifest gives.
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sample/manifest.jsonl"
    ))
    .unwrap();
    for user in ["user000", "user001", "user002"] {
        let n = manifest
            .lines()
            .filter(|l| l.contains(&format!("\"user\": \"{user}\", \"folder\": \"INBOX\"")))
            .count();
        assert!(
            text.contains(&format!("INBOX messages={n} ")),
            "{user}: {n} messages expected in\n{text}"
        );
    }
    assert!(text.contains("Entwürfe messages="), "{text}");
    assert!(text.contains(&format!("Dovecot on 127.0.0.1:{port}")));
    // Only the listing: no log line of mboxfs's (they go to its log file).
    for l in text.lines() {
        assert!(
            !l.contains(" WARN ") && !l.contains(" INFO ") && !l.starts_with("mboxfs:"),
            "a log line in the listing: {l}\n{text}"
        );
    }
    // The configuration is mboxfs dovecot-config's, read-only, with the sample's users.
    let conf = std::fs::read_to_string(format!("{}/dovecot/dovecot.conf", running.run)).unwrap();
    assert!(
        conf.contains("# Written by: mboxfs dovecot-config "),
        "{conf}"
    );
    assert!(conf.contains("acl = vfile:"), "{conf}");
    assert_eq!(
        login(port, "user000", "pw", Some("SELECT INBOX")),
        ["OK", "OK [READ-ONLY]"]
    );
    assert_eq!(
        login(port, "user002", "pw", Some("CREATE Test")),
        ["OK", "NO [NOPERM]"]
    );
    assert_eq!(
        login(port, "user000", "wrong", None),
        ["NO [AUTHENTICATIONFAILED]"]
    );
    assert_eq!(
        login(port, "root", "pw", None),
        ["NO [AUTHENTICATIONFAILED]"]
    );
    drop(running);
    // Nothing left behind.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("mboxfs-preview"),
        "still mounted:\n{mounts}"
    );
}

/// The preview left running (MBOXFS_PREVIEW_KEEP), stopped and cleaned up on drop.
struct Running {
    run: String,
    pids: [String; 2],
}

impl Drop for Running {
    fn drop(&mut self) {
        for pid in &self.pids {
            if let Ok(pid) = pid.parse::<u32>() {
                // The preview's processes, which this test started.
                common::signal(pid, libc::SIGTERM);
                for _ in 0..200 {
                    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
            }
        }
        if self.run.starts_with("/run/mboxfs-preview.") {
            let mnt = format!("{}/mnt", self.run);
            if common::is_mounted(std::path::Path::new(&mnt)) {
                let _ = std::process::Command::new("umount")
                    .args(["-l", &mnt])
                    .status();
            }
            let _ = std::fs::remove_dir_all(&self.run);
        }
    }
}

/// LOGIN, then one command; the tagged answers' first words (`OK`, `NO [NOPERM]`...).
fn login(port: u16, user: &str, password: &str, then: Option<&str>) -> Vec<String> {
    let mut c = Imap::connect(port);
    let mut out = Vec::new();
    let cmds = [
        Some(format!("LOGIN {user} {password}")),
        then.map(str::to_string),
    ];
    for cmd in cmds.iter().flatten() {
        let (_, a) = c.cmd(cmd, None);
        let words: Vec<&str> = a.split(' ').collect();
        let code = words
            .get(1)
            .is_some_and(|w| w.starts_with('[') && !w.starts_with("[CAPABILITY"));
        let n = if code { 2 } else { 1 };
        out.push(words[..n].join(" "));
        if !out.last().unwrap().starts_with("OK") {
            break;
        }
    }
    out
}

/// Removes a system user on drop, if it did not exist when made.
struct RemoveUser(Option<&'static str>);

impl RemoveUser {
    fn if_new(name: &'static str) -> RemoveUser {
        let exists = std::process::Command::new("id")
            .arg(name)
            .output()
            .is_ok_and(|o| o.status.success());
        RemoveUser((!exists).then_some(name))
    }
}

impl Drop for RemoveUser {
    fn drop(&mut self) {
        if let Some(name) = self.0 {
            let _ = std::process::Command::new("userdel").arg(name).status();
        }
    }
}
