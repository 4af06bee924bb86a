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
//!   is a From_ line ([`fromline`](crate::fromline)) that ends within its first 1023 bytes, and nothing but a line
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
//!
//! The code, split where c-client's own concerns split:
//! - this file: what the scanner reports, shared with the index and UW's other stores
//!   ([`RawMessage`], [`StatusEvent`], [`FolderHeader`], the [`flag`] and [`quirk`] bits) and how
//!   it is asked and fails ([`Unquote`], [`ScanError`]);
//! - `haystack.rs`: the [`Haystack`] the scanner reads through, and the reads through it that the
//!   mbox scanner and the MMDF reader share, over window edges (line ends, line feeds, bare CRs);
//! - `header_line.rs`: one header line as c-client sees it, through its header filter (is it a
//!   hidden status header?) and through its parser (which status header, and what it says);
//! - `header.rs`: a header walked line by line, with the state that runs from one line to the
//!   next (continuations), recording hidden ranges, flags, [`StatusEvent`]s and quirks; shared
//!   with the MMDF reader, whose headers also end at a separator;
//! - `scanner.rs`: where messages start and end (the first From_ line, From_ lines after a
//!   header, a final blank line), mboxrd unquoting, and the [`Scanner`] loop;
//! - `testutil.rs` (tests only): helpers shared by these files' unit tests and the MMDF reader's.

use std::io;
use std::ops::Range;

use crate::fromline::MboxDate;

mod haystack;
mod header;
mod header_line;
mod scanner;
#[cfg(test)]
pub(crate) mod testutil;

pub(crate) use haystack::{BODY_WINDOW, line_end, merge_ranges, scan_text};
pub use haystack::{Haystack, SliceHaystack};
pub(crate) use header::{HeaderEnd, MMDF_SEPARATOR, scan_header};
pub(crate) use scanner::{LONG_LINE, line_text};
pub use scanner::{Scanner, scan_all};

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

impl RawMessage {
    /// Empties the message for the next one, keeping the allocations of its vectors.
    pub(crate) fn reset(&mut self) {
        *self = RawMessage {
            hidden: std::mem::take(&mut self.hidden),
            events: std::mem::take(&mut self.events),
            notes: std::mem::take(&mut self.notes),
            ..RawMessage::default()
        };
        self.hidden.clear();
        self.events.clear();
        self.notes.clear();
    }
}

/// Every message that `next` reads (a store's scanner's `next_message` on a whole file), each
/// cloned out of the one [`RawMessage`] it reuses.
pub(crate) fn collect_messages(
    mut next: impl FnMut(&mut RawMessage) -> Result<bool, ScanError>,
) -> Result<Vec<RawMessage>, ScanError> {
    let mut out = Vec::new();
    let mut msg = RawMessage::default();
    while next(&mut msg)? {
        out.push(msg.clone());
    }
    Ok(out)
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
