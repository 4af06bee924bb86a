//! The mbox scanner: finds each message of an mbox and the status headers it carries, as UW-IMAP's
//! c-client (2007f, the `unix` driver) does.
//!
//! The scanner does no I/O. It reads through a [`Haystack`], which is either a byte slice (a
//! memory map, for one-shot passes) or bounded windows filled by `pread` (the long-running mount,
//! where a map could SIGBUS when the file is truncated). Both give the same messages; a unit test
//! checks it for every window size.
//!
//! The rules, each checked against c-client itself (`tests/oracle.rs`, `tests/differential.rs`):
//! - A file is an mbox when, after blank lines, spaces and tabs at its very start, its first line
//!   is a From_ line ([`fromline`]) that ends within its first 1023 bytes, and nothing but a line
//!   feed came just before it (`unix_isvalid_fd()`).
//! - A message is its From_ line, then its header: every line up to and including the first
//!   blank line (`\n` or `\r\n`), or up to the end of the file. A From_ line inside the header is
//!   a header line. Then the body: every line up to the next From_ line (with or without a blank
//!   line before it; a From_ line must end with a line feed). Only a final *blank* line of the
//!   body is not part of the message; a message without a body keeps its header's blank line.
//! - `Content-Length` is an ordinary header: served, and never used to find where messages end.
//! - Served bytes are the stored bytes without bare CRs (a CR not before a LF: c-client removes
//!   them), and without the status headers. Which header lines are hidden is decided as c-client's
//!   `mail_filter()` does, on the text without bare CRs: a field named `Status`, `X-Status`,
//!   `X-Keywords`, `X-UID`, `X-IMAP` or `X-IMAPbase` in any letter case (the name ends at a colon,
//!   a space, a tab or a line end), with its continuation lines.
//! - Which of them are *read* is decided as c-client's parser does, on the stored bytes: only the
//!   exact spellings `Status:`, `X-Status:`, `X-Keywords:`, `X-UID:`, `X-IMAP:` and
//!   `X-IMAPbase:`; other spellings are hidden and not read ("Discarding bogus ... header"), and
//!   so are the continuation lines of status headers. The folder's semantics of them (UIDs,
//!   keywords, the pseudo message) are the index's business: the scanner reports them as
//!   [`StatusEvent`]s in header order.
//! - Everything else is served as stored, `>From` included, unless mboxrd unquoting is asked for.
//!
//! Hidden bytes are ranges of the file (a bare CR is a one-byte range), so that the served
//! message is a list of segments of the mbox.

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
    /// Not a flag: the message's INTERNALDATE is the file's modification time (an MMDF message
    /// without a From_ line, as c-client dated it), which changes when the file does; the live
    /// view does not count it in the message's identity.
    pub const DATE_FROM_FILE: u8 = 64;
}

/// Where what mboxfs serves knowingly differs from what c-client served, or where c-client could
/// not serve the folder at all (bits of [`RawMessage::cclient`]).
pub mod quirk {
    /// A NUL byte ends a header field name: c-client served it as a space (its header filter
    /// writes one there); mboxfs serves the NUL as stored.
    pub const NUL_IN_NAME: u8 = 1;
    /// The file ends inside the header without a line feed: c-client reads beyond the end of
    /// the file for it, and serves what its buffer held there (an extra LF, or leftovers of
    /// earlier lines), or counts it in RFC822.SIZE only.
    pub const PAST_EOF: u8 = 2;
    /// c-client loops forever reading this message (a bare CR in `X-Keywords`, or in the keyword
    /// list of the folder's `X-IMAP`/`X-IMAPbase`), so it could not open the folder.
    pub const HANGS: u8 = 4;
    /// c-client crashes reading this message (a NUL in the keyword list of the folder's
    /// `X-IMAP`/`X-IMAPbase`), so it could not open the folder.
    pub const CRASHES: u8 = 8;
    /// c-client hid a header line that its parser counted in RFC822.SIZE (or the other way
    /// round), because of a bare CR: its RFC822.SIZE was wrong, and it logged "Calculated
    /// RFC822.SIZE (n) != reported size (m)" when the message was fetched.
    pub const SIZE_MISMATCH: u8 = 16;
    /// MMDF: a line of this message ends with the separator `^A^A^A^A` (c-client cut the message
    /// before it), or its first line is a separator (a message without From_ line): c-client's
    /// RFC822.SIZE was wrong, or it served a line feed more after a header cut there.
    pub const CUT_LINE: u8 = 32;
}

/// c-client's `NUSERFLAGS`: keywords a folder can have.
pub const NUSERFLAGS: usize = 30;
/// c-client's `MAXUSERFLAG`: the longest keyword name it reads.
pub const MAXUSERFLAG: usize = 50;

/// What `X-IMAP` or `X-IMAPbase` says about the folder (only those c-client would take: a
/// UIDVALIDITY other than 0, followed by a last UID).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderHeader {
    /// `X-IMAP`: the message is c-client's pseudo message, not mail.
    pub pseudo: bool,
    /// As c-client reads it: decimal digits, modulo 2^64.
    pub uidvalidity: u64,
    pub uidlast: u64,
    /// The keyword names, numbered as c-client numbers them (at most [`NUSERFLAGS`]); `None`
    /// where a name is longer than [`MAXUSERFLAG`] (c-client leaves that number empty).
    pub keywords: Vec<Option<Vec<u8>>>,
    /// c-client hangs or crashes on this keyword list ([`quirk::HANGS`], [`quirk::CRASHES`]), or 0.
    pub breaks: u8,
}

/// A status header that c-client reads, in the order of the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusEvent {
    /// `X-Keywords:`: the names on its first line (names longer than [`MAXUSERFLAG`] left out).
    Keywords(Vec<Vec<u8>>),
    /// `X-UID:`: the value as c-client reads it (leading digits, modulo 2^64; 0 if none).
    Uid(u64),
    /// A valid `X-IMAP:` or `X-IMAPbase:`.
    Folder(FolderHeader),
}

/// One message as the scanner found it. Offsets are absolute in the mbox.
#[derive(Clone, Debug, Default)]
pub struct RawMessage {
    /// The From_ line, with its line end.
    pub from_line: Range<u64>,
    /// The From_ line's date as c-client read it (always there for a message).
    pub date: Option<MboxDate>,
    /// Where the header ends (after its blank line, or at the end of the file).
    pub header_end: u64,
    /// The end of the message text; a final blank line of the body is not included.
    pub end: u64,
    /// Byte ranges inside `from_line.end..end` that are not served: status headers, bare CRs,
    /// and with mboxrd unquoting the first `>` of quoted From_ lines. Ascending, disjoint.
    pub hidden: Vec<Range<u64>>,
    /// Line feeds in the served bytes.
    pub newlines: u64,
    /// CRLF pairs in the served bytes.
    pub crlf: u64,
    /// Flag letters seen (see [`flag`]).
    pub flags: u8,
    /// The status headers c-client reads, in header order.
    pub events: Vec<StatusEvent>,
    /// [`quirk`] bits.
    pub cclient: u8,
    /// Things worth telling the admin about this message (c-client's warnings when it parsed the
    /// folder among them; the index adds the [`quirk`]s of served messages).
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

/// How much of a header line is examined (status values longer than this are cut).
const MAX_LINE_LOOK: usize = 64 * 1024;
/// How much a header-phase read asks for.
const HEADER_WINDOW: usize = 64 * 1024;
/// How much a body-phase read asks for.
pub(crate) const BODY_WINDOW: usize = 1024 * 1024;
/// A From_ line candidate longer than this is judged by its last bytes (all `VALID()` looks at,
/// unless a ` remote from` stands further back than this on a line without other spaces).
pub(crate) const LONG_LINE: usize = 64 * 1024;

/// The six status header names (c-client's `unix_hlines`).
const STATUS_NAMES: [&[u8]; 6] = [
    b"Status",
    b"X-Status",
    b"X-Keywords",
    b"X-UID",
    b"X-IMAP",
    b"X-IMAPbase",
];

fn is_status_name(name: &[u8]) -> bool {
    STATUS_NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
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
            events: std::mem::take(&mut msg.events),
            notes: std::mem::take(&mut msg.notes),
            ..RawMessage::default()
        };
        msg.hidden.clear();
        msg.events.clear();
        msg.notes.clear();

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

/// How a header ends, besides at its blank line or the end of the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderEnd {
    /// An mbox header: nothing else ends it (a From_ line in it is a header line).
    Mbox,
    /// An MMDF header, as c-client's `mmdf` driver reads it: a separator line ends it (before
    /// that line), and so does a line that ends with a separator (cut before the separator).
    /// `separator_first`: the message has no From_ line, and a separator as its first line is
    /// then a header line, the last one (c-client has read that line before it looks).
    Mmdf { separator_first: bool },
}

/// MMDF's message separator line.
pub(crate) const MMDF_SEPARATOR: &[u8] = b"\x01\x01\x01\x01\n";

/// What [`scan_header`] found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderScan {
    /// Where the header ends.
    pub end: u64,
    /// Line feeds and CRLF pairs of the hidden status lines.
    pub hidden_nl: u64,
    pub hidden_crlf: u64,
    /// c-client's parser counted a line of it in RFC822.SIZE (an ordinary line).
    pub counted: bool,
}

/// Reads the header lines from `start` up to and including the blank line (or the end of the
/// data, or where `ends` says), recording status headers. `retain` is c-client's parser state:
/// whether a continuation line is taken (after an ordinary line); the unix driver's headers all
/// end with a blank line, which sets it, but an MMDF header can end at a separator and leave it
/// unset for the next message.
pub(crate) fn scan_header(
    hay: &mut impl Haystack,
    start: u64,
    msg: &mut RawMessage,
    ends: HeaderEnd,
    retain: &mut bool,
) -> Result<HeaderScan, ScanError> {
    let len = hay.len();
    let mut pos = start;
    let mut counted = false;
    let done = |end, hidden_nl, hidden_crlf, counted| {
        Ok(HeaderScan {
            end,
            hidden_nl,
            hidden_crlf,
            counted,
        })
    };
    // c-client's header filter: after a hidden field (its continuation lines are hidden too),
    // or after a kept one (its continuation lines are kept without a look).
    let mut filter = Filter::Start;
    let (mut hidden_nl, mut hidden_crlf) = (0, 0);
    while pos < len {
        // The line, how it ends, and whether it is the header's last (MMDF).
        let mut last = false;
        let mut cut = false;
        // A separator as the first line (MMDF): c-client stops before it parses it.
        let mut separator = false;
        let (line_len, mut info) = {
            let w = hay.get(pos, HEADER_WINDOW)?;
            match memchr::memchr(b'\n', &w[..w.len().min(MAX_LINE_LOOK)]) {
                Some(i) => {
                    let mut l = &w[..=i];
                    let mut parsed = None;
                    if let HeaderEnd::Mmdf { separator_first } = ends {
                        if l == MMDF_SEPARATOR {
                            if !(separator_first && pos == start) {
                                return done(pos, hidden_nl, hidden_crlf, counted);
                            }
                            msg.cclient |= quirk::CUT_LINE;
                            last = true;
                            separator = true;
                        } else if l.len() > MMDF_SEPARATOR.len() + 1 && l.ends_with(MMDF_SEPARATOR)
                        {
                            l = &l[..l.len() - MMDF_SEPARATOR.len()];
                            cut = true;
                            // c-client's reader ends the cut line with a line feed in place of
                            // its last byte, and its parser reads that.
                            let mut view = l.to_vec();
                            *view.last_mut().expect("at least 2 bytes") = b'\n';
                            parsed = Some(classify(&view, *retain).parsed);
                        }
                    }
                    let mut info = classify(l, *retain);
                    if let Some(p) = parsed {
                        info.parsed = p;
                    }
                    (l.len() as u64, info)
                }
                None => {
                    let look = w.len().min(MAX_LINE_LOOK);
                    (0, classify(&w[..look], *retain))
                }
            }
        };
        let (end, lf, crlf) = if cut {
            (pos + line_len, false, false)
        } else if line_len > 0 {
            (pos + line_len, info.ends_with_lf, info.ends_with_crlf)
        } else {
            // A line longer than the part looked at: its end, and how it ends.
            let mut end = line_end(hay, pos)?;
            let back = (end - pos).min(MMDF_SEPARATOR.len() as u64 + 2);
            let w = hay.get(end - back, back as usize)?;
            let tail = &w[..back as usize];
            if matches!(ends, HeaderEnd::Mmdf { .. }) && tail.ends_with(MMDF_SEPARATOR) {
                // Its status value (if any) was cut at the part looked at anyway.
                end -= MMDF_SEPARATOR.len() as u64;
                cut = true;
                (end, false, false)
            } else {
                (end, tail.ends_with(b"\n"), tail.ends_with(b"\r\n"))
            }
        };
        if cut {
            // The separator ends the header here.
            msg.cclient |= quirk::CUT_LINE;
            info.blank = false;
            last = true;
        }

        // c-client's parser, on the stored bytes.
        let plain = matches!(info.parsed, Parsed::Plain);
        let raw_dropped = match info.parsed {
            _ if separator => true,
            Parsed::Status(letters) => {
                msg.flags |= letters;
                true
            }
            Parsed::Keywords { names, hangs } => {
                if hangs {
                    msg.cclient |= quirk::HANGS;
                    msg.notes.push(
                        "a bare CR in X-Keywords: c-client loops forever reading it, so \
                         UW-IMAP could not open this folder; mboxfs reads the keywords \
                         around it"
                            .into(),
                    );
                }
                msg.events.push(StatusEvent::Keywords(names));
                true
            }
            Parsed::Folder(h) => {
                if let Some(h) = h {
                    msg.events.push(StatusEvent::Folder(h));
                }
                true
            }
            Parsed::Uid(v) => {
                msg.events.push(StatusEvent::Uid(v));
                true
            }
            Parsed::Bogus(name) => {
                msg.notes.push(format!(
                    "header {:?} is hidden but not read: UW-IMAP reads status headers only \
                     in their exact spelling (it logged \"Discarding bogus {} header\")",
                    String::from_utf8_lossy(&name),
                    String::from_utf8_lossy(&name)
                ));
                true
            }
            Parsed::Plain => {
                if *retain || !info.raw_continuation {
                    false
                } else {
                    msg.notes.push(format!(
                        "a continuation line of a status header is hidden and not read (UW-IMAP \
                         logged \"Discarding bogus continuation\": {:?})",
                        String::from_utf8_lossy(&info.shown)
                    ));
                    true
                }
            }
        };
        // A status line stops continuation lines from being taken, an ordinary line starts it.
        if !separator {
            *retain = plain && (*retain || !raw_dropped);
            counted |= !raw_dropped;
        }

        // c-client's header filter, on the bytes without bare CRs.
        let hidden = match filter {
            Filter::Hiding if info.continuation => true,
            Filter::Keeping if info.continuation => false,
            _ => {
                if info.nul_ends_name {
                    msg.cclient |= quirk::NUL_IN_NAME;
                }
                info.status_name
            }
        };
        filter = if hidden {
            Filter::Hiding
        } else {
            Filter::Keeping
        };
        if hidden != raw_dropped && !cut && !separator {
            msg.cclient |= quirk::SIZE_MISMATCH;
        }
        if hidden {
            match msg.hidden.last_mut() {
                Some(last) if last.end == pos => last.end = end,
                _ => msg.hidden.push(pos..end),
            }
            hidden_nl += u64::from(lf);
            hidden_crlf += u64::from(crlf);
        }
        pos = end;
        if info.blank || last {
            return done(pos, hidden_nl, hidden_crlf, counted);
        }
    }
    // The header reaches the end of the file.
    if len > start {
        let w = hay.get(len - 1, 1)?;
        if w.first() != Some(&b'\n') {
            msg.cclient |= quirk::PAST_EOF;
        }
    }
    done(len, hidden_nl, hidden_crlf, counted)
}

/// The state of c-client's header filter between lines.
#[derive(Clone, Copy)]
enum Filter {
    Start,
    Hiding,
    Keeping,
}

/// A header line as c-client's parser reads it (the stored bytes).
enum Parsed {
    /// `Status:` or `X-Status:`: the flag letters.
    Status(u8),
    Keywords {
        names: Vec<Vec<u8>>,
        hangs: bool,
    },
    /// `X-IMAP:`/`X-IMAPbase:`, and what it says if c-client would take it.
    Folder(Option<FolderHeader>),
    Uid(u64),
    /// A status header in another spelling: hidden, not read.
    Bogus(Vec<u8>),
    Plain,
}

/// What one header line is, to c-client's parser and to its header filter.
struct LineInfo {
    parsed: Parsed,
    /// The line is `\n` or `\r\n`: it ends the header.
    blank: bool,
    /// The stored line starts with a space or a tab.
    raw_continuation: bool,
    /// Without bare CRs, the line starts with a space or a tab.
    continuation: bool,
    /// Without bare CRs, the line's field name is a status header name (any case).
    status_name: bool,
    /// Without bare CRs, a NUL ends the line's field name.
    nul_ends_name: bool,
    ends_with_lf: bool,
    ends_with_crlf: bool,
    /// The start of the line, for notes.
    shown: Vec<u8>,
}

/// Classifies one header line (with its `\n` if it has one; possibly cut at
/// [`MAX_LINE_LOOK`]). `retain`: c-client's parser takes a continuation line here (else the
/// line's start is kept for the note about it).
fn classify(l: &[u8], retain: bool) -> LineInfo {
    let blank = l == b"\n" || l == b"\r\n";
    let ends_with_lf = l.ends_with(b"\n");
    let ends_with_crlf = l.ends_with(b"\r\n");
    let (status_name, stop) = filter_name(l);
    let raw_continuation = matches!(l.first(), Some(b' ' | b'\t'));
    LineInfo {
        parsed: parse_status_line(l),
        blank,
        raw_continuation,
        continuation: matches!(first_unbare(l), Some(b' ' | b'\t')),
        status_name,
        nul_ends_name: stop == Some(0),
        ends_with_lf,
        ends_with_crlf,
        shown: if raw_continuation && !retain {
            let cut = memchr::memchr2(b'\r', b'\n', l).unwrap_or(l.len()).min(80);
            l[..cut].to_vec()
        } else {
            Vec::new()
        },
    }
}

/// Whether the CR at `i` is bare (not followed by a LF).
fn bare_cr(l: &[u8], i: usize) -> bool {
    l[i] == b'\r' && l.get(i + 1) != Some(&b'\n')
}

/// The first byte of the line once bare CRs are removed.
fn first_unbare(l: &[u8]) -> Option<u8> {
    (0..l.len()).find(|&i| !bare_cr(l, i)).map(|i| l[i])
}

/// The field name `mail_filter()` sees (bare CRs removed): the bytes up to a space, a tab, a
/// colon, a line end or a NUL (at most 1023). Returns whether it is a status header name, and the
/// byte that ended it (`None`: the end of the line, or the limit).
fn filter_name(l: &[u8]) -> (bool, Option<u8>) {
    // The longest status header name is 10 bytes: a longer name is not one.
    let mut name = [0u8; 11];
    let mut n = 0;
    for i in 0..l.len() {
        if bare_cr(l, i) {
            continue;
        }
        let b = l[i];
        if matches!(b, b' ' | b'\t' | b':' | b'\r' | b'\n' | 0) {
            return (
                n > 0 && n < name.len() && is_status_name(&name[..n]),
                Some(b),
            );
        }
        if n == fromline::MAILTMPLEN - 1 {
            return (false, None);
        }
        if n < name.len() {
            name[n] = b;
        }
        n += 1;
    }
    (n > 0 && n < name.len() && is_status_name(&name[..n]), None)
}

/// The field name c-client's parser compares with the status headers (stored bytes): up to a
/// colon, a space, a tab, a CR, a LF or a NUL.
fn parser_name(l: &[u8]) -> &[u8] {
    let cut = l
        .iter()
        .take(fromline::MAILTMPLEN - 1)
        .position(|&b| matches!(b, b':' | b' ' | b'\t' | b'\r' | b'\n' | 0))
        .unwrap_or(l.len().min(fromline::MAILTMPLEN - 1));
    &l[..cut]
}

/// Whether `v[i]` ends a status value as c-client's loops see it: a NUL, a LF, a CRLF, or the end.
fn value_end(v: &[u8], i: usize) -> bool {
    match v.get(i) {
        None | Some(0) | Some(b'\n') => true,
        Some(b'\r') => v.get(i + 1) == Some(&b'\n'),
        _ => false,
    }
}

/// How c-client's parser reads one header line (`unix_parse()`).
fn parse_status_line(l: &[u8]) -> Parsed {
    if let Some(r) = l.strip_prefix(b"X-") {
        if r.starts_with(b"Status:") {
            return Parsed::Status(status_letters(&l[8..]));
        }
        if r.starts_with(b"Keywords:") {
            let (names, hangs) = keyword_names(&l[11..]);
            return Parsed::Keywords { names, hangs };
        }
        if r.starts_with(b"IMAP:") {
            return Parsed::Folder(folder_header(&l[7..], true));
        }
        if r.starts_with(b"IMAPbase:") {
            return Parsed::Folder(folder_header(&l[11..], false));
        }
        if r.starts_with(b"UID:") {
            return Parsed::Uid(digits_after_spaces(&l[6..]).0);
        }
    } else if l.starts_with(b"Status:") {
        return Parsed::Status(status_letters(&l[6..]));
    }
    let checked = matches!(l, [b'S' | b's', ..] | [b'X' | b'x', b'-', ..]);
    if checked {
        let name = parser_name(l);
        if is_status_name(name) {
            return Parsed::Bogus(name.to_vec());
        }
    }
    Parsed::Plain
}

/// The flag letters of a `Status:` value (from its colon on, up to a NUL or the line end).
fn status_letters(v: &[u8]) -> u8 {
    let mut flags = 0;
    let mut i = 0;
    loop {
        flags |= match v.get(i) {
            Some(b'R') => flag::SEEN,
            Some(b'O') => flag::OLD,
            Some(b'D') => flag::DELETED,
            Some(b'F') => flag::FLAGGED,
            Some(b'A') => flag::ANSWERED,
            Some(b'T') => flag::DRAFT,
            _ => 0,
        };
        i += 1;
        if value_end(v, i) {
            return flags;
        }
    }
}

/// Spaces (not tabs), then decimal digits modulo 2^64, as c-client reads numbers. Returns the
/// value and where the digits end.
fn digits_after_spaces(v: &[u8]) -> (u64, usize) {
    let mut i = v.iter().take_while(|&&b| b == b' ').count();
    let mut n: u64 = 0;
    while let Some(d) = v.get(i).filter(|b| b.is_ascii_digit()) {
        n = n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
        i += 1;
    }
    (n, i)
}

/// The end of the name starting at `i`, as `strpbrk(s, " \n\r")` finds it (a NUL also ends
/// it), or the end of the slice.
fn name_end(v: &[u8], i: usize) -> usize {
    v[i..]
        .iter()
        .position(|&b| matches!(b, b' ' | b'\n' | b'\r' | 0))
        .map_or(v.len(), |k| i + k)
}

/// The names of an `X-Keywords:` value: separated by spaces (a tab is part of a name), up to a
/// NUL or the line end; names longer than [`MAXUSERFLAG`] are skipped. Also whether c-client
/// loops forever on it (a bare CR; mboxfs steps over it).
fn keyword_names(v: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut names = Vec::new();
    let mut hangs = false;
    let mut i = 0;
    while !value_end(v, i) {
        while v.get(i) == Some(&b' ') {
            i += 1;
        }
        let end = name_end(v, i.min(v.len()));
        if end == i && v.get(i) == Some(&b'\r') && !value_end(v, i) {
            hangs = true;
            i += 1;
            continue;
        }
        if end > i && end - i <= MAXUSERFLAG {
            names.push(v[i..end].to_vec());
        }
        i = end;
    }
    (names, hangs)
}

/// An `X-IMAP:`/`X-IMAPbase:` value, if c-client would take it: UIDVALIDITY (not 0), the last
/// UID, and keyword names.
fn folder_header(v: &[u8], pseudo: bool) -> Option<FolderHeader> {
    let (uidvalidity, i) = digits_after_spaces(v);
    let j = i + v[i..].iter().take_while(|&&b| b == b' ').count();
    if uidvalidity == 0 || !v.get(j).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let (uidlast, k) = digits_after_spaces(&v[j..]);
    let mut i = j + k;
    let mut keywords: Vec<Option<Vec<u8>>> = Vec::new();
    let mut breaks = 0;
    // c-client's loop, one name a turn: until a LF or CRLF. A NUL crashes it, a bare CR makes it
    // loop forever (mboxfs stops at the NUL, and steps over the CR).
    let mut slot = 0;
    while i < v.len() && v[i] != b'\n' && !(v[i] == b'\r' && v.get(i + 1) == Some(&b'\n')) {
        while v.get(i) == Some(&b' ') {
            i += 1;
        }
        let end = name_end(v, i.min(v.len()));
        if v.get(end) == Some(&0) {
            breaks |= quirk::CRASHES;
            break;
        }
        if end == i && v.get(i) == Some(&b'\r') && v.get(i + 1) != Some(&b'\n') {
            breaks |= quirk::HANGS;
            i += 1;
            continue;
        }
        if end > i && slot < NUSERFLAGS {
            keywords.resize(slot, None);
            keywords.push((end - i <= MAXUSERFLAG).then(|| v[i..end].to_vec()));
        }
        i = end;
        slot += 1;
    }
    if i >= v.len() && breaks == 0 {
        // No line end (the file ends here): c-client reads on beyond its buffer and crashes.
        breaks |= quirk::CRASHES;
    }
    Some(FolderHeader {
        pseudo,
        uidvalidity,
        uidlast,
        keywords,
        breaks,
    })
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

/// The offset after the line that starts at `start`.
pub(crate) fn line_end(hay: &mut impl Haystack, start: u64) -> io::Result<u64> {
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

/// Counts the line feeds and CRLF pairs in `start..end`, and adds each run of bare CRs to
/// `hidden`.
pub(crate) fn scan_text(
    hay: &mut impl Haystack,
    start: u64,
    end: u64,
    hidden: &mut Vec<Range<u64>>,
) -> io::Result<(u64, u64)> {
    let (mut nl, mut crlf) = (0u64, 0u64);
    let mut pos = start;
    let mut crs: Vec<Range<u64>> = Vec::new();
    let mut bare = |at: u64| match crs.last_mut() {
        Some(r) if r.end == at => r.end += 1,
        _ => crs.push(at..at + 1),
    };
    // A CR at the end of the previous window, whose next byte is in this one.
    let mut pending: Option<u64> = None;
    while pos < end {
        let w = hay.get(pos, BODY_WINDOW)?;
        let w = &w[..w.len().min((end - pos) as usize)];
        if w.is_empty() {
            break;
        }
        if let Some(at) = pending.take() {
            if w[0] == b'\n' {
                crlf += 1;
            } else {
                bare(at);
            }
        }
        nl += bytecount::count(w, b'\n') as u64;
        for i in memchr::memchr_iter(b'\r', w) {
            match w.get(i + 1) {
                Some(b'\n') => crlf += 1,
                Some(_) => bare(pos + i as u64),
                None => pending = Some(pos + i as u64),
            }
        }
        pos += w.len() as u64;
    }
    if let Some(at) = pending {
        // The text's last byte is a CR: its LF, if any, is not part of the text.
        let lf = end < hay.len() && hay.get(end, 1)?.first() == Some(&b'\n');
        if !lf {
            bare(at);
        }
    }
    hidden.extend(crs);
    Ok((nl, crlf))
}

/// Sorts ranges and joins those that overlap or touch.
pub(crate) fn merge_ranges(ranges: &mut Vec<Range<u64>>) {
    if ranges.len() < 2 {
        return;
    }
    ranges.sort_unstable_by_key(|r| r.start);
    let mut out = 0;
    for i in 1..ranges.len() {
        if ranges[i].start <= ranges[out].end {
            ranges[out].end = ranges[out].end.max(ranges[i].end);
        } else {
            out += 1;
            ranges[out] = ranges[i].clone();
        }
    }
    ranges.truncate(out + 1);
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
    fn status_headers_are_hidden_and_read() {
        let data = format!(
            "{F1}Subject: s\nStatus: RO\nX-Status: AFT\nX-Keywords: Junk  $Label1   \nX-UID: 7  \n\nbody\n"
        );
        let msgs = scan_all(data.as_bytes(), Unquote::None).unwrap();
        let m = &msgs[0];
        assert_eq!(served(data.as_bytes(), m), b"Subject: s\n\nbody\n");
        assert_eq!(
            m.flags,
            flag::SEEN | flag::OLD | flag::ANSWERED | flag::FLAGGED | flag::DRAFT
        );
        assert_eq!(
            m.events,
            [
                StatusEvent::Keywords(vec![b"Junk".to_vec(), b"$Label1".to_vec()]),
                StatusEvent::Uid(7)
            ]
        );
        assert_eq!(m.hidden.len(), 1);
        assert_eq!((m.newlines, m.crlf), (3, 0));
    }

    #[test]
    fn other_spellings_are_hidden_but_not_read() {
        let data = format!(
            "{F1}status: R\nX-STATUS: F\nStatus : O\nStatus R\nx-uid: 3\nSubject: s\n\nb\n"
        );
        let m = &scan_all(data.as_bytes(), Unquote::None).unwrap()[0];
        assert_eq!(served(data.as_bytes(), m), b"Subject: s\n\nb\n");
        assert_eq!(m.flags, 0);
        assert!(m.events.is_empty());
        assert_eq!(m.notes.len(), 5, "{:?}", m.notes);
    }

    #[test]
    fn continuation_lines_belong_to_their_header_and_are_not_read() {
        let data = format!("{F1}X-Keywords: a\n b\nSubject: s\n  more\nStatus: R\n O\n\nx\n");
        let m = &scan_all(data.as_bytes(), Unquote::None).unwrap()[0];
        assert_eq!(served(data.as_bytes(), m), b"Subject: s\n  more\n\nx\n");
        assert_eq!(m.events, [StatusEvent::Keywords(vec![b"a".to_vec()])]);
        assert_eq!(m.flags, flag::SEEN);
        assert_eq!(m.notes.len(), 2);
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
    fn bare_crs_are_hidden() {
        let data = format!("{F1}S: x\ry\n\nbo\rdy\r\n\r\r\nend\r");
        let m = &scan_all(data.as_bytes(), Unquote::None).unwrap()[0];
        assert_eq!(served(data.as_bytes(), m), b"S: xy\n\nbody\r\n\r\nend");
        assert_eq!((m.newlines, m.crlf), (4, 2));
        // A bare CR that makes a status header: hidden (the filter does not see it), not read.
        let data = format!("{F1}Sta\rtus: R\nSubject: s\n\nb\n");
        let m = &scan_all(data.as_bytes(), Unquote::None).unwrap()[0];
        assert_eq!(served(data.as_bytes(), m), b"Subject: s\n\nb\n");
        assert_eq!(m.flags, 0);
        assert_eq!(m.cclient, quirk::SIZE_MISMATCH);
    }

    #[test]
    fn folder_headers() {
        let data = format!(
            "{F1}Subject: DON'T DELETE\nX-IMAP: 1104919200 0000000012 Junk $Label1\nStatus: RO\n\ntext\n\n{F2}S: x\n\ny\n"
        );
        let msgs = scan_all(data.as_bytes(), Unquote::None).unwrap();
        let StatusEvent::Folder(f) = &msgs[0].events[0] else {
            panic!("{:?}", msgs[0].events)
        };
        assert!(f.pseudo);
        assert_eq!((f.uidvalidity, f.uidlast), (1104919200, 12));
        assert_eq!(
            f.keywords,
            [Some(b"Junk".to_vec()), Some(b"$Label1".to_vec())]
        );
        // Not taken: UIDVALIDITY 0, no last UID, a tab.
        for bad in ["0 10", "5", "\t5 10", "x 10"] {
            assert_eq!(folder_header(bad.as_bytes(), false), None, "{bad}");
        }
        // A name too long leaves its number empty; a bare CR or a NUL breaks c-client.
        let long = "k".repeat(51);
        let h = folder_header(format!(" 5 10 a {long} c\n").as_bytes(), false).unwrap();
        assert_eq!(h.keywords, [Some(b"a".to_vec()), None, Some(b"c".to_vec())]);
        assert_eq!(
            folder_header(b" 5 10 a\rb\n", false).unwrap().breaks,
            quirk::HANGS
        );
        assert_eq!(
            folder_header(b" 5 10 a\0b\n", false).unwrap().breaks,
            quirk::CRASHES
        );
        assert_eq!(
            keyword_names(b" a\rb c\n"),
            (vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()], true)
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
    fn the_header_may_reach_the_end_of_the_file() {
        let data = format!("{F1}S: x\nStatus: R");
        let m = &scan_all(data.as_bytes(), Unquote::None).unwrap()[0];
        assert_eq!(served(data.as_bytes(), m), b"S: x\n");
        assert_eq!((m.header_end, m.cclient), (m.end, quirk::PAST_EOF));
        let data = format!("{F1}S: x");
        let m = &scan_all(data.as_bytes(), Unquote::None).unwrap()[0];
        assert_eq!(m.cclient, quirk::PAST_EOF);
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
        assert_eq!(
            msgs[0].events,
            [StatusEvent::Keywords(vec![
                b"\xe9t\xe9".to_vec(),
                b"ok".to_vec()
            ])]
        );
        assert_eq!(msgs[0].cclient, 0);
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
    fn a_status_header_longer_than_the_part_looked_at() {
        let long = "x".repeat(MAX_LINE_LOOK + 10);
        let data = format!("{F1}X-Keywords: {long}\r\nSubject: s\r\n\r\nb\r\n");
        let m = &scan_all(data.as_bytes(), Unquote::None).unwrap()[0];
        assert_eq!(served(data.as_bytes(), m), b"Subject: s\r\n\r\nb\r\n");
        assert_eq!((m.newlines, m.crlf), (3, 3));
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
        assert_eq!(msgs[0].events, [StatusEvent::Uid(9)]);
        assert_eq!(msgs[0].flags, flag::OLD);
        assert_eq!(msgs[0].header_end, msgs[0].end);
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
