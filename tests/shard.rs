//! `--shard K/N`: every user in exactly one shard, the same on every run; shards written one
//! by one make the same DEST as one run.

mod common;

use std::collections::BTreeSet;

use common::{Host, mboxfs, run};

fn plan_users(host: &Host, extra: &[&str]) -> BTreeSet<String> {
    let v = common::plan_json(&host.source_args(), extra);
    v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn shards_split_users_and_add_up_to_the_whole() {
    common::require_root_and_tools(&[]);
    let host = Host::make(&[
        "--users",
        "9",
        "--folders",
        "1",
        "--messages",
        "3",
        "--seed",
        "31",
    ]);
    let all: BTreeSet<String> = host.users().into_iter().collect();
    assert_eq!(plan_users(&host, &[]), all);
    let mut seen = BTreeSet::new();
    for k in 1..=3 {
        let part = plan_users(&host, &["--shard", &format!("{k}/3")]);
        assert_eq!(
            part,
            plan_users(&host, &["--shard", &format!("{k}/3")]),
            "not stable"
        );
        assert!(part.is_disjoint(&seen), "{part:?} overlaps {seen:?}");
        seen.extend(part);
    }
    assert_eq!(seen, all);

    let dir = common::open_dir("mboxfs-shard");
    let dest = dir.path().join("mail2");
    for k in 1..=2 {
        let out = run(
            "materialize",
            &dest,
            &host.source_args(),
            &["--shard", &format!("{k}/2")],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Quiet by default: no progress or info lines on stderr.
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run("verify", &dest, &host.source_args(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    for bad in ["0/2", "3/2", "1/0", "two/3"] {
        let out = mboxfs()
            .arg("plan")
            .args(host.source_args())
            .args(["--shard", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("expected K/N"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
