//! Where mbox messages start and end, and the [`Scanner`] that walks them.
//!
//! - The file's start: blank lines, spaces and tabs, then a From_ line on a line of its own that
//!   ends within the first 1023 bytes (`unix_isvalid_fd()`), or the file is not an mbox.
//! - A message starts at its From_ line; its header (`header.rs`) runs to its blank line; its
//!   body runs to the next line that starts with `From `, ends with a line feed and passes
//!   `VALID()` ([`fromline`]), judged by its last [`LONG_LINE`] bytes when it is longer. A final
//!   blank line of the body is not part of the message.
//! - Then the message's text is counted (line feeds, CRLFs, bare CRs) and, with mboxrd
//!   unquoting, the first `>` of each quoted From_ line is hidden.
//!
//! The scanner keeps only offsets between messages (and reuses the message's vectors), so it
//! can resume after messages already known ([`Scanner::resume_at`]).

use std::io;

use memchr::memmem;

use super::haystack::{BODY_WINDOW, line_end, merge_ranges, scan_text};
use super::header::{HeaderEnd, HeaderScan, scan_header};
use super::{Haystack, RawMessage, ScanError, SliceHaystack, Unquote, collect_messages};
use crate::fromline;

/// A From_ line candidate longer than this is judged by its last bytes (all `VALID()` looks at,
/// unless a ` remote from` stands further back than this on a line without other spaces).
pub(crate) const LONG_LINE: usize = 64 * 1024;

/// Walks the messages of one mbox.
pub struct Scanner {
    /// Start of the next From_ line, once found.
    pos: u64,
    started: bool,
    unquote: Unquote,
    from_finder: memmem::Finder<'static>,
    quote_finder: memmem::Finder<'static>,
}

impl Scanner {
    pub fn new(unquote: Unquote) -> Self {
        Scanner {
            pos: 0,
            started: false,
            unquote,
            from_finder: memmem::Finder::new(b"\nFrom "),
            quote_finder: memmem::Finder::new(b"\n>"),
        }
    }

    /// Starts scanning at `pos`, which must be the start of a From_ line (to resume after
    /// messages already known).
    pub fn resume_at(unquote: Unquote, pos: u64) -> Self {
        Scanner {
            pos,
            started: true,
            ..Scanner::new(unquote)
        }
    }

    /// Where the next message's From_ line starts (the end of the data when there is none).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads the next message into `msg`. Returns `Ok(false)` at the end of the mbox.
    pub fn next_message(
        &mut self,
        hay: &mut impl Haystack,
        msg: &mut RawMessage,
    ) -> Result<bool, ScanError> {
        if !self.started {
            self.started = true;
            self.pos = first_from_line(hay)?;
        }
        let len = hay.len();
        if self.pos >= len {
            return Ok(false);
        }
        msg.reset();

        let from_start = self.pos;
        let from_end = line_end(hay, from_start)?;
        msg.from_line = from_start..from_end;
        msg.date = {
            let line = line_text(hay, from_start, from_end)?;
            fromline::parse(&line)
        };
        if let Some(d) = msg.date.filter(|d| !d.parsed) {
            let line = line_text(hay, from_start, from_end)?;
            let shown = fromline::date_text(&line).unwrap_or_default();
            msg.notes.push(format!(
                "UW-IMAP could not read the From_ line date ({shown:?}; it logged \"Unable to \
                 parse internal date\"): INTERNALDATE is {}-{:02}-{:02} 00:00:00 UTC, as UW-IMAP \
                 showed it",
                d.year, d.month, d.day
            ));
        }

        let HeaderScan {
            end: header_end,
            hidden_nl,
            hidden_crlf,
            ..
        } = scan_header(hay, from_end, msg, HeaderEnd::Mbox, &mut true)?;
        msg.header_end = header_end;
        let stop = if header_end >= len {
            len
        } else {
            self.next_from_line(hay, header_end)?.unwrap_or(len)
        };
        msg.end = stop - final_blank_line(hay, header_end, stop)?;
        self.pos = stop;

        let (nl, crlf) = scan_text(hay, from_end, msg.end, &mut msg.hidden)?;
        if self.unquote == Unquote::Mboxrd {
            self.find_quoted_from_lines(hay, msg)?;
        }
        merge_ranges(&mut msg.hidden);
        msg.newlines = nl - hidden_nl;
        msg.crlf = crlf - hidden_crlf;
        Ok(true)
    }

    /// The start of the first From_ line after the body starting at `from` (a From_ line must end
    /// with a line feed).
    fn next_from_line(&self, hay: &mut impl Haystack, from: u64) -> io::Result<Option<u64>> {
        let len = hay.len();
        // `from` follows a line feed (the header's blank line): a From_ line may start right
        // there.
        let mut pos = from - 1;
        while pos < len {
            let found = {
                let w = hay.get(pos, BODY_WINDOW)?;
                self.from_finder.find(w).map(|i| pos + i as u64)
            };
            let Some(nl) = found else {
                let w_len = hay.get(pos, BODY_WINDOW)?.len() as u64;
                if pos + w_len >= len {
                    return Ok(None);
                }
                // Overlap so that a `\nFrom ` across the window edge is seen.
                pos = (pos + w_len).saturating_sub(5).max(pos + 1);
                continue;
            };
            let start = nl + 1;
            if is_from_line(hay, start)? {
                return Ok(Some(start));
            }
            pos = start;
        }
        Ok(None)
    }

    /// Records, as hidden one-byte ranges, the `>` that mboxrd unquoting removes.
    fn find_quoted_from_lines(
        &self,
        hay: &mut impl Haystack,
        msg: &mut RawMessage,
    ) -> io::Result<()> {
        let (start, end) = (msg.header_end, msg.end);
        if start >= end {
            return Ok(());
        }
        // Each candidate is a line start `p` with `>`: `p` is the body start or after `\n`.
        let mut candidates = vec![start];
        let mut pos = start;
        while pos < end {
            let w = hay.get(pos, BODY_WINDOW)?;
            let w = &w[..w.len().min((end - pos) as usize)];
            candidates.extend(self.quote_finder.find_iter(w).map(|i| pos + i as u64 + 1));
            if pos + w.len() as u64 >= end {
                break;
            }
            pos = (pos + w.len() as u64 - 1).max(pos + 1);
        }
        candidates.dedup();
        for p in candidates {
            let w = hay.get(p, 4096)?;
            let w = &w[..w.len().min((end - p) as usize)];
            let quotes = w.iter().take_while(|&&b| b == b'>').count();
            if quotes > 0 && w[quotes..].starts_with(b"From ") {
                msg.hidden.push(p..p + 1);
            }
        }
        Ok(())
    }
}

/// Skips leading blank lines, spaces and tabs and checks, as `unix_isvalid_fd()` does, that a
/// From_ line follows on a line of its own, ending within the first 1023 bytes.
fn first_from_line(hay: &mut impl Haystack) -> Result<u64, ScanError> {
    let len = hay.len();
    let mut pos = 0;
    let mut last = b'\n';
    while pos < len {
        let w = hay.get(pos, BODY_WINDOW)?;
        match w
            .iter()
            .position(|b| !matches!(b, b'\n' | b'\r' | b' ' | b'\t'))
        {
            Some(i) => {
                if i > 0 {
                    last = w[i - 1];
                }
                pos += i as u64;
                break;
            }
            None => {
                last = *w.last().unwrap_or(&last);
                pos += w.len() as u64;
            }
        }
    }
    if pos >= len {
        // Empty, or only white space: an empty mailbox (c-client refuses a file of white space;
        // reading it as empty is the useful choice).
        return Ok(len);
    }
    let limit = fromline::MAILTMPLEN as u64 - 1;
    let (line, has_lf) = {
        let w = hay.get(pos, limit as usize)?;
        let w = &w[..w.len().min(limit as usize)];
        match memchr::memchr(b'\n', w) {
            Some(i) => (w[..i].to_vec(), true),
            None => (w.to_vec(), false),
        }
    };
    let shown: String = String::from_utf8_lossy(&line[..line.len().min(60)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if fromline::is_from_line(&line) {
        if last != b'\n' {
            return Err(ScanError::NotMbox(format!(
                "the first From_ line does not start its line (a space, a tab or a CR is before \
                 it), so UW-IMAP does not read the file as an mbox: {shown:?}"
            )));
        }
        if !has_lf || pos + line.len() as u64 >= limit {
            return Err(ScanError::NotMbox(format!(
                "the first From_ line does not end within the first {limit} bytes, so UW-IMAP \
                 does not read the file as an mbox: {shown:?}"
            )));
        }
        return Ok(pos);
    }
    if has_lf && pos + line.len() as u64 >= limit {
        return Err(ScanError::NotMbox(format!(
            "the first line does not end within the first {limit} bytes, so UW-IMAP does not read \
             the file as an mbox: {shown:?}"
        )));
    }
    Err(ScanError::NotMbox(format!(
        "the first line is not a From_ line UW-IMAP accepts: {shown:?}"
    )))
}

/// Whether a From_ line starts at `start`: it starts with `From `, ends with a line feed, and
/// passes `VALID()`.
fn is_from_line(hay: &mut impl Haystack, start: u64) -> io::Result<bool> {
    {
        let w = hay.get(start, LONG_LINE + 1)?;
        if !w.starts_with(b"From ") {
            return Ok(false);
        }
        let look = &w[..w.len().min(LONG_LINE + 1)];
        if let Some(i) = memchr::memchr(b'\n', look) {
            return Ok(fromline::is_from_line(&look[..i]));
        }
    }
    // A line longer than LONG_LINE (or one that the end of the file cuts).
    let end = line_end(hay, start)?;
    let len = hay.len();
    if end == len && {
        let w = hay.get(len - 1, 1)?;
        w.first() != Some(&b'\n')
    } {
        return Ok(false);
    }
    // No NUL anywhere in it, and the date at its end.
    let mut pos = start;
    while pos < end - 1 {
        let w = hay.get(pos, BODY_WINDOW)?;
        let w = &w[..w.len().min((end - 1 - pos) as usize)];
        if memchr::memchr(0, w).is_some() {
            return Ok(false);
        }
        pos += w.len() as u64;
    }
    let tail_start = end - 1 - LONG_LINE as u64;
    let mut line = b"From ".to_vec();
    let w = hay.get(tail_start, LONG_LINE)?;
    line.extend_from_slice(&w[..LONG_LINE]);
    Ok(fromline::is_from_line(&line))
}

/// The bytes of the line `start..end` without its line feed (its end cut to [`LONG_LINE`] bytes
/// after `From ` when it is longer).
pub(crate) fn line_text(hay: &mut impl Haystack, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let n = (end - start) as usize;
    let lf = n > 0 && hay.get(end - 1, 1)?.first() == Some(&b'\n');
    let text_len = n - usize::from(lf);
    if text_len <= LONG_LINE {
        let w = hay.get(start, text_len)?;
        return Ok(w[..text_len].to_vec());
    }
    let tail_start = start + text_len as u64 - LONG_LINE as u64;
    let mut line = b"From ".to_vec();
    let w = hay.get(tail_start, LONG_LINE)?;
    line.extend_from_slice(&w[..LONG_LINE]);
    Ok(line)
}

/// The length of a final blank line (`\n` or `\r\n`) of the body `body..stop`, which is not part
/// of the message.
fn final_blank_line(hay: &mut impl Haystack, body: u64, stop: u64) -> io::Result<u64> {
    let back = (stop - body).min(3);
    if back == 0 {
        return Ok(0);
    }
    let w = hay.get(stop - back, back as usize)?;
    let tail = &w[..back as usize];
    let at_start = stop - back == body;
    Ok(
        if tail.ends_with(b"\n\r\n") || (tail == b"\r\n" && at_start) {
            2
        } else if tail.ends_with(b"\n\n") || (tail == b"\n" && at_start) {
            1
        } else {
            0
        },
    )
}

/// Scans a whole in-memory mbox (for tests and small files).
pub fn scan_all(data: &[u8], unquote: Unquote) -> Result<Vec<RawMessage>, ScanError> {
    let mut hay = SliceHaystack(data);
    let mut scanner = Scanner::new(unquote);
    collect_messages(|msg| scanner.next_message(&mut hay, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::flag;
    use crate::scan::testutil::{F1, F2, Windowed, served, texts};

    #[test]
    fn splits_at_from_lines_with_or_without_blank_line() {
        let data = format!("{F1}Subject: one\n\nbody\n\n{F2}Subject: two\n\nbody2\n");
        assert_eq!(
            texts(data.as_bytes()),
            ["Subject: one\n\nbody\n", "Subject: two\n\nbody2\n"]
        );
        let data = format!("{F1}Subject: one\n\nbody\n{F2}Subject: two\n\nbody2\n\n");
        assert_eq!(
            texts(data.as_bytes()),
            ["Subject: one\n\nbody\n", "Subject: two\n\nbody2\n"]
        );
    }

    #[test]
    fn only_a_final_blank_line_is_dropped() {
        let one = |tail: &str| texts(format!("{F1}S: x\n\nbody{tail}").as_bytes());
        assert_eq!(one(""), ["S: x\n\nbody"]);
        assert_eq!(one("\n"), ["S: x\n\nbody\n"]);
        assert_eq!(one("\n\n"), ["S: x\n\nbody\n"]);
        assert_eq!(one("\n\n\n"), ["S: x\n\nbody\n\n"]);
        assert_eq!(one("\r\n\r\n"), ["S: x\n\nbody\r\n"]);
    }

    #[test]
    fn a_message_without_body_keeps_its_header_blank_line() {
        let data = format!("{F1}S: x\n\n{F2}S: y\n\nz\n");
        assert_eq!(texts(data.as_bytes()), ["S: x\n\n", "S: y\n\nz\n"]);
        let data = format!("{F1}\n{F2}S: y\n\nz\n");
        assert_eq!(texts(data.as_bytes()), ["\n", "S: y\n\nz\n"]);
        assert_eq!(texts(F1.as_bytes()), [""]);
    }

    #[test]
    fn a_from_line_in_a_header_is_a_header_line() {
        let data = format!("{F1}S: x\n{F2}S: y\n\nz\n");
        assert_eq!(texts(data.as_bytes()), [format!("S: x\n{F2}S: y\n\nz\n")]);
        // Two From_ lines in a row: one message, never an empty one.
        let data = format!("{F1}{F2}S: y\n\nz\n");
        assert_eq!(texts(data.as_bytes()), [format!("{F2}S: y\n\nz\n")]);
    }

    #[test]
    fn invalid_from_lines_stay_in_the_body() {
        let data = format!("{F1}S: x\n\nFrom the desk of me\n>From quoted\n\n");
        assert_eq!(
            texts(data.as_bytes()),
            ["S: x\n\nFrom the desk of me\n>From quoted\n"]
        );
        // A From_ line needs its line feed.
        let data = format!("{F1}S: x\n\nb\n\n{}", F2.trim_end());
        assert_eq!(texts(data.as_bytes()).len(), 1);
    }

    #[test]
    fn the_start_of_the_file() {
        assert_eq!(
            texts(format!("\n \t\n{F1}S: x\n\nb\n").as_bytes()),
            ["S: x\n\nb\n"]
        );
        assert_eq!(
            texts(format!("\r\n{F1}S: x\n\nb\n").as_bytes()),
            ["S: x\n\nb\n"]
        );
        for bad in [
            format!(" {F1}S: x\n\nb\n"),
            format!("\n\r{F1}S: x\n\nb\n"),
            F1.trim_end().to_string(),
            format!("From {} Wed Dec  2 05:53:22 1992\n\nb\n", "x".repeat(1000)),
            "Subject: hi\n\nbody\n".to_string(),
        ] {
            assert!(
                matches!(
                    scan_all(bad.as_bytes(), Unquote::None),
                    Err(ScanError::NotMbox(_))
                ),
                "{bad:?}"
            );
        }
        assert!(scan_all(b"", Unquote::None).unwrap().is_empty());
        assert!(scan_all(b"\n\n", Unquote::None).unwrap().is_empty());
    }

    #[test]
    fn content_length_is_an_ordinary_header() {
        let body = format!("line\n{F2}inside\n");
        let data = format!("{F1}Content-Length: {}\n\n{body}\n", body.len());
        assert_eq!(
            texts(data.as_bytes()),
            [
                format!("Content-Length: {}\n\nline\n", body.len()),
                // `inside` is a header line, and the blank line ends the header.
                "inside\n\n".to_string()
            ]
        );
    }

    #[test]
    fn crlf_files() {
        let data = "From a@b Wed Dec  2 05:53:22 1992\r\nS: x\r\nStatus: RO\r\n\r\nbody\r\n\r\nFrom c@d Thu Dec  3 05:53:22 1992\r\nS: y\r\n\r\nz\r\n";
        let msgs = scan_all(data.as_bytes(), Unquote::None).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(served(data.as_bytes(), &msgs[0]), b"S: x\r\n\r\nbody\r\n");
        assert_eq!((msgs[0].newlines, msgs[0].crlf), (3, 3));
        assert_eq!(msgs[0].flags, flag::SEEN | flag::OLD);
    }

    #[test]
    fn mboxrd_unquoting_is_opt_in() {
        let data = format!("{F1}S: x\n\n>From a\n>>From b\n>Fro c\n");
        let plain = scan_all(data.as_bytes(), Unquote::None).unwrap();
        assert_eq!(
            served(data.as_bytes(), &plain[0]),
            b"S: x\n\n>From a\n>>From b\n>Fro c\n"
        );
        let rd = scan_all(data.as_bytes(), Unquote::Mboxrd).unwrap();
        assert_eq!(
            served(data.as_bytes(), &rd[0]),
            b"S: x\n\nFrom a\n>From b\n>Fro c\n"
        );
    }

    #[test]
    fn lines_of_megabytes() {
        let long = "x".repeat(3 << 20);
        let long_from = format!("From {long} Wed Dec  2 05:53:22 1992");
        let data = format!(
            "{F1}Subject: {long}\nStatus: RO\n\n{long}\n{long_from}\nend\n\n{long_from}x\n\n{F2}S: 2\n\nz\n"
        );
        let want = scan_all(data.as_bytes(), Unquote::None).unwrap();
        assert_eq!(
            want.len(),
            3,
            "a From_ line of any length starts a message, as in c-client"
        );
        assert_eq!(want[0].flags, flag::SEEN | flag::OLD);
        let mut hay = Windowed {
            data: data.as_bytes(),
            window: 65536,
        };
        let mut sc = Scanner::new(Unquote::None);
        let mut got = Vec::new();
        let mut m = RawMessage::default();
        while sc.next_message(&mut hay, &mut m).unwrap() {
            got.push(m.clone());
        }
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
    }

    #[test]
    fn dates_c_client_cannot_read_still_start_messages() {
        let data = "From a Mon Foo  1 00:00:00 0001\n\nx\n\nFrom b Fri Dec 31 24:59:59 1999\n\ny\n";
        let msgs = scan_all(data.as_bytes(), Unquote::None).unwrap();
        assert_eq!(msgs.len(), 2);
        assert!(!msgs[0].date.unwrap().parsed);
        assert_eq!(msgs[1].date.unwrap().year, 1999);
        assert_eq!(msgs[0].notes.len(), 1);
    }

    #[test]
    fn every_window_size_gives_the_same_messages() {
        let data = format!(
            "\n{F1}Content-Length: 5\nX-UID: 3\n\n1234\n\n{F2}S: y\nStatus: O\n\nFrom bogus\n{F1}\n\n{F2}a\r\n\r\nb\r\r\n\r{F2}\rx: y\n X-a\n\n>From q\n\n{F1}s"
        );
        let want = scan_all(data.as_bytes(), Unquote::Mboxrd).unwrap();
        assert_eq!(want.len(), 5);
        for window in 1..data.len() + 2 {
            let mut hay = Windowed {
                data: data.as_bytes(),
                window,
            };
            let mut s = Scanner::new(Unquote::Mboxrd);
            let mut got = Vec::new();
            let mut m = RawMessage::default();
            while s.next_message(&mut hay, &mut m).unwrap() {
                got.push(m.clone());
            }
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "window {window}");
        }
    }
}
