//! One header line as c-client sees it, twice over:
//! - through its header filter (`mail_filter()`), which decides what is served: on the line
//!   without bare CRs, whether it continues the field before it, and whether its field name is a
//!   status header name in any letter case;
//! - through its parser (`unix_parse()`), which decides what is read: on the stored bytes, only
//!   the exact spellings, and what each says (flag letters, keyword names, a UID, a folder
//!   header).
//!
//! The two disagree where c-client did (another spelling, a bare CR); the header walker
//! (`header.rs`) keeps the state between lines and notes each disagreement. Everything here is a
//! pure function of one line, possibly cut at
//! [`MAX_LINE_LOOK`](super::header::MAX_LINE_LOOK) bytes.

use super::{FolderHeader, MAXUSERFLAG, NUSERFLAGS, flag, quirk};
use crate::fromline;

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

/// A header line as c-client's parser reads it (the stored bytes).
pub(super) enum Parsed {
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
pub(super) struct LineInfo {
    pub(super) parsed: Parsed,
    /// The line is `\n` or `\r\n`: it ends the header.
    pub(super) blank: bool,
    /// The stored line starts with a space or a tab.
    pub(super) raw_continuation: bool,
    /// Without bare CRs, the line starts with a space or a tab.
    pub(super) continuation: bool,
    /// Without bare CRs, the line's field name is a status header name (any case).
    pub(super) status_name: bool,
    /// Without bare CRs, a NUL ends the line's field name.
    pub(super) nul_ends_name: bool,
    pub(super) ends_with_lf: bool,
    pub(super) ends_with_crlf: bool,
    /// The start of the line, for notes.
    pub(super) shown: Vec<u8>,
}

/// Classifies one header line (with its `\n` if it has one; possibly cut at
/// [`MAX_LINE_LOOK`](super::header::MAX_LINE_LOOK)). `retain`: c-client's parser takes a
/// continuation line here (else the line's start is kept for the note about it).
pub(super) fn classify(l: &[u8], retain: bool) -> LineInfo {
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

// c-client's header filter.

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

// c-client's parser.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::testutil::{F1, F2, served};
    use crate::scan::{StatusEvent, Unquote, scan_all};

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
}
