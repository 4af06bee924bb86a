//! Fuzzes the scanner, the status-header parser and the index, on raw bytes and on bytes mapped
//! into a small mbox alphabet, and checks the invariants the rest of mboxfs relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mboxfs::index::Indexer;
use mboxfs::scan::{RawMessage, Scanner, SliceHaystack, Unquote};

const ALPHABET: &[u8] =
    b"From >\n\r:X-UIDStatusKeywordsIMAPbaseContent-Length 0123456789 Wed Dec  2 05:53:22 1992\t\0";

fn check(data: &[u8]) {
    for unquote in [Unquote::None, Unquote::Mboxrd] {
        let mut hay = SliceHaystack(data);
        let mut scanner = Scanner::new(unquote);
        let mut raw = RawMessage::default();
        let mut ix = Indexer::new(jiff::tz::TimeZone::UTC, 1);
        let mut prev_end = 0u64;
        while let Ok(true) = scanner.next_message(&mut hay, &mut raw) {
            assert!(raw.from_line.start >= prev_end && raw.from_line.start < raw.from_line.end);
            assert!(raw.end <= data.len() as u64);
            let mut at = raw.from_line.end;
            for h in &raw.hidden {
                assert!(h.start >= at && h.start < h.end && h.end <= raw.end);
                at = h.end;
            }
            prev_end = raw.end.max(raw.from_line.end);
            ix.push(&raw);
        }
        let ix = ix.finish(data.len() as u64);
        let mut prev = 0;
        for m in &ix.messages {
            assert!(m.uid > prev);
            prev = m.uid;
            assert!(m.size(&ix) <= m.len);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mapped: Vec<u8> = data
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()])
        .collect();
    let mut framed = b"From a Wed Dec  2 05:53:22 1992\n".to_vec();
    framed.extend_from_slice(&mapped);
    check(&framed);
});
