//! Prints the model of mbox files as JSON lines (development aid).
use mboxfs::index::Indexer;
use mboxfs::scan::{RawMessage, Scanner, SliceHaystack, Unquote};
use sha2::{Digest, Sha256};
fn main() {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).unwrap();
        let mut hay = SliceHaystack(&data);
        let mut sc = Scanner::new(Unquote::None);
        let mut ix = Indexer::new(jiff::tz::TimeZone::UTC, 1);
        let mut m = RawMessage::default();
        let mut err = None;
        loop {
            match sc.next_message(&mut hay, &mut m) {
                Ok(true) => ix.push(&m),
                Ok(false) => break,
                Err(e) => {
                    err = Some(e.to_string());
                    break;
                }
            }
        }
        let ix = ix.finish(data.len() as u64);
        let list: Vec<_> = ix.messages.iter().map(|g| {
            let mut bytes = Vec::new();
            for r in ix.segments(g) { bytes.extend_from_slice(&data[r.start as usize..r.end as usize]); }
            serde_json::json!({"uid": g.uid, "time": g.time, "size": g.size(&ix), "vsize": g.vsize(&ix),
              "flags": g.maildir_flags(), "recent": g.is_recent(), "sha": format!("{:x}", Sha256::digest(&bytes)),
              "sha_lf": format!("{:x}", Sha256::digest(String::from_utf8_lossy(&bytes).replace("\r\n", "\n").as_bytes()))})
        }).collect();
        println!(
            "{}",
            serde_json::json!({"path": path, "err": err, "uidvalidity": ix.uidvalidity, "src": format!("{:?}", ix.uidvalidity_source), "next": ix.uid_next, "list": list})
        );
    }
}
