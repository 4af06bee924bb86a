//! The MMDF store, read as c-client 2007f's `mmdf` driver reads it, checked against c-client
//! itself (`tests/stores.rs`). Its messages go through the same [`Indexer`](crate::index::Indexer)
//! as mbox messages: the status headers, the pseudo message, UIDs and keywords follow the same
//! rules (the two drivers share that code). What differs is where messages are:
//!
//! - The file starts with the separator line `^A^A^A^A` LF (`mmdf_isvalid()` looks at byte 0:
//!   no white space before it). Each message starts at a separator line and ends at the next
//!   one, which is followed by the next message's own separator; when what follows a closing
//!   separator is not a separator line, c-client takes the closing one as the next opening one.
//!   So anything between two messages (a blank line, even the file's final newline) is a
//!   message of its own.
//! - After the opening separator, a From_ line (c-client's `VALID()`, without the unix driver's
//!   allowance for a final CR) gives INTERNALDATE and is not part of the message. A message
//!   without one is dated with the file's modification time (UTC), as c-client dated it when it
//!   read the folder, and its first line is a header line, even a separator line (then the
//!   header's last).
//! - The header runs to its blank line, or to a separator line (not part of it), or the end of
//!   the file. The body runs to the next separator line, or the end of the file. Nothing else is
//!   dropped: a final blank line is part of the message, and From_ lines are text.
//! - A line that ends with the separator, and is at least 7 bytes long, is cut before it: the
//!   separator ends the message there ([`quirk::CUT_LINE`]).
//! - Served bytes: the stored bytes without bare CRs and without the status headers (the
//!   header is served through c-client's `mail_filter()`, as the unix driver serves it).

use std::io;

use memchr::memmem;

use crate::fromline::{self, MboxDate, Zone};
use crate::scan::{self, Haystack, HeaderEnd, MMDF_SEPARATOR, RawMessage, ScanError, flag, quirk};

/// The separator line.
pub const SEPARATOR: &[u8] = MMDF_SEPARATOR;
const SEP: u64 = 5;

/// Whether a file starts like an MMDF file c-client reads (`mmdf_isvalid()`).
pub fn is_mmdf(head: &[u8]) -> bool {
    head.starts_with(SEPARATOR)
}

/// The INTERNALDATE c-client gave a message without a From_ line: the file's modification time,
/// broken down in UTC.
pub fn file_date(mtime: i64) -> MboxDate {
    let ts = jiff::Timestamp::from_second(mtime).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let dt = jiff::tz::TimeZone::UTC.to_datetime(ts);
    MboxDate {
        year: dt.year().max(0) as u16,
        month: dt.month() as u8,
        day: dt.day() as u8,
        hour: dt.hour() as u8,
        minute: dt.minute() as u8,
        second: dt.second() as u8,
        zone: Zone::Offset(0),
        parsed: true,
    }
}

/// Walks the messages of one MMDF file.
pub struct Scanner {
    pos: u64,
    started: bool,
    /// c-client's parser state, carried from one message to the next (see [`scan::scan_header`]).
    retain: bool,
    file_date: MboxDate,
    finder: memmem::Finder<'static>,
}

impl Scanner {
    /// `mtime`: the file's modification time (seconds), the date of messages without a From_
    /// line.
    pub fn new(mtime: i64) -> Self {
        Scanner {
            pos: 0,
            started: false,
            retain: true,
            file_date: file_date(mtime),
            finder: memmem::Finder::new(SEPARATOR),
        }
    }

    /// Reads the next message into `msg` (its `from_line` is the opening separator and the
    /// From_ line, if any). Returns `Ok(false)` at the end of the file.
    pub fn next_message(
        &mut self,
        hay: &mut impl Haystack,
        msg: &mut RawMessage,
    ) -> Result<bool, ScanError> {
        let len = hay.len();
        if !self.started {
            self.started = true;
            if len > 0 {
                let w = hay.get(0, SEP as usize)?;
                if !w.starts_with(SEPARATOR) {
                    return Err(ScanError::NotMbox(
                        "not an MMDF file: it does not start with the separator ^A^A^A^A".into(),
                    ));
                }
            }
        }
        if self.pos >= len {
            return Ok(false);
        }
        msg.reset();

        let open = self.pos;
        let first = open + SEP;
        let from = if first < len {
            Self::find_from_line(hay, first)?
        } else {
            None
        };
        let (from_end, separator_first) = match from {
            Some((end, date)) => {
                msg.date = Some(date);
                if !date.parsed {
                    let line = scan::line_text(hay, first, end)?;
                    let shown = fromline::date_text_mmdf(&line).unwrap_or_default();
                    msg.notes.push(format!(
                        "UW-IMAP could not read the From_ line date ({shown:?}; it logged \
                         \"Unable to parse internal date\"): INTERNALDATE is {}-{:02}-{:02} \
                         00:00:00 UTC, as UW-IMAP showed it",
                        date.year, date.month, date.day
                    ));
                }
                (end, false)
            }
            None => {
                msg.date = Some(self.file_date);
                msg.flags |= flag::DATE_FROM_FILE;
                (first.min(len), true)
            }
        };
        msg.from_line = open..from_end;
        let header = scan::scan_header(
            hay,
            from_end,
            msg,
            HeaderEnd::Mmdf { separator_first },
            &mut self.retain,
        )?;
        let header_end = header.end;
        msg.header_end = header_end;
        let close = self.terminator(hay, header_end, msg)?;
        msg.end = close.unwrap_or(len);
        self.pos = match close {
            None => len,
            Some(q) => {
                let r = q + SEP;
                if r >= len {
                    len
                } else if hay.get(r, SEP as usize)?.starts_with(SEPARATOR) {
                    r
                } else {
                    // What follows is not a separator: the closing one opens the next message.
                    q
                }
            }
        };
        if !header.counted && msg.end == header_end {
            // c-client's parser counted nothing of it: it takes the size it computes when the
            // message is fetched, without a word.
            msg.cclient &= !quirk::SIZE_MISMATCH;
        }
        let (nl, crlf) = scan::scan_text(hay, from_end, msg.end, &mut msg.hidden)?;
        scan::merge_ranges(&mut msg.hidden);
        msg.newlines = nl - header.hidden_nl;
        msg.crlf = crlf - header.hidden_crlf;
        Ok(true)
    }

    /// The From_ line starting at `start`, if there is one: where it ends and its date.
    fn find_from_line(hay: &mut impl Haystack, start: u64) -> io::Result<Option<(u64, MboxDate)>> {
        if !hay.get(start, 5)?.starts_with(b"From ") {
            return Ok(None);
        }
        let end = scan::line_end(hay, start)?;
        let n = end - start;
        let tail_len = n.min(SEP + 2);
        let tail = hay.get(end - tail_len, tail_len as usize)?[..tail_len as usize].to_vec();
        // It must end with a line feed, and not with a separator (c-client cuts that line).
        if !tail.ends_with(b"\n") || (n > SEP + 1 && tail.ends_with(SEPARATOR)) {
            return Ok(None);
        }
        if n > scan::LONG_LINE as u64 + 1 {
            // VALID() stops at a NUL: a From_ line has none.
            let mut pos = start;
            while pos < end {
                let w = hay.get(pos, scan::BODY_WINDOW)?;
                let w = &w[..w.len().min((end - pos) as usize)];
                if memchr::memchr(0, w).is_some() {
                    return Ok(None);
                }
                pos += w.len() as u64;
            }
        }
        let line = scan::line_text(hay, start, end)?;
        Ok(fromline::parse_mmdf(&line).map(|d| (end, d)))
    }

    /// Where the body starting at `from` (a line start) ends: the next separator line, or a
    /// line ending with the separator (cut before it). `None`: at the end of the file.
    fn terminator(
        &self,
        hay: &mut impl Haystack,
        from: u64,
        msg: &mut RawMessage,
    ) -> io::Result<Option<u64>> {
        let len = hay.len();
        let mut pos = from;
        while pos < len {
            let (hit, w_len) = {
                let w = hay.get(pos, scan::BODY_WINDOW)?;
                (self.finder.find(w).map(|i| pos + i as u64), w.len() as u64)
            };
            let Some(p) = hit else {
                if pos + w_len >= len {
                    return Ok(None);
                }
                // Overlap so that a separator across the window edge is seen.
                pos = (pos + w_len).saturating_sub(SEP - 1).max(pos + 1);
                continue;
            };
            // The separator ends its line; how long is that line?
            let mut line_start = |k: u64| -> io::Result<bool> {
                Ok(k == from || (k > from && hay.get(k - 1, 1)?[0] == b'\n'))
            };
            if line_start(p)? {
                return Ok(Some(p));
            }
            if !line_start(p - 1)? {
                // At least 7 bytes: c-client cut the line before the separator.
                msg.cclient |= quirk::CUT_LINE;
                return Ok(Some(p));
            }
            // Exactly 6 bytes: an ordinary line.
            pos = p + 1;
        }
        Ok(None)
    }
}

/// Scans a whole in-memory MMDF file (for tests).
pub fn scan_all(data: &[u8], mtime: i64) -> Result<Vec<RawMessage>, ScanError> {
    let mut hay = scan::SliceHaystack(data);
    let mut scanner = Scanner::new(mtime);
    scan::collect_messages(|msg| scanner.next_message(&mut hay, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::testutil::{Windowed, served};

    const D: &str = "\x01\x01\x01\x01\n";
    const F: &str = "From a Wed Dec  2 05:53:22 1992\n";

    fn texts(data: &str) -> Vec<String> {
        scan_all(data.as_bytes(), 1_000_000_000)
            .unwrap()
            .iter()
            .map(|m| String::from_utf8(served(data.as_bytes(), m)).unwrap())
            .collect()
    }

    #[test]
    fn separators_and_from_lines() {
        // Double separators, as c-client writes them; a final blank line stays.
        let data = format!("{D}{F}Subject: s\nStatus: RO\n\nbody\n{D}{D}{F}S: t\n\nb2\n\n{D}");
        assert_eq!(texts(&data), ["Subject: s\n\nbody\n", "S: t\n\nb2\n\n"]);
        let msgs = scan_all(data.as_bytes(), 0).unwrap();
        assert_eq!(msgs[0].flags, flag::SEEN | flag::OLD);
        assert_eq!(msgs[0].date.unwrap().year, 1992);
        // Single separators: the closing one opens the next message.
        let data = format!("{D}{F}S: s\n\nbody\n{D}{F}S: t\n\nb2\n{D}");
        assert_eq!(texts(&data), ["S: s\n\nbody\n", "S: t\n\nb2\n"]);
        // Anything between two messages is a message; so is a final newline.
        let data = format!("{D}{F}S: s\n\nbody\n{D}\n{D}{F}S: t\n\nb2\n{D}\n");
        assert_eq!(texts(&data), ["S: s\n\nbody\n", "\n", "S: t\n\nb2\n", "\n"]);
        // From_ lines in a body are text; no separator at the end: the body runs to the end.
        let data = format!("{D}{F}S: s\n\nbody\n{F}more\nno end");
        assert_eq!(texts(&data), [format!("S: s\n\nbody\n{F}more\nno end")]);
    }

    #[test]
    fn without_from_line_the_file_date_and_the_first_line_is_header() {
        let data = format!("{D}Subject: s\n\nbody\n{D}");
        let msgs = scan_all(data.as_bytes(), 1_000_000_000).unwrap();
        assert_eq!(msgs[0].flags, flag::DATE_FROM_FILE);
        let d = msgs[0].date.unwrap();
        assert_eq!((d.year, d.month, d.day, d.hour), (2001, 9, 9, 1));
        // A CRLF From_ line is not one to the mmdf driver.
        let data = format!("{D}From a Wed Dec  2 05:53:22 1992\r\nS: s\r\n\r\nb\r\n{D}");
        assert_eq!(
            texts(&data),
            ["From a Wed Dec  2 05:53:22 1992\r\nS: s\r\n\r\nb\r\n"]
        );
        // A separator as the first line is the header's only line.
        let data = format!("{D}{D}S: t\n\nb\n{D}");
        assert_eq!(texts(&data), [format!("{D}S: t\n\nb\n")]);
        assert_eq!(texts(D), [""]);
        assert_eq!(texts(&format!("{D}{D}")), [D]);
    }

    #[test]
    fn separators_end_headers_and_cut_lines() {
        let data = format!("{D}{F}Subject: s\n{D}{D}{F}S: t\n\nb2\n{D}");
        assert_eq!(texts(&data), ["Subject: s\n", "S: t\n\nb2\n"]);
        let data = format!("{D}{F}S: s\n\nbody\nhello\x01\x01\x01\x01\n{D}{F}S: t\n\nb\n{D}");
        let msgs = scan_all(data.as_bytes(), 0).unwrap();
        assert_eq!(texts(&data), ["S: s\n\nbody\nhello", "S: t\n\nb\n"]);
        assert_eq!(msgs[0].cclient, quirk::CUT_LINE);
        // Six bytes is an ordinary line, and so is a separator with CRLF.
        let data = format!("{D}{F}S: s\n\na\x01\x01\x01\x01\nx\x01\x01\x01\x01\r\n{D}");
        assert_eq!(
            texts(&data),
            ["S: s\n\na\x01\x01\x01\x01\nx\x01\x01\x01\x01\r\n"]
        );
        // A status header cut by a separator is hidden, and read as c-client's reader leaves
        // the line: its last byte made a line feed ("Status: R").
        let data = format!("{D}{F}Subject: hi\nStatus: RO\x01\x01\x01\x01\n{F}S: t\n\nb\n{D}");
        let msgs = scan_all(data.as_bytes(), 0).unwrap();
        assert_eq!(texts(&data)[0], "Subject: hi\n");
        assert_eq!(msgs[0].flags, flag::SEEN);
    }

    #[test]
    fn crs_and_the_end_of_the_file() {
        let data = format!("{D}{F}Subject: s\r\nX: a\rb\r\n\r\nbo\rdy\r\n\r\r\nend\r{D}");
        assert_eq!(texts(&data), ["Subject: s\r\nX: ab\r\n\r\nbody\r\n\r\nend"]);
        let data = format!("{D}{F}Subject: s\nX: y");
        let msgs = scan_all(data.as_bytes(), 0).unwrap();
        assert_eq!(msgs[0].cclient, quirk::PAST_EOF);
    }

    #[test]
    fn every_window_size_gives_the_same_messages() {
        let data = format!(
            "{D}{F}Subject: s\nX-UID: 3\n\nbody\n{D}\n{D}{D}S: x\rq\n\nab\x01\x01\x01\x01\n{D}{F}S: y\n\nz\x01\x01\x01\x01\n{D}{F}tail"
        );
        let want = scan_all(data.as_bytes(), 5).unwrap();
        assert_eq!(want.len(), 5, "{want:?}");
        for window in 1..data.len() + 2 {
            let mut hay = Windowed {
                data: data.as_bytes(),
                window,
            };
            let mut s = Scanner::new(5);
            let mut got = Vec::new();
            let mut m = RawMessage::default();
            while s.next_message(&mut hay, &mut m).unwrap() {
                got.push(m.clone());
            }
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "window {window}");
        }
    }
}
