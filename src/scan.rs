//! The mbox scanner: finds each message of an mbox and the status headers it carries.
//!
//! The scanner does no I/O. It reads through a [`Haystack`], which is either a byte slice (a
//! memory map, for one-shot passes) or bounded windows filled by `pread` (the long-running mount,
//! where a map could SIGBUS when the file is truncated). Both give the same messages; a unit test
//! checks it for every window size.
//!
//! The rules (see `domain.md`, section 1):
//! - every line that [`fromline::parse`] accepts starts a message, with or without a blank line
//!   before it; blank lines, spaces and tabs at the very start of the file are skipped (c-client
//!   does so "for broken MTAs");
//! - a `Content-Length` is trusted only where the bytes it points at are the separator newline
//!   followed by a valid From_ line, or the end of the file (Dovecot's rule);
//! - the blank line before the next From_ line, and the file's final newline, are not part of
//!   the message;
//! - the status headers (`Status`, `X-Status`, `X-Keywords`, `X-UID`, `X-IMAP`, `X-IMAPbase`,
//!   `Content-Length`), with their continuation lines, are parsed and reported as hidden ranges.
//!   Everything else is served as stored, `>From` included, unless mboxrd unquoting is asked for.

use std::io;
use std::ops::Range;

use memchr::memmem;

use crate::fromline::{self, MboxDate};

/// Random access to the bytes of one mbox, as a snapshot of a given length.
pub trait Haystack {
    /// The length of the data.
    fn len(&self) -> u64;

    /// Whether the data is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes from `offset` on: at least `min` of them, or all up to the end. More may be
    /// returned. `offset` is at most `len()`.
    fn get(&mut self, offset: u64, min: usize) -> io::Result<&[u8]>;
}

/// A whole mbox in memory (a slice or a memory map).
pub struct SliceHaystack<'a>(pub &'a [u8]);

impl Haystack for SliceHaystack<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn get(&mut self, offset: u64, _min: usize) -> io::Result<&[u8]> {
        Ok(&self.0[offset as usize..])
    }
}

/// Flag letters of the `Status` and `X-Status` headers (c-client reads both the same way).
pub mod flag {
    /// `R`: \Seen.
    pub const SEEN: u8 = 1;
    /// `A`: \Answered.
    pub const ANSWERED: u8 = 2;
    /// `F`: \Flagged.
    pub const FLAGGED: u8 = 4;
    /// `D`: \Deleted.
    pub const DELETED: u8 = 8;
    /// `T`: \Draft.
    pub const DRAFT: u8 = 16;
    /// `O`: not \Recent.
    pub const OLD: u8 = 32;
}

/// What `X-IMAP` or `X-IMAPbase` says about the folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderHeader {
    /// `X-IMAP`: the message is c-client's pseudo message, not mail.
    pub pseudo: bool,
    pub uidvalidity: u32,
    pub uidlast: u32,
    pub keywords: Vec<Vec<u8>>,
}

/// One message as the scanner found it. Offsets are absolute in the mbox.
#[derive(Clone, Debug, Default)]
pub struct RawMessage {
    /// The From_ line, with its line end.
    pub from_line: Range<u64>,
    pub date: Option<MboxDate>,
    /// Where the header block ends (after its blank line, if it has one).
    pub header_end: u64,
    /// The end of the message text; the separator is not included.
    pub end: u64,
    /// Byte ranges inside `from_line.end..end` that are not served: status headers, and with
    /// mboxrd unquoting the first `>` of quoted From_ lines. Ascending, disjoint.
    pub hidden: Vec<Range<u64>>,
    /// Line feeds in the served bytes.
    pub newlines: u64,
    /// CRLF pairs in the served bytes.
    pub crlf: u64,
    /// Flag letters seen (see [`flag`]).
    pub flags: u8,
    /// The first `X-UID` with a well-formed value.
    pub uid: Option<u32>,
    /// An `X-UID` came before `X-IMAPbase` in this message's header.
    pub uid_before_base: bool,
    /// Keyword names of `X-Keywords`.
    pub keywords: Vec<Vec<u8>>,
    /// The first well-formed `X-IMAP` or `X-IMAPbase`.
    pub folder: Option<FolderHeader>,
    /// The message length came from a `Content-Length` header.
    pub used_content_length: bool,
    /// Things worth telling the admin about this message.
    pub notes: Vec<String>,
}

/// Why a file is not read as an mbox.
#[derive(Debug)]
pub enum ScanError {
    Io(io::Error),
    NotMbox(String),
}

impl From<io::Error> for ScanError {
    fn from(e: io::Error) -> Self {
        ScanError::Io(e)
    }
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Io(e) => write!(f, "read error: {e}"),
            ScanError::NotMbox(why) => write!(f, "not an mbox: {why}"),
        }
    }
}

impl std::error::Error for ScanError {}

/// How quoted From_ lines in bodies are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unquote {
    /// As stored (UW-IMAP never unquoted: its clients saw `>From`).
    #[default]
    None,
    /// mboxrd: one `>` is removed from every line matching `^>+From `.
    Mboxrd,
}

/// The header lines longer than this are still handled, but only this much of a status header's
/// value is read.
const MAX_STATUS_VALUE: usize = 64 * 1024;
/// How much a header-phase read asks for.
const HEADER_WINDOW: usize = 64 * 1024;
/// How much a body-phase read asks for.
const BODY_WINDOW: usize = 1024 * 1024;

/// Which status header a header line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatusHeader {
    Status,
    XStatus,
    XKeywords,
    XUid,
    XImap,
    XImapBase,
    ContentLength,
}

const STATUS_HEADERS: [(&[u8], StatusHeader); 7] = [
    (b"status", StatusHeader::Status),
    (b"x-status", StatusHeader::XStatus),
    (b"x-keywords", StatusHeader::XKeywords),
    (b"x-uid", StatusHeader::XUid),
    (b"x-imap", StatusHeader::XImap),
    (b"x-imapbase", StatusHeader::XImapBase),
    (b"content-length", StatusHeader::ContentLength),
];

fn status_header(line: &[u8]) -> Option<StatusHeader> {
    let colon = memchr::memchr(b':', &line[..line.len().min(16)])?;
    let name = &line[..colon];
    STATUS_HEADERS
        .iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n))
        .map(|(_, h)| *h)
}

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
        *msg = RawMessage {
            hidden: std::mem::take(&mut msg.hidden),
            keywords: std::mem::take(&mut msg.keywords),
            notes: std::mem::take(&mut msg.notes),
            ..RawMessage::default()
        };
        msg.hidden.clear();
        msg.keywords.clear();
        msg.notes.clear();

        let from_start = self.pos;
        let (line, from_end) = {
            let w = hay.get(from_start, fromline::MAX_FROM_LINE + 2)?;
            let (line, next) = line_at(w, from_start, len);
            (fromline::parse(line), next)
        };
        msg.from_line = from_start..from_end;
        msg.date = line;

        let mut content_length = None;
        let header = self.scan_header(hay, from_end, msg, &mut content_length)?;
        let (end, next) = match header {
            HeaderEnd::NextMessage(at) => (separator_before(hay, from_end, at)?, at),
            HeaderEnd::Eof => (final_newline_before(hay, from_end, len)?, len),
            HeaderEnd::Blank(body) => {
                msg.header_end = body;
                let trusted = match content_length.and_then(|cl| body.checked_add(cl)) {
                    Some(e) if e <= len => content_length_fits(hay, e)?.map(|next| (e, next)),
                    _ => None,
                };
                match trusted {
                    Some(end_next) => {
                        msg.used_content_length = true;
                        end_next
                    }
                    None => match self.next_from_line(hay, body - 1)? {
                        Some(at) => (separator_before(hay, from_end, at)?, at),
                        None => (final_newline_before(hay, from_end, len)?, len),
                    },
                }
            }
        };
        if !matches!(header, HeaderEnd::Blank(_)) {
            msg.header_end = end;
        }
        if msg.header_end > end {
            // The message ended inside its header block (no body, separator stripped).
            msg.header_end = end;
        }
        msg.end = end;
        // A header cut by the end of the message (no body) loses its stripped newline.
        msg.hidden.retain_mut(|r| {
            r.end = r.end.min(end);
            r.start < r.end
        });
        self.pos = next;

        if self.unquote == Unquote::Mboxrd {
            self.find_quoted_from_lines(hay, msg)?;
        }
        let (nl, crlf) = count_lines(hay, from_end, end)?;
        let (hidden_nl, hidden_crlf) = hidden_lines(hay, &msg.hidden, end)?;
        msg.newlines = nl - hidden_nl;
        msg.crlf = crlf - hidden_crlf;
        Ok(true)
    }

    /// Reads header lines from `start`, recording status headers, until the blank line, a From_
    /// line, or the end of the data.
    fn scan_header(
        &mut self,
        hay: &mut impl Haystack,
        start: u64,
        msg: &mut RawMessage,
        content_length: &mut Option<u64>,
    ) -> Result<HeaderEnd, ScanError> {
        let len = hay.len();
        let mut pos = start;
        // The status header being read (its start), to take in continuation lines.
        let mut open: Option<(u64, StatusHeader)> = None;
        loop {
            if pos >= len {
                self.close_status(hay, &mut open, pos, msg, content_length)?;
                return Ok(HeaderEnd::Eof);
            }
            let kind = {
                let w = hay.get(pos, HEADER_WINDOW)?;
                if w.starts_with(b"\n") || w.starts_with(b"\r\n") {
                    LineKind::Blank
                } else if w.starts_with(b" ") || w.starts_with(b"\t") {
                    LineKind::Continuation
                } else if w.starts_with(b"From ")
                    && fromline::parse(line_at(w, pos, len).0).is_some()
                {
                    LineKind::From
                } else {
                    LineKind::Field(status_header(w))
                }
            };
            let line_end = line_end(hay, pos)?;
            match kind {
                LineKind::Blank => {
                    self.close_status(hay, &mut open, pos, msg, content_length)?;
                    return Ok(HeaderEnd::Blank(line_end));
                }
                LineKind::From => {
                    self.close_status(hay, &mut open, pos, msg, content_length)?;
                    return Ok(HeaderEnd::NextMessage(pos));
                }
                LineKind::Continuation => {}
                LineKind::Field(status) => {
                    self.close_status(hay, &mut open, pos, msg, content_length)?;
                    open = status.map(|s| (pos, s));
                }
            }
            pos = line_end;
        }
    }

    /// Records the status header that ends at `end` (if one is open).
    fn close_status(
        &mut self,
        hay: &mut impl Haystack,
        open: &mut Option<(u64, StatusHeader)>,
        end: u64,
        msg: &mut RawMessage,
        content_length: &mut Option<u64>,
    ) -> io::Result<()> {
        let Some((start, which)) = open.take() else {
            return Ok(());
        };
        match msg.hidden.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => msg.hidden.push(start..end),
        }
        let want = ((end - start) as usize).min(MAX_STATUS_VALUE);
        let w = hay.get(start, want)?;
        let raw = &w[..want.min(w.len())];
        let colon = memchr::memchr(b':', raw).unwrap_or(raw.len().saturating_sub(1));
        let value = &raw[colon + 1..];
        match which {
            StatusHeader::Status | StatusHeader::XStatus => {
                let first_line = value.split(|&b| b == b'\n').next().unwrap_or(b"");
                for b in first_line {
                    msg.flags |= match b {
                        b'R' => flag::SEEN,
                        b'O' => flag::OLD,
                        b'D' => flag::DELETED,
                        b'F' => flag::FLAGGED,
                        b'A' => flag::ANSWERED,
                        b'T' => flag::DRAFT,
                        _ => 0,
                    };
                }
            }
            StatusHeader::XKeywords => {
                for word in words(value) {
                    if !msg.keywords.iter().any(|k| k.eq_ignore_ascii_case(word)) {
                        msg.keywords.push(word.to_vec());
                    }
                }
            }
            StatusHeader::XUid => {
                if msg.uid.is_none() {
                    match parse_number(value).and_then(|v| u32::try_from(v).ok()) {
                        Some(v) if v > 0 => {
                            msg.uid = Some(v);
                            msg.uid_before_base = msg.folder.is_none();
                        }
                        _ => msg
                            .notes
                            .push(format!("X-UID {:?} is not a UID", lossy_trim(value))),
                    }
                }
            }
            StatusHeader::XImap | StatusHeader::XImapBase => {
                if msg.folder.is_none() {
                    msg.folder = parse_folder_header(value, which == StatusHeader::XImap);
                }
            }
            StatusHeader::ContentLength => {
                if content_length.is_none() {
                    *content_length = parse_number(value);
                }
            }
        }
        Ok(())
    }

    /// The start of the first valid From_ line that follows a `\n` at or after `from`.
    fn next_from_line(&self, hay: &mut impl Haystack, from: u64) -> io::Result<Option<u64>> {
        let len = hay.len();
        let mut pos = from;
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
        msg.hidden.sort_by_key(|r| r.start);
        Ok(())
    }
}

enum LineKind {
    Blank,
    Continuation,
    From,
    Field(Option<StatusHeader>),
}

enum HeaderEnd {
    /// The header ended with a blank line; the body starts here.
    Blank(u64),
    /// A From_ line came before any blank line.
    NextMessage(u64),
    Eof,
}

/// Skips leading blank lines, spaces and tabs and checks that a From_ line follows.
fn first_from_line(hay: &mut impl Haystack) -> Result<u64, ScanError> {
    let len = hay.len();
    let mut pos = 0;
    while pos < len {
        let w = hay.get(pos, BODY_WINDOW)?;
        match w
            .iter()
            .position(|b| !matches!(b, b'\n' | b'\r' | b' ' | b'\t'))
        {
            Some(i) => {
                pos += i as u64;
                break;
            }
            None => pos += w.len() as u64,
        }
    }
    if pos >= len {
        return Ok(len);
    }
    if is_from_line(hay, pos)? {
        return Ok(pos);
    }
    let w = hay.get(pos, 80)?;
    let (line, _) = line_at(w, pos, len);
    let shown: String = String::from_utf8_lossy(&line[..line.len().min(60)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    Err(ScanError::NotMbox(format!(
        "the first line is not a From_ line UW-IMAP accepts: {shown:?}"
    )))
}

fn is_from_line(hay: &mut impl Haystack, start: u64) -> io::Result<bool> {
    let len = hay.len();
    let w = hay.get(start, fromline::MAX_FROM_LINE + 2)?;
    if !w.starts_with(b"From ") {
        return Ok(false);
    }
    let (line, _) = line_at(w, start, len);
    Ok(fromline::parse(line).is_some())
}

/// The line starting at `w[0]` (without its `\n`, cut at `MAX_FROM_LINE + 1` bytes), and the
/// absolute offset after it.
fn line_at(w: &[u8], start: u64, len: u64) -> (&[u8], u64) {
    let cap = &w[..w.len().min(fromline::MAX_FROM_LINE + 1)];
    match memchr::memchr(b'\n', cap) {
        Some(i) => (&cap[..i], start + i as u64 + 1),
        None if w.len() <= fromline::MAX_FROM_LINE => (cap, len),
        // Longer than any From_ line: the caller only uses it to reject it.
        None => (cap, start + cap.len() as u64),
    }
}

/// The offset after the line that starts at `start`.
fn line_end(hay: &mut impl Haystack, start: u64) -> io::Result<u64> {
    let len = hay.len();
    let mut pos = start;
    while pos < len {
        let w = hay.get(pos, HEADER_WINDOW)?;
        if let Some(i) = memchr::memchr(b'\n', w) {
            return Ok(pos + i as u64 + 1);
        }
        pos += w.len() as u64;
    }
    Ok(len)
}

/// Where the message text ends when the next From_ line starts at `at` (after a `\n`): before a
/// blank separator line, if there is one.
fn separator_before(hay: &mut impl Haystack, text_start: u64, at: u64) -> io::Result<u64> {
    let back = (at - text_start).min(4);
    let w = hay.get(at - back, back as usize)?;
    let tail = &w[..back as usize];
    Ok(at - blank_line_len(tail, at - back == text_start))
}

/// The length of a blank line (`\n` or `\r\n`) that ends `tail`, where `tail` is the end of the
/// message text. `at_start`: `tail` starts where the text starts (so a lone `\n` is a line).
fn blank_line_len(tail: &[u8], at_start: bool) -> u64 {
    if tail.ends_with(b"\n\r\n") || (at_start && tail == b"\r\n") {
        2
    } else if tail.ends_with(b"\n\n") || (at_start && tail == b"\n") {
        1
    } else {
        0
    }
}

/// Where the last message ends: its final newline is not part of it.
fn final_newline_before(hay: &mut impl Haystack, text_start: u64, len: u64) -> io::Result<u64> {
    if len == text_start {
        return Ok(len);
    }
    let back = (len - text_start).min(2);
    let w = hay.get(len - back, back as usize)?;
    Ok(len - newline_len(&w[..back as usize]))
}

/// The length of the line end (`\n` or `\r\n`) that ends `tail`.
fn newline_len(tail: &[u8]) -> u64 {
    if tail.ends_with(b"\r\n") {
        2
    } else if tail.ends_with(b"\n") {
        1
    } else {
        0
    }
}

/// Whether a Content-Length ending at `e` is believed: `e` must be the end of the data, or a
/// separator newline followed by the end or by a valid From_ line. Returns where the next
/// message starts (or the end).
fn content_length_fits(hay: &mut impl Haystack, e: u64) -> io::Result<Option<u64>> {
    let len = hay.len();
    if e == len {
        return Ok(Some(len));
    }
    let sep = {
        let w = hay.get(e, 2)?;
        if w.starts_with(b"\r\n") {
            2
        } else if w.starts_with(b"\n") {
            1
        } else {
            return Ok(None);
        }
    };
    let next = e + sep;
    if next == len || is_from_line(hay, next)? {
        Ok(Some(next))
    } else {
        Ok(None)
    }
}

/// Line feeds and CRLF pairs in `start..end`.
fn count_lines(hay: &mut impl Haystack, start: u64, end: u64) -> io::Result<(u64, u64)> {
    let (mut nl, mut crlf) = (0u64, 0u64);
    let mut pos = start;
    let mut prev_cr = false;
    while pos < end {
        let w = hay.get(pos, BODY_WINDOW)?;
        let w = &w[..w.len().min((end - pos) as usize)];
        if w.is_empty() {
            break;
        }
        nl += bytecount::count(w, b'\n') as u64;
        if memchr::memchr(b'\r', w).is_some() || prev_cr {
            if prev_cr && w[0] == b'\n' {
                crlf += 1;
            }
            crlf += memmem::find_iter(w, b"\r\n").count() as u64;
        }
        prev_cr = w.last() == Some(&b'\r');
        pos += w.len() as u64;
    }
    Ok((nl, crlf))
}

/// Line feeds and CRLF pairs inside the hidden ranges (those that end before `end`).
fn hidden_lines(
    hay: &mut impl Haystack,
    hidden: &[Range<u64>],
    end: u64,
) -> io::Result<(u64, u64)> {
    let (mut nl, mut crlf) = (0, 0);
    for r in hidden {
        let (a, b) = count_lines(hay, r.start, r.end.min(end))?;
        nl += a;
        crlf += b;
    }
    Ok((nl, crlf))
}

/// Whitespace-separated words of a header value (continuation lines included).
fn words(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
}

/// Digits, then nothing but whitespace.
fn parse_number(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// `<uidvalidity> <uidlast> [keyword ...]`, as c-client writes it.
fn parse_folder_header(value: &[u8], pseudo: bool) -> Option<FolderHeader> {
    let mut w = words(value);
    let uidvalidity = parse_number(w.next()?).and_then(|v| u32::try_from(v).ok())?;
    let uidlast = parse_number(w.next()?).and_then(|v| u32::try_from(v).ok())?;
    if uidvalidity == 0 {
        return None;
    }
    Some(FolderHeader {
        pseudo,
        uidvalidity,
        uidlast,
        keywords: w.map(<[u8]>::to_vec).collect(),
    })
}

fn lossy_trim(value: &[u8]) -> String {
    let v = value.trim_ascii();
    String::from_utf8_lossy(&v[..v.len().min(40)]).into_owned()
}

/// Scans a whole in-memory mbox (for tests and small files).
pub fn scan_all(data: &[u8], unquote: Unquote) -> Result<Vec<RawMessage>, ScanError> {
    let mut hay = SliceHaystack(data);
    let mut scanner = Scanner::new(unquote);
    let mut out = Vec::new();
    let mut msg = RawMessage::default();
    while scanner.next_message(&mut hay, &mut msg)? {
        out.push(msg.clone());
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A haystack that only ever shows `window` bytes at a time, like the `pread` reader.
    pub(crate) struct Windowed<'a> {
        pub data: &'a [u8],
        pub window: usize,
    }

    impl Haystack for Windowed<'_> {
        fn len(&self) -> u64 {
            self.data.len() as u64
        }
        fn get(&mut self, offset: u64, min: usize) -> io::Result<&[u8]> {
            let start = offset as usize;
            let end = (start + self.window.max(min)).min(self.data.len());
            Ok(&self.data[start..end])
        }
    }

    /// The served bytes of a message.
    pub(crate) fn served(data: &[u8], m: &RawMessage) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = m.from_line.end;
        for h in &m.hidden {
            out.extend_from_slice(&data[pos as usize..h.start as usize]);
            pos = h.end;
        }
        if pos < m.end {
            out.extend_from_slice(&data[pos as usize..m.end as usize]);
        }
        out
    }

    fn texts(data: &[u8]) -> Vec<String> {
        scan_all(data, Unquote::None)
            .unwrap()
            .iter()
            .map(|m| String::from_utf8(served(data, m)).unwrap())
            .collect()
    }

    const F1: &str = "From a@b Wed Dec  2 05:53:22 1992\n";
    const F2: &str = "From c@d Thu Dec  3 05:53:22 1992\n";

    #[test]
    fn splits_at_from_lines_with_or_without_blank_line() {
        let data = format!("{F1}Subject: one\n\nbody\n\n{F2}Subject: two\n\nbody2\n");
        assert_eq!(
            texts(data.as_bytes()),
            ["Subject: one\n\nbody\n", "Subject: two\n\nbody2"]
        );
        let data = format!("{F1}Subject: one\n\nbody\n{F2}Subject: two\n\nbody2\n\n");
        assert_eq!(
            texts(data.as_bytes()),
            ["Subject: one\n\nbody\n", "Subject: two\n\nbody2\n"]
        );
    }

    #[test]
    fn invalid_from_lines_stay_in_the_body() {
        let data = format!("{F1}S: x\n\nFrom the desk of me\n>From quoted\n\n");
        assert_eq!(
            texts(data.as_bytes()),
            ["S: x\n\nFrom the desk of me\n>From quoted\n"]
        );
    }

    #[test]
    fn leading_blank_lines_are_skipped() {
        let data = format!("\n \t\n{F1}S: x\n\nb\n");
        assert_eq!(texts(data.as_bytes()), ["S: x\n\nb"]);
    }

    #[test]
    fn not_an_mbox() {
        assert!(matches!(
            scan_all(b"Subject: hi\n\nbody\n", Unquote::None),
            Err(ScanError::NotMbox(_))
        ));
        assert!(scan_all(b"", Unquote::None).unwrap().is_empty());
        assert!(scan_all(b"\n\n", Unquote::None).unwrap().is_empty());
    }

    #[test]
    fn status_headers_are_hidden_and_parsed() {
        let data = format!(
            "{F1}Subject: s\nStatus: RO\nX-Status: AFT\nX-Keywords: Junk  $Label1   \nX-UID: 7  \n\nbody\n"
        );
        let msgs = scan_all(data.as_bytes(), Unquote::None).unwrap();
        let m = &msgs[0];
        assert_eq!(served(data.as_bytes(), m), b"Subject: s\n\nbody");
        assert_eq!(
            m.flags,
            flag::SEEN | flag::OLD | flag::ANSWERED | flag::FLAGGED | flag::DRAFT
        );
        assert_eq!(m.keywords, [b"Junk".to_vec(), b"$Label1".to_vec()]);
        assert_eq!(m.uid, Some(7));
        assert_eq!(m.hidden.len(), 1);
        assert_eq!((m.newlines, m.crlf), (2, 0));
    }

    #[test]
    fn continuation_lines_belong_to_their_header() {
        let data = format!("{F1}X-Keywords: a\n b\nSubject: s\n  more\nstatus: R\n\nx\n");
        let msgs = scan_all(data.as_bytes(), Unquote::None).unwrap();
        assert_eq!(
            served(data.as_bytes(), &msgs[0]),
            b"Subject: s\n  more\n\nx"
        );
        assert_eq!(msgs[0].keywords, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(msgs[0].flags, flag::SEEN);
    }

    #[test]
    fn pseudo_message_header() {
        let data = format!(
            "{F1}Subject: DON'T DELETE\nX-IMAP: 1104919200 0000000012 Junk $Label1\nStatus: RO\n\ntext\n\n{F2}S: x\n\ny\n"
        );
        let msgs = scan_all(data.as_bytes(), Unquote::None).unwrap();
        let f = msgs[0].folder.as_ref().unwrap();
        assert!(f.pseudo);
        assert_eq!((f.uidvalidity, f.uidlast), (1104919200, 12));
        assert_eq!(f.keywords.len(), 2);
    }

    #[test]
    fn content_length_is_trusted_only_where_it_fits() {
        // Exact: the embedded From_ line stays in the body.
        let body = format!("line\n{F2}inside\n");
        let data = format!(
            "{F1}Content-Length: {}\n\n{body}\n{F2}S: 2\n\nz\n",
            body.len()
        );
        let t = texts(data.as_bytes());
        assert_eq!(t, [format!("\n{body}"), "S: 2\n\nz".to_string()]);
        // Wrong: ignored, the From_ line splits.
        let data = format!("{F1}Content-Length: 3\n\n{body}\n");
        assert_eq!(texts(data.as_bytes()).len(), 2);
        // Exact up to the end of the file.
        let data = format!("{F1}Content-Length: {}\n\n{body}", body.len());
        assert_eq!(texts(data.as_bytes()), [format!("\n{body}")]);
    }

    #[test]
    fn crlf_files() {
        let data = "From a@b Wed Dec  2 05:53:22 1992\r\nS: x\r\nStatus: RO\r\n\r\nbody\r\n\r\nFrom c@d Thu Dec  3 05:53:22 1992\r\nS: y\r\n\r\nz\r\n";
        let msgs = scan_all(data.as_bytes(), Unquote::None).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(served(data.as_bytes(), &msgs[0]), b"S: x\r\n\r\nbody\r\n");
        assert_eq!((msgs[0].newlines, msgs[0].crlf), (3, 3));
    }

    #[test]
    fn mboxrd_unquoting_is_opt_in() {
        let data = format!("{F1}S: x\n\n>From a\n>>From b\n>Fro c\n");
        let plain = scan_all(data.as_bytes(), Unquote::None).unwrap();
        assert_eq!(
            served(data.as_bytes(), &plain[0]),
            b"S: x\n\n>From a\n>>From b\n>Fro c"
        );
        let rd = scan_all(data.as_bytes(), Unquote::Mboxrd).unwrap();
        assert_eq!(
            served(data.as_bytes(), &rd[0]),
            b"S: x\n\nFrom a\n>From b\n>Fro c"
        );
    }

    #[test]
    fn message_without_body_or_header_end() {
        let data = format!("{F1}S: x\n{F2}{F1}\n");
        let t = texts(data.as_bytes());
        assert_eq!(t.len(), 3);
        assert_eq!(t[2], "");
    }

    #[test]
    fn nul_bytes_and_invalid_utf8_are_just_content() {
        let data = b"From a Wed Dec  2 05:53:22 1992\nSubject: \xff\xfe\x00\nX-Keywords: \xe9t\xe9 ok\nStatus: R\n\n\x00\x00body\xc3(\n\n";
        let msgs = scan_all(data, Unquote::None).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            served(data, &msgs[0]),
            b"Subject: \xff\xfe\x00\n\n\x00\x00body\xc3(\n"
        );
        assert_eq!(msgs[0].keywords, [b"\xe9t\xe9".to_vec(), b"ok".to_vec()]);
    }

    #[test]
    fn lines_of_megabytes() {
        let long = "x".repeat(3 << 20);
        let long_from = format!("From {long} Wed Dec  2 05:53:22 1992");
        let data = format!(
            "{F1}Subject: {long}\nStatus: RO\n\n{long}\n{long_from}\nend\n\n{F2}S: 2\n\nz\n"
        );
        let want = scan_all(data.as_bytes(), Unquote::None).unwrap();
        assert_eq!(
            want.len(),
            2,
            "a From line too long to be a From_ line stays in the body"
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
    fn a_header_without_end() {
        let mut data = String::from(F1);
        for i in 0..100_000 {
            data += &format!("X-Filler-{i}: value\n");
        }
        data += "X-UID: 9\nStatus: O\n";
        let msgs = scan_all(data.as_bytes(), Unquote::None).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].uid, Some(9));
        assert_eq!(msgs[0].flags, flag::OLD);
        assert_eq!(msgs[0].header_end, msgs[0].end);
    }

    #[test]
    fn dates_in_year_1_and_9999() {
        let data = "From a Mon Jan  1 00:00:00 0001\n\nx\n\nFrom b Fri Dec 31 23:59:59 9999\n\ny\n";
        let msgs = scan_all(data.as_bytes(), Unquote::None).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].date.unwrap().year, 1);
        assert_eq!(msgs[1].date.unwrap().year, 9999);
    }

    #[test]
    fn every_window_size_gives_the_same_messages() {
        let data = format!(
            "\n{F1}Content-Length: 5\nX-UID: 3\n\n1234\n\n{F2}S: y\nStatus: O\n\nFrom bogus\n{F1}\n\n{F2}a\r\n\r\nb\r\n"
        );
        let want = scan_all(data.as_bytes(), Unquote::Mboxrd).unwrap();
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
