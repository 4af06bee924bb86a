//! Fuzzes the readers of UW's other stores on raw bytes: the mbx header and message-line parsers,
//! the mbx index (after a valid header, and on bytes mapped into an mbx alphabet), and the MMDF
//! scanner with the folder index; checks the invariants the rest of mboxfs relies on (messages
//! inside the file, in order, UIDs growing, hidden ranges inside their message).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mboxfs::index::Indexer;
use mboxfs::scan::{RawMessage, SliceHaystack};
use mboxfs::{mbx, mmdf};

const MBX_ALPHABET: &[u8] = b"0123456789abcdefABCDEF,;-\r\n -Dec-1992 05:53:22 +0000xyz\0";
const MMDF_ALPHABET: &[u8] =
    b"\x01\x01\x01\x01\n\n\r :From a Wed Dec  2 05:53:22 1992Status: RO X-UID: 3 X-IMAPbase: 5 9 J\0";

fn check_mbx(data: &[u8]) {
    let _ = mbx::parse_header(data);
    let _ = mbx::parse_entry(data, 2048, data.len() as u64 + 2048);
    if let Ok(ix) = mbx::index(&mut SliceHaystack(data), &jiff::tz::TimeZone::UTC, 1) {
        let mut prev_uid = 0;
        let mut prev_end = 2048;
        for m in &ix.messages {
            assert!(m.offset >= prev_end && m.offset + m.len <= data.len() as u64);
            assert!(m.uid > prev_uid);
            prev_uid = m.uid;
            prev_end = m.offset + m.len;
            assert_eq!(m.size(&ix), m.len);
        }
        assert!(ix.uid_next > prev_uid);
    }
}

fn check_mmdf(data: &[u8]) {
    let mut hay = SliceHaystack(data);
    let mut scanner = mmdf::Scanner::new(1_000_000_000);
    let mut raw = RawMessage::default();
    let mut ix = Indexer::new(jiff::tz::TimeZone::UTC, 1);
    let mut prev_end = 0u64;
    while let Ok(true) = scanner.next_message(&mut hay, &mut raw) {
        assert!(raw.from_line.start >= prev_end && raw.from_line.start < raw.from_line.end);
        assert!(raw.from_line.end <= raw.end && raw.end <= data.len() as u64);
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

fuzz_target!(|data: &[u8]| {
    check_mbx(data);
    check_mmdf(data);
    let map = |alphabet: &[u8]| -> Vec<u8> {
        data.iter().map(|b| alphabet[*b as usize % alphabet.len()]).collect()
    };
    let mut f = mbx::build::header(7, 20, &[b"a", b"b"]);
    f.extend(mbx::build::message(" 2-Dec-1992 05:53:22 +0000", 1, 0x10, 3, b"x\r\n"));
    f.extend(map(MBX_ALPHABET));
    check_mbx(&f);
    let mut m = mmdf::SEPARATOR.to_vec();
    m.extend(map(MMDF_ALPHABET));
    check_mmdf(&m);
});
