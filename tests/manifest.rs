//! The model against what `mkcorpus.py` says each message must look like over IMAP.

mod common;

use std::collections::BTreeMap;

use mboxfs::mbox::{self, ReadMode};
use mboxfs::model::Tree;
use mboxfs::scan::flag;
use sha2::{Digest, Sha256};

#[test]
fn every_message_of_a_mkcorpus_host_is_in_the_model() {
    let host = common::Host::make(&[
        "--users",
        "3",
        "--folders",
        "15",
        "--messages",
        "40",
        "--big-every",
        "25",
        "--seed",
        "7",
    ]);
    let mut args = vec!["mboxfs".to_string(), "plan".into()];
    args.extend(host.source_args());
    let cli: mboxfs::cli::Cli = clap::Parser::parse_from(&args);
    let mboxfs::cli::Command::Plan(plan) = cli.command else {
        unreachable!()
    };
    let config = plan.source.config(ReadMode::Pread).unwrap();
    let tree = Tree::build(&config.layout.load().unwrap(), &config.tree);
    assert_eq!(
        tree.all_problems()
            .filter(|p| p.severity == mboxfs::source::Severity::Error)
            .count(),
        0
    );

    let mut want: BTreeMap<(String, String), Vec<serde_json::Value>> = BTreeMap::new();
    for m in host.manifest() {
        let key = (
            m["user"].as_str().unwrap().to_string(),
            m["folder"].as_str().unwrap().to_string(),
        );
        want.entry(key).or_default().push(m);
    }
    let mut checked = 0;
    for user in &tree.users {
        for folder in user.folders.iter().filter(|f| f.source.is_some()) {
            let name = folder.uw_name.as_ref().map_or("INBOX".to_string(), |n| {
                String::from_utf8(n.clone()).unwrap()
            });
            let expected = want
                .remove(&(user.name.clone(), name.clone()))
                .unwrap_or_default();
            let (index, _) = folder.index(&config.index).unwrap();
            let (file, _) = mbox::open(folder.source.as_ref().unwrap()).unwrap();
            assert_eq!(index.messages.len(), expected.len(), "{}/{name}", user.name);
            for (m, w) in index.messages.iter().zip(&expected) {
                let at = format!("{}/{name} uid {}", user.name, m.uid);
                let bytes = mbox::served_bytes(&file, &index, m).unwrap();
                assert_eq!(
                    format!("{:x}", Sha256::digest(&bytes)),
                    w["sha256_served"].as_str().unwrap(),
                    "{at}: bytes"
                );
                assert_eq!(i64::from(m.uid), w["uid"].as_i64().unwrap(), "{at}");
                assert_eq!(
                    i64::from(index.uidvalidity),
                    w["uidvalidity"].as_i64().unwrap(),
                    "{at}"
                );
                assert_eq!(
                    m.time,
                    w["from_time"].as_i64().unwrap(),
                    "{at}: INTERNALDATE"
                );
                for (bit, key) in [
                    (flag::SEEN, "seen"),
                    (flag::ANSWERED, "answered"),
                    (flag::FLAGGED, "flagged"),
                    (flag::DELETED, "deleted"),
                    (flag::DRAFT, "draft"),
                    (flag::OLD, "old"),
                ] {
                    assert_eq!(m.flags & bit != 0, w[key].as_bool().unwrap(), "{at}: {key}");
                }
                let kws: Vec<&str> = (0..32)
                    .filter(|i| m.keywords & (1 << i) != 0)
                    .map(|i| index.keywords[i].as_str())
                    .collect();
                let mut want_kws: Vec<&str> = w["keywords"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap())
                    .collect();
                let mut got = kws.clone();
                got.sort();
                want_kws.sort();
                assert_eq!(got, want_kws, "{at}: keywords");
                checked += 1;
            }
        }
    }
    assert!(
        want.is_empty(),
        "folders the model lacks: {:?}",
        want.keys().collect::<Vec<_>>()
    );
    assert!(checked > 500, "only {checked} messages checked");
}
