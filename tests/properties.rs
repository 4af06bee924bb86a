//! Property tests of the scanner and the index on hostile input (the fuzz target in `fuzz/`
//! checks the same invariants without a budget).

use mboxfs::index::Indexer;
use mboxfs::scan::{Haystack, RawMessage, ScanError, Scanner, SliceHaystack, Unquote};
use proptest::prelude::*;

/// Shows at most `window` bytes at a time, as the `pread` reader does.
struct Windowed<'a> {
    data: &'a [u8],
    window: usize,
}

impl Haystack for Windowed<'_> {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn get(&mut self, offset: u64, min: usize) -> std::io::Result<&[u8]> {
        let start = offset as usize;
        Ok(&self.data[start..(start + self.window.max(min)).min(self.data.len())])
    }
}

fn scan(hay: &mut impl Haystack, unquote: Unquote) -> Result<Vec<RawMessage>, String> {
    let mut s = Scanner::new(unquote);
    let mut out = Vec::new();
    let mut m = RawMessage::default();
    loop {
        match s.next_message(hay, &mut m) {
            Ok(true) => out.push(m.clone()),
            Ok(false) => return Ok(out),
            Err(ScanError::NotMbox(why)) => return Err(why),
            Err(ScanError::Io(e)) => panic!("I/O error from a slice: {e}"),
        }
    }
}

/// Spans are ordered, disjoint and inside the data; hidden ranges inside their message.
fn check_invariants(data: &[u8], msgs: &[RawMessage]) {
    let len = data.len() as u64;
    let mut prev_end = 0;
    for m in msgs {
        assert!(m.from_line.start >= prev_end, "overlap");
        assert!(m.from_line.start < m.from_line.end, "empty From_ line");
        assert!(m.from_line.end <= m.header_end.max(m.from_line.end));
        assert!(m.header_end <= m.end.max(m.header_end));
        assert!(m.end <= len && m.from_line.end <= len, "out of bounds");
        let mut h_prev = m.from_line.end;
        for h in &m.hidden {
            assert!(
                h.start >= h_prev && h.start < h.end && h.end <= m.end,
                "hidden range {h:?} in {m:?}"
            );
            h_prev = h.end;
        }
        let served =
            (m.end - m.from_line.end) - m.hidden.iter().map(|h| h.end - h.start).sum::<u64>();
        assert!(m.newlines <= served && m.crlf <= m.newlines);
        assert!(data[m.from_line.start as usize..].starts_with(b"From "));
        prev_end = m.end.max(m.from_line.end);
    }
}

fn check_everything(data: &[u8], window: usize) {
    for unquote in [Unquote::None, Unquote::Mboxrd] {
        let whole = scan(&mut SliceHaystack(data), unquote);
        let windowed = scan(&mut Windowed { data, window }, unquote);
        assert_eq!(
            format!("{whole:?}"),
            format!("{windowed:?}"),
            "window {window}"
        );
        if let Ok(msgs) = whole {
            check_invariants(data, &msgs);
            let mut ix = Indexer::new(jiff::tz::TimeZone::UTC, 7);
            for m in &msgs {
                ix.push(m);
            }
            let ix = ix.finish(data.len() as u64);
            let mut prev = 0;
            for m in &ix.messages {
                assert!(m.uid > prev, "UIDs must grow");
                prev = m.uid;
                let _ = m.maildir_flags();
                assert!(m.size(&ix) <= m.len);
            }
            assert!(ix.uid_next > prev || prev == u32::MAX);
        }
    }
}

/// Bytes from an alphabet that makes From_ lines, headers and separators likely.
fn mboxish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"From "[..],
        b"From a Wed Dec  2 05:53:22 1992\n",
        b"From  Mon Jan  1 00:00 2001 -0700\n",
        b"\n",
        b"\r\n",
        b">",
        b":",
        b" ",
        b"Status: RO\n",
        b"X-Status: AFT\n",
        b"X-UID: 4\n",
        b"X-UID: 99999999999\n",
        b"X-IMAP: 1 5 Junk\n",
        b"X-IMAPbase: 7 3\n",
        b"X-Keywords: a b\n",
        b"Content-Length: 3\n",
        b"Content-Length: 0\n",
        b"Content-Length: 3\n\nabc\nFrom b Thu Dec  3 05:53:22 1992\n",
        b"\t",
        b"x",
        b"\0",
        b"\xff",
    ]);
    // Mostly starting with a From_ line, as an mbox does.
    let start = prop::sample::select(vec![
        &b"From s Wed Dec  2 05:53:22 1992\n"[..],
        b"\n\nFrom s Wed Dec  2 05:53 1992\n",
        b"",
    ]);
    (start, prop::collection::vec(pieces, 0..200))
        .prop_map(|(s, v)| [s.to_vec(), v.concat()].concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(data in prop::collection::vec(any::<u8>(), 0..2000), window in 1usize..300) {
        check_everything(&data, window);
    }

    #[test]
    fn random_bytes_after_a_from_line(tail in prop::collection::vec(any::<u8>(), 0..2000), window in 1usize..300) {
        let mut data = b"From x Wed Dec  2 05:53:22 1992\n".to_vec();
        data.extend(tail);
        check_everything(&data, window);
    }

    #[test]
    fn narrow_alphabet(data in mboxish(), window in 1usize..200) {
        check_everything(&data, window);
    }
}

/// The narrow alphabet does reach the interesting paths (many messages, hidden headers).
#[test]
fn the_narrow_alphabet_makes_real_mboxes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut multi, mut hidden, mut read) = (0, 0, 0);
    for _ in 0..1000 {
        let data = mboxish().new_tree(&mut runner).unwrap().current();
        if let Ok(msgs) = scan(&mut SliceHaystack(&data), Unquote::None) {
            multi += usize::from(msgs.len() >= 2);
            hidden += usize::from(msgs.iter().any(|m| !m.hidden.is_empty()));
            read += usize::from(msgs.iter().any(|m| !m.events.is_empty()));
        }
    }
    assert!(
        multi > 400 && hidden > 400 && read > 400,
        "{multi} {hidden} {read}"
    );
}
