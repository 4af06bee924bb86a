//! Source options whose defaults follow UW-IMAP: folder names keep their path (no prefix taken
//! off unless asked), `--user` must name a user of the list, and `plan` reports c-client's
//! warnings.

mod common;

use common::{HandHost, mboxfs};

/// A one-user host whose folder lives in `~/mail/Sent`, as UW-IMAP users often had it.
struct MailHost(HandHost);

impl MailHost {
    fn make(inbox: &[u8], sent: &[u8]) -> MailHost {
        let dir = tempfile::Builder::new()
            .prefix("mboxfs-options")
            .tempdir()
            .unwrap();
        let host = HandHost::new(dir, "spool", &["u"], "u/mail/Sent\n");
        std::fs::create_dir_all(host.home("u").join("mail")).unwrap();
        std::fs::write(host.inbox("u"), inbox).unwrap();
        std::fs::write(host.home("u").join("mail/Sent"), sent).unwrap();
        MailHost(host)
    }

    fn args(&self) -> Vec<String> {
        self.0.source_args_with(&["--trust-owners"])
    }

    fn plan(&self, extra: &[&str]) -> serde_json::Value {
        common::plan_json(&self.args(), extra)
    }
}

const MSG: &[u8] = b"From a Wed Dec  2 05:53:22 1992\nSubject: x\nStatus: RO\n\nbody\n";

#[test]
fn folders_keep_the_names_uw_imap_showed() {
    let host = MailHost::make(MSG, MSG);
    let plan = host.plan(&[]);
    let folders = &plan["users"][0]["folders"];
    let sent = folders
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] != "INBOX")
        .unwrap();
    assert_eq!(sent["name"], "mail/Sent");
    assert_eq!(sent["maildir"], ".mail.Sent");
    // Taking the prefix off is an opt-in.
    let plan = host.plan(&["--strip-prefix", "mail/"]);
    let names: Vec<&str> = plan["users"][0]["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Sent"), "{names:?}");
}

#[test]
fn an_unknown_user_is_an_error_that_names_it() {
    let host = MailHost::make(MSG, MSG);
    let dest = tempfile::tempdir().unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let runs: [Vec<String>; 4] = [
        vec!["plan".into()],
        vec![
            "materialize".into(),
            dest.path().join("out").display().to_string(),
        ],
        vec!["verify".into(), dest.path().display().to_string()],
        vec![
            "mount".into(),
            mnt.path().display().to_string(),
            "--state-dir".into(),
            dest.path().join("state").display().to_string(),
        ],
    ];
    for run in runs {
        let out = mboxfs()
            .args(&run)
            .args(host.args())
            .args(["--user", "nosuchuser"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{run:?}: {err}");
        assert!(err.contains("\"nosuchuser\""), "{run:?}: {err}");
        assert!(!err.contains("--skip-bad"), "{run:?}: {err}");
    }
    assert!(!dest.path().join("out").exists());
    // A known user is fine.
    let out = mboxfs()
        .arg("plan")
        .args(host.args())
        .args(["--user", "u"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

/// Every message where c-client logged a warning is reported by `plan`.
#[test]
fn plan_reports_what_c_client_warned_about() {
    let inbox = b"From a Wed Dec  2 05:53:22 1992\nX-IMAPbase: 5 10 Junk\nX-UID: 3\n\nb\n\n\
                  From a Wed Foo  2 05:53:22 1992\nstatus: R\nX-UID: 2\n\nc\n\n\
                  From a Wed Dec  2 05:53:22 1992\nStatus: R\n O\nSubject: s\n\nd\n";
    let host = MailHost::make(inbox, MSG);
    let plan = host.plan(&[]);
    let inbox = &plan["users"][0]["folders"][0];
    assert_eq!(inbox["name"], "INBOX");
    assert_eq!(inbox["uidvalidity_source"], "discarded");
    let text: Vec<String> = inbox["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap().to_string())
        .collect();
    let has = |what: &str, msg: &str| {
        assert!(
            text.iter()
                .any(|t| t.starts_with(&format!("message {msg} ")) && t.contains(what)),
            "{what} (message {msg}) not in {text:#?}"
        )
    };
    has("Unable to parse internal date", "2");
    has("Discarding bogus status header", "2");
    has("UID 2 less than 4", "2");
    has("Discarding bogus continuation", "3");
    assert!(
        text.iter()
            .any(|t| t.contains("discarded the folder's UIDVALIDITY 5")),
        "{text:#?}"
    );
}
