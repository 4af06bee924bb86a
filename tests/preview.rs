//! README's first command, `scripts/preview.sh`, run to the point where it shows what a client
//! sees (MBOXFS_PREVIEW_ONESHOT), on a spare port.

mod common;

#[test]
fn the_preview_shows_every_users_mail_and_cleans_up() {
    common::require_root_and_tools(&["dovecot", "doveadm"]);
    let port = common::free_port();
    let out =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/preview.sh"))
            .env("MBOXFS_BIN", env!("CARGO_BIN_EXE_mboxfs"))
            .env("MBOXFS_PREVIEW_ONESHOT", "1")
            .env("MBOXFS_PREVIEW_PORT", port.to_string())
            .output()
            .unwrap();
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
    // Nothing left behind.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("mboxfs-preview"),
        "still mounted:\n{mounts}"
    );
}
