//! UW-IMAP's own mbx store, read as c-client 2007f's `mbx` driver reads it (read-only, as a
//! migration reads it), checked against c-client itself (`tests/stores.rs`).
//!
//! The file:
//! - a header of exactly 2048 bytes: `*mbx*` CRLF, UIDVALIDITY and the last UID as 8 hex digits
//!   each, CRLF, then up to 30 keyword names, one per CRLF line, ended by an empty line (or a
//!   NUL); a name longer than 50 bytes leaves its number empty. A file that is shorter, or whose
//!   first 25 bytes are not exactly that, is not mbx to c-client (`mbx_isvalid()`).
//! - then each message: a line `<date>,<size>;<keywords><flags>-<uid>` CRLF, where the date is
//!   `dd-mmm-yyyy hh:mm:ss +zzzz` (INTERNALDATE, read by `mail_parse_date()`), the size is
//!   decimal (`strtoul()`), the keywords 8 hex digits (bit `i`: keyword `i`), the flags 4 hex
//!   digits (`fSEEN` 1, `fDELETED` 2, `fFLAGGED` 4, `fANSWERED` 8, `fOLD` 0x10, `fDRAFT` 0x20,
//!   `fEXPUNGED` 0x8000) and the UID 8 hex digits (0: none yet); the line must end within the
//!   first 64 bytes read for it. The message is the next `size` bytes, served exactly as stored
//!   (mbx keeps CRLF; nothing is hidden): the header line stands where an mbox's From_ line
//!   stands, before [`Msg::offset`](crate::index::Msg).
//!
//! c-client's rules, each confirmed with `uwdump -a`:
//! - a message with `fEXPUNGED` (expunged while another session had the folder open, not yet
//!   compacted) is not shown, but its UID counts as the last one seen;
//! - a message is \Recent when it has no UID or no `fOLD`; one without a UID gets the last UID
//!   plus one (UIDNEXT follows);
//! - a UID not greater than the previous message's, or greater than the header's last UID,
//!   makes c-client rebuild the UIDs: it logs "Invalid UID ... rebuilding UIDs", invents a
//!   UIDVALIDITY (the time of opening), and numbers that message and every later one on from the
//!   previous UID. mboxfs gives the same UIDs under its derived, stable UIDVALIDITY;
//! - anything c-client cannot read in a message header line (no CRLF in its first 64 bytes, no
//!   `,` or `;`, flags or UID not hex, a size of 0 or none, a size running past the end of the
//!   file, a date it cannot parse in a message not expunged) makes c-client refuse the whole
//!   folder: mboxfs refuses it too, quoting c-client's words and the byte where it stopped.

use std::io;

use jiff::tz::TimeZone;

use crate::fromline::{self, MboxDate};
use crate::index::{
    FolderIndex, MAX_KEYWORDS, MAX_NOTES, Msg, Store, StoreReading, UidValiditySource,
};
use crate::safe::excerpt;
use crate::scan::{Haystack, MAXUSERFLAG, NUSERFLAGS, ScanError, flag};
use crate::tz;

/// The size of the folder header.
pub const HDRSIZE: usize = 2048;
/// The magic the file starts with.
pub const MAGIC: &[u8] = b"*mbx*\r\n";
/// How much c-client reads for a message's header line.
const ENTRY_READ: usize = 64;

/// c-client's system flag bits of a message header line.
pub mod bits {
    pub const SEEN: u16 = 0x1;
    pub const DELETED: u16 = 0x2;
    pub const FLAGGED: u16 = 0x4;
    pub const ANSWERED: u16 = 0x8;
    pub const OLD: u16 = 0x10;
    pub const DRAFT: u16 = 0x20;
    pub const EXPUNGED: u16 = 0x8000;
}

/// The folder header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub uidvalidity: u32,
    pub uid_last: u32,
    /// Keyword names by number; `None` where a name is longer than [`MAXUSERFLAG`] (c-client
    /// leaves that number empty).
    pub keywords: Vec<Option<Vec<u8>>>,
}

fn hex(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    b.iter().try_fold(0u64, |v, &d| {
        Some(v * 16 + u64::from((d as char).to_digit(16)?))
    })
}

/// Whether the first bytes of a file are an mbx header c-client accepts (`mbx_isvalid()`):
/// at least [`HDRSIZE`] bytes, `*mbx*` CRLF, 16 hex digits, CRLF. The reason when not.
pub fn check_header(head: &[u8]) -> Result<(), String> {
    if !head.starts_with(MAGIC) {
        return Err("it does not start with \"*mbx*\" CRLF".into());
    }
    if let Some(i) = (7..23.min(head.len())).find(|&i| !head[i].is_ascii_hexdigit()) {
        return Err(format!(
            "byte {i} of its header is {}, not a hex digit of its UIDVALIDITY and last UID",
            excerpt(&head[i..i + 1])
        ));
    }
    if head.get(23..25) != Some(b"\r\n") {
        return Err("its UIDVALIDITY and last UID are not followed by CRLF".into());
    }
    if head.len() < HDRSIZE {
        return Err(format!(
            "it is {} bytes long, shorter than the {HDRSIZE}-byte header of an mbx file",
            head.len()
        ));
    }
    Ok(())
}

/// Parses the folder header (the first [`HDRSIZE`] bytes, or fewer: then it is refused), as
/// `mbx_isvalid()` and `mbx_parse()` read it.
pub fn parse_header(head: &[u8]) -> Result<Header, String> {
    check_header(head)?;
    let h = &head[..HDRSIZE];
    let uidvalidity = hex(&h[7..15]).expect("checked") as u32;
    let uid_last = hex(&h[15..23]).expect("checked") as u32;
    // c-client's loop: `strchr(s, '\r')` in the header read into a NUL-terminated buffer, so
    // a NUL before the CR (or no CR) ends the names, and so does an empty line; the byte
    // after the CR is skipped unseen.
    let mut keywords = Vec::new();
    let mut s = 25;
    while keywords.len() < NUSERFLAGS && s < HDRSIZE {
        let Some(k) = h[s..].iter().position(|&b| b == b'\r' || b == 0) else {
            break;
        };
        if h[s + k] == 0 || k == 0 {
            break;
        }
        let name = &h[s..s + k];
        keywords.push((name.len() <= MAXUSERFLAG).then(|| name.to_vec()));
        s += k + 2;
    }
    Ok(Header {
        uidvalidity,
        uid_last,
        keywords,
    })
}

/// One message's header line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The length of the line with its CRLF: the message text starts this far after it.
    pub line_len: u64,
    /// The message's size (what `strtoul()` made of it).
    pub size: u64,
    /// Keyword bits.
    pub keywords: u32,
    /// System flag [`bits`].
    pub flags: u16,
    /// 0: not given yet.
    pub uid: u32,
    /// The date as c-client read it (checked only for messages that are not expunged).
    pub date: MboxDate,
    /// The date text, for messages.
    pub date_text: Vec<u8>,
}

/// Parses the header line of the message at `at`, from the bytes c-client reads for it (the
/// next 64, fewer at the end of the file); `file_len` is the file's length. Refuses as c-client
/// refuses (its words in the reason).
pub fn parse_entry(buf: &[u8], at: u64, file_len: u64) -> Result<Entry, String> {
    let buf = &buf[..buf.len().min(ENTRY_READ)];
    let shown = |b: &[u8]| excerpt(&b[..b.len().min(80)]);
    // strchr(buf, '\r') in a NUL-terminated buffer, then a LF.
    let cr = buf.iter().position(|&b| b == b'\r' || b == 0);
    let line = match cr {
        Some(k) if buf[k] == b'\r' && buf.get(k + 1) == Some(&b'\n') => &buf[..k],
        _ => {
            let upto = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return Err(format!(
                "no CRLF ends the message header line at byte {at} within the {} bytes UW-IMAP \
                 read for it (it logged \"Unable to find CRLF at {at} in {} bytes, text: ...\"): \
                 {}",
                buf.len(),
                buf.len(),
                shown(&buf[..upto])
            ));
        }
    };
    let line_len = line.len() as u64 + 2;
    let comma = line.iter().position(|&b| b == b',');
    let semi = comma.and_then(|c| {
        line[c + 1..]
            .iter()
            .position(|&b| b == b';')
            .map(|k| c + 1 + k)
    });
    let (Some(comma), Some(t)) = (comma, semi) else {
        return Err(format!(
            "the message header line at byte {at} has no \",\" and \";\" (UW-IMAP logged \
             \"Unable to parse internal header at {at}\"): {}",
            shown(line)
        ));
    };
    let g = |i: usize| line.get(t + i).copied().unwrap_or(0);
    if !(1..=12).all(|i| g(i).is_ascii_hexdigit()) {
        return Err(format!(
            "the flags of the message header line at byte {at} are not 12 hex digits (UW-IMAP \
             logged \"Unable to parse message flags at {at}\"): {}",
            shown(line)
        ));
    }
    if g(13) != b'-' || line.len() != t + 22 || !(14..=21).all(|i| g(i).is_ascii_hexdigit()) {
        return Err(format!(
            "the UID of the message header line at byte {at} is not \"-\" and 8 hex digits \
             ending the line (UW-IMAP logged \"Unable to parse message UID at {at}\"): {}",
            shown(line)
        ));
    }
    // strtoul(s, &x, 10) on the text between ',' and ';': refused only when it is 0 and
    // nothing is left over (junk after the digits, or no digits but junk, is let through).
    let size_text = &line[comma + 1..t];
    let (size, end) = fromline::strtoul(size_text, 0);
    if size == 0 && end >= size_text.len() {
        return Err(format!(
            "the message header line at byte {at} gives no size (UW-IMAP logged \"Unable to \
             parse message size at {at}\"): {}",
            shown(line)
        ));
    }
    let text_at = at + line_len;
    if size > file_len.saturating_sub(text_at) {
        return Err(format!(
            "the message at byte {at} is {size} bytes long, past the end of the file ({file_len} \
             bytes; UW-IMAP logged \"Last message (at {at}) runs past end of file\")"
        ));
    }
    let keywords = hex(&line[t + 1..t + 9]).expect("checked") as u32;
    let flags = hex(&line[t + 9..t + 13]).expect("checked") as u16;
    let uid = hex(&line[t + 14..t + 22]).expect("checked") as u32;
    let date_text = line[..comma].to_vec();
    Ok(Entry {
        line_len,
        size,
        keywords,
        flags,
        uid,
        date: fromline::mail_parse_date(&date_text),
        date_text,
    })
}

/// Whether a keyword name can be a Maildir keyword (a line of `dovecot-keywords`, an IMAP
/// atom): no control characters and no space.
fn usable_keyword(name: &[u8]) -> bool {
    !name.iter().any(|&b| b <= b' ' || b == 0x7f)
}

/// Bare line feeds in `start..end` (line feeds not after a CR inside the range).
fn bare_lfs(hay: &mut impl Haystack, start: u64, end: u64) -> io::Result<u64> {
    const WINDOW: usize = 1 << 20;
    let (mut lf, mut crlf) = (0u64, 0u64);
    let mut pos = start;
    let mut cr_before = false;
    while pos < end {
        let w = hay.get(pos, WINDOW)?;
        let w = &w[..w.len().min((end - pos) as usize)];
        if w.is_empty() {
            break;
        }
        lf += bytecount::count(w, b'\n') as u64;
        crlf += memchr::memmem::find_iter(w, b"\r\n").count() as u64;
        if cr_before && w[0] == b'\n' {
            crlf += 1;
        }
        cr_before = *w.last().expect("not empty") == b'\r';
        pos += w.len() as u64;
    }
    Ok(lf - crlf)
}

/// Indexes an mbx file. `derived_uidvalidity` is used where c-client invented one (or the
/// header has 0); `tz` reads dates without a zone.
pub fn index(
    hay: &mut impl Haystack,
    tz: &TimeZone,
    derived_uidvalidity: u32,
) -> Result<FolderIndex, ScanError> {
    let derived = derived_uidvalidity.max(1);
    let len = hay.len();
    let header = {
        let w = hay.get(0, HDRSIZE)?;
        parse_header(&w[..w.len().min(HDRSIZE)]).map_err(|why| {
            ScanError::NotMbox(format!("not an mbx file UW-IMAP could open: {why}"))
        })?
    };
    let mut notes = Notes::default();

    // Keyword numbers to the folder's keywords (letters); names in any letter case are one.
    let mut keywords: Vec<String> = Vec::new();
    let mut slot_to_kw: Vec<Option<usize>> = Vec::new();
    for name in &header.keywords {
        let Some(name) = name else {
            notes.push(
                "a keyword name of the mbx header is longer than 50 bytes: UW-IMAP ignored it"
                    .into(),
            );
            slot_to_kw.push(None);
            continue;
        };
        if !usable_keyword(name) {
            notes.push(format!(
                "keyword {} of the mbx header holds a space or a control character, which no \
                 IMAP keyword can: it is dropped",
                excerpt(name)
            ));
            slot_to_kw.push(None);
            continue;
        }
        let text = String::from_utf8_lossy(name).into_owned();
        let i = match keywords.iter().position(|k| k.eq_ignore_ascii_case(&text)) {
            Some(i) => i,
            None => {
                keywords.push(text);
                keywords.len() - 1
            }
        };
        slot_to_kw.push(Some(i));
    }

    let mut messages: Vec<Msg> = Vec::new();
    let mut uid_last = u64::from(header.uid_last);
    let mut lastuid: u64 = 0;
    let mut rebuilt = false;
    let mut pos = HDRSIZE as u64;
    while pos < len {
        let entry = {
            let w = hay.get(pos, ENTRY_READ)?;
            let w = &w[..w.len().min((len - pos) as usize)];
            parse_entry(w, pos, len).map_err(|why| {
                ScanError::NotMbox(format!("UW-IMAP could not open this mbx folder: {why}"))
            })?
        };
        let number = messages.len() + 1;
        let mut uid = u64::from(entry.uid);
        if uid != 0 && (uid <= lastuid || uid > uid_last) {
            if !rebuilt {
                rebuilt = true;
                notes.push(format!(
                    "message {number} (at byte {pos}): UID {uid} is {} (UW-IMAP logged \"Invalid \
                     UID {uid:08x} in message {number}, rebuilding UIDs\"): UW-IMAP discarded \
                     the folder's UIDVALIDITY and numbered this message and all later ones on \
                     from the previous UID",
                    if uid <= lastuid {
                        format!("not greater than the previous UID {lastuid}")
                    } else {
                        format!("greater than the header's last UID {uid_last}")
                    }
                ));
            }
            uid = 0;
            uid_last = lastuid;
        }
        if entry.flags & bits::EXPUNGED != 0 {
            lastuid = if uid != 0 {
                uid
            } else {
                uid_last += 1;
                uid_last
            };
            pos += entry.line_len + entry.size;
            continue;
        }
        if !entry.date.parsed {
            return Err(ScanError::NotMbox(format!(
                "UW-IMAP could not open this mbx folder: it could not read the date {} of the \
                 message at byte {pos} (it logged \"Unable to parse message date at {pos}\")",
                excerpt(&entry.date_text)
            )));
        }
        let recent = uid == 0 || entry.flags & bits::OLD == 0;
        if uid == 0 {
            uid_last += 1;
            uid = uid_last;
        }
        lastuid = uid;
        let mut flags = 0;
        for (bit, f) in [
            (bits::SEEN, flag::SEEN),
            (bits::DELETED, flag::DELETED),
            (bits::FLAGGED, flag::FLAGGED),
            (bits::ANSWERED, flag::ANSWERED),
            (bits::DRAFT, flag::DRAFT),
        ] {
            if entry.flags & bit != 0 {
                flags |= f;
            }
        }
        if !recent {
            flags |= flag::OLD;
        }
        let mut kw = 0u32;
        for (j, slot) in slot_to_kw.iter().enumerate() {
            let Some(i) = slot else { continue };
            if entry.keywords & (1 << j) == 0 {
                continue;
            }
            if *i < MAX_KEYWORDS {
                kw |= 1 << i;
            } else {
                notes.push(format!(
                    "message {number} (at byte {pos}): keyword {:?} is dropped: Maildir file \
                     names hold {MAX_KEYWORDS} keywords at most",
                    keywords[*i]
                ));
            }
        }
        let time = match tz::resolve(&entry.date, tz) {
            Some(t) => t,
            None => {
                notes.push(format!(
                    "message {number} (at byte {pos}): the date cannot be represented; using 0"
                ));
                0
            }
        };
        let offset = pos + entry.line_len;
        let bare_lf = bare_lfs(hay, offset, offset + entry.size)?;
        messages.push(Msg::whole(
            offset,
            entry.size,
            time,
            // Checked below: UIDs beyond 32 bits renumber the folder.
            uid.min(u64::from(u32::MAX)) as u32,
            u32::try_from(bare_lf).unwrap_or(u32::MAX),
            kw,
            flags,
        ));
        pos = offset + entry.size;
    }

    let too_big = uid_last >= u64::from(u32::MAX);
    let (uidvalidity, source, uid_next) = if too_big {
        for (i, m) in messages.iter_mut().enumerate() {
            m.uid = i as u32 + 1;
        }
        notes.push(format!(
            "the folder's UIDs go beyond what IMAP can carry (32 bits; the last is {uid_last}): \
             its messages are numbered from 1 under the derived UIDVALIDITY {derived}"
        ));
        (
            derived,
            UidValiditySource::Discarded,
            messages.len() as u32 + 1,
        )
    } else if rebuilt {
        notes.push(format!(
            "UW-IMAP discarded the folder's UIDVALIDITY {} (see the UID note) and invented a new \
             one when it opened the folder; the UIDs are UW-IMAP's, under the derived, stable \
             UIDVALIDITY {derived}",
            header.uidvalidity
        ));
        (derived, UidValiditySource::Discarded, uid_last as u32 + 1)
    } else if header.uidvalidity == 0 {
        notes.push(format!(
            "the mbx header gives UIDVALIDITY 0, which IMAP does not allow: the derived \
             UIDVALIDITY {derived} is used"
        ));
        (derived, UidValiditySource::Derived, uid_last as u32 + 1)
    } else {
        (
            header.uidvalidity,
            UidValiditySource::MbxHeader,
            uid_last as u32 + 1,
        )
    };
    Ok(StoreReading {
        store: Store::Mbx,
        messages,
        uidvalidity,
        uidvalidity_source: source,
        uid_next,
        keywords,
        notes: notes.finish(),
        indexed_len: len,
        derived_uidvalidity: derived,
    }
    .into())
}

/// Notes, the first [`MAX_NOTES`] kept.
#[derive(Default)]
struct Notes {
    kept: Vec<String>,
    left_out: usize,
}

impl Notes {
    fn push(&mut self, s: String) {
        if self.kept.len() < MAX_NOTES {
            self.kept.push(s);
        } else {
            self.left_out += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.left_out > 0 {
            self.kept
                .push(format!("{} more notes left out", self.left_out));
        }
        self.kept
    }
}

/// Builders of mbx files, for tests (c-client's layout, as `mbx_create()` and `mbx_append()`
/// write it).
pub mod build {
    use super::HDRSIZE;

    /// A folder header.
    pub fn header(uidvalidity: u32, uid_last: u32, keywords: &[&[u8]]) -> Vec<u8> {
        let mut h = format!("*mbx*\r\n{uidvalidity:08x}{uid_last:08x}\r\n").into_bytes();
        for k in keywords {
            h.extend_from_slice(k);
            h.extend_from_slice(b"\r\n");
        }
        for _ in keywords.len()..30 {
            h.extend_from_slice(b"\r\n");
        }
        h.resize(HDRSIZE - 10, 0);
        h.extend_from_slice(b"00000000\r\n");
        h
    }

    /// A message: its header line and text.
    pub fn message(date: &str, keywords: u32, flags: u16, uid: u32, text: &[u8]) -> Vec<u8> {
        let mut m = format!(
            "{date},{};{keywords:08x}{flags:04x}-{uid:08x}\r\n",
            text.len()
        )
        .into_bytes();
        m.extend_from_slice(text);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::SliceHaystack;

    const DATE: &str = " 2-Dec-1992 05:53:22 +0000";
    const T: &[u8] = b"Subject: a\r\n\r\nbody\r\n";

    fn read(data: &[u8]) -> Result<FolderIndex, String> {
        index(&mut SliceHaystack(data), &TimeZone::UTC, 42).map_err(|e| e.to_string())
    }

    fn uids(ix: &FolderIndex) -> Vec<u32> {
        ix.messages.iter().map(|m| m.uid).collect()
    }

    #[test]
    fn header_uids_flags_and_served_bytes() {
        let mut f = build::header(0x1234_5678, 5, &[b"Junk", b"$Label1"]);
        f.extend(build::message(DATE, 0b11, 0x11, 1, T));
        f.extend(build::message(
            " 3-Dec-1992 05:53:22 -0700",
            0,
            0x2e,
            3,
            b"x\ny\n",
        ));
        let ix = read(&f).unwrap();
        assert_eq!(ix.store, Store::Mbx);
        assert_eq!((ix.uidvalidity, ix.uid_next), (0x1234_5678, 6));
        assert_eq!(ix.uidvalidity_source, UidValiditySource::MbxHeader);
        assert_eq!(uids(&ix), [1, 3]);
        assert_eq!(ix.keywords, ["Junk", "$Label1"]);
        let m = &ix.messages[0];
        assert_eq!((m.offset, m.len), (2048 + 53, T.len() as u64));
        assert_eq!(&f[m.offset as usize..(m.offset + m.len) as usize], T);
        assert_eq!(m.maildir_flags(), "Sab");
        assert!(!m.is_recent());
        assert_eq!(m.time, 723275602);
        assert_eq!(m.vsize(&ix), Some(T.len() as u64));
        // Deleted, flagged, answered, draft; no fOLD: \Recent. Bare LFs count for W=.
        let m = &ix.messages[1];
        assert_eq!(m.maildir_flags(), "DFRT");
        assert!(m.is_recent());
        assert_eq!(m.time, 723275602 + 86400 + 7 * 3600);
        assert_eq!(m.vsize(&ix), Some(6));
        assert!(ix.notes.is_empty(), "{:?}", ix.notes);
    }

    #[test]
    fn expunged_messages_are_not_shown_and_uids_follow_c_client() {
        let mut f = build::header(7, 5, &[]);
        f.extend(build::message(DATE, 0, 0x10, 0, T));
        f.extend(build::message(DATE, 0, 0x8010, 0, T));
        f.extend(build::message(DATE, 0, 0x8010, 8, T));
        f.extend(build::message(DATE, 0, 0x10, 0, T));
        let ix = read(&f).unwrap();
        // 6, (7 expunged), then 8 > the last UID 7 rebuilds: the expunged one is 8, and 9.
        assert_eq!(uids(&ix), [6, 9]);
        assert!(ix.messages.iter().all(|m| m.is_recent()));
        assert_eq!(ix.uidvalidity_source, UidValiditySource::Discarded);
        assert_eq!((ix.uidvalidity, ix.uid_next), (42, 10));
        assert!(ix.notes[0].contains("rebuilding UIDs"), "{:?}", ix.notes);
    }

    #[test]
    fn a_uid_out_of_order_rebuilds_the_rest() {
        let mut f = build::header(7, 9, &[]);
        for uid in [3, 2, 8, 0] {
            f.extend(build::message(DATE, 0, 0x10, uid, T));
        }
        let ix = read(&f).unwrap();
        assert_eq!(uids(&ix), [3, 4, 5, 6]);
        assert_eq!(ix.uid_next, 7);
        assert_eq!(
            ix.messages
                .iter()
                .map(|m| m.is_recent())
                .collect::<Vec<_>>(),
            [false, true, true, true]
        );
    }

    #[test]
    fn keyword_names_as_c_client_reads_them() {
        let long = [b'x'; 51];
        let mut f = build::header(7, 9, &[b"Junk", b"$Label1", &long, b"Work", b"junk"]);
        f.extend(build::message(DATE, 0b1_1111 | 1 << 31, 0x10, 1, T));
        let ix = read(&f).unwrap();
        assert_eq!(ix.keywords, ["Junk", "$Label1", "Work"]);
        assert_eq!(ix.messages[0].maildir_flags(), "abc");
        // A NUL ends the names; so does an empty line.
        let mut h = build::header(7, 9, &[b"a\0b", b"c"]);
        h.extend(build::message(DATE, 3, 0x10, 1, T));
        assert!(read(&h).unwrap().keywords.is_empty());
        let h = parse_header(&build::header(7, 9, &[b"a", b"", b"c"])).unwrap();
        assert_eq!(h.keywords, [Some(b"a".to_vec())]);
    }

    #[test]
    fn sizes_as_strtoul_reads_them() {
        for (size, ok) in [("20abc", true), (" +20", true), ("0", false), ("", false)] {
            let mut f = build::header(7, 9, &[]);
            f.extend(format!("{DATE},{size};000000000010-00000001\r\n").as_bytes());
            f.extend(T);
            assert_eq!(read(&f).is_ok(), ok, "{size:?}: {:?}", read(&f));
        }
        // No digits but junk: size 0, accepted; the next "message" is then the text.
        let mut f = build::header(7, 9, &[]);
        f.extend(format!("{DATE},abc;000000000010-00000001\r\n").as_bytes());
        assert_eq!(read(&f).unwrap().messages[0].len, 0);
    }

    #[test]
    fn damaged_files_are_refused_with_c_clients_reason() {
        let good = {
            let mut f = build::header(7, 9, &[]);
            f.extend(build::message(DATE, 0, 0x10, 1, T));
            f
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..2000].to_vec(), "shorter than the 2048-byte header"),
            (good[..good.len() - 1].to_vec(), "past the end of the file"),
            (
                String::from_utf8_lossy(&good)
                    .replace(";00000000", ";0000000g")
                    .into_bytes(),
                "Unable to parse message flags",
            ),
            (
                String::from_utf8_lossy(&good)
                    .replace("-00000001", "-0000001")
                    .into_bytes(),
                "Unable to parse message UID",
            ),
            (
                String::from_utf8_lossy(&good)
                    .replace(" 2-Dec-", "32-Foo-")
                    .into_bytes(),
                "Unable to parse message date",
            ),
            (
                {
                    let mut f = good[..2048].to_vec();
                    f.extend([b'x'; 70]);
                    f
                },
                "Unable to find CRLF",
            ),
            (
                String::from_utf8_lossy(&good)
                    .replace(",20;", " 20;")
                    .into_bytes(),
                "Unable to parse internal header",
            ),
        ];
        for (data, want) in cases {
            let err = read(&data).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        // An expunged message's date is never read.
        let f = String::from_utf8_lossy(&good)
            .replace(" 2-Dec-", "32-Foo-")
            .replace("000000000010-", "000000008010-")
            .into_bytes();
        assert!(read(&f).unwrap().messages.is_empty());
    }

    #[test]
    fn uids_beyond_32_bits_are_numbered_from_one() {
        let mut f = build::header(7, u32::MAX, &[]);
        f.extend(build::message(DATE, 0, 0x10, 0, T));
        let ix = read(&f).unwrap();
        assert_eq!((uids(&ix), ix.uid_next, ix.uidvalidity), (vec![1], 2, 42));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(prop::sample::select(b"abcXYZ$_-09".to_vec()), 1..60)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

            /// The header parser takes any bytes without a panic, and refuses all but the
            /// header's exact shape.
            #[test]
            fn any_header_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2100)) {
                let valid = bytes.len() >= HDRSIZE
                    && bytes.starts_with(MAGIC)
                    && bytes[7..23].iter().all(u8::is_ascii_hexdigit)
                    && &bytes[23..25] == b"\r\n";
                prop_assert_eq!(parse_header(&bytes).is_ok(), valid);
                let h = parse_header(&bytes);
                prop_assert!(h.map_or(true, |h| h.keywords.len() <= NUSERFLAGS));
            }

            /// What c-client's mbx_create() and mbx_update_header() write reads back.
            #[test]
            fn headers_read_back(
                uidvalidity in any::<u32>(),
                uid_last in any::<u32>(),
                names in prop::collection::vec(name(), 0..=30),
            ) {
                let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
                let h = parse_header(&build::header(uidvalidity, uid_last, &refs)).unwrap();
                prop_assert_eq!((h.uidvalidity, h.uid_last), (uidvalidity, uid_last));
                let want: Vec<Option<Vec<u8>>> = names
                    .iter()
                    .map(|n| (n.len() <= MAXUSERFLAG).then(|| n.clone()))
                    .collect();
                prop_assert_eq!(h.keywords, want);
            }

            /// A message header line parses back, and any damage to it is refused or read as
            /// strtoul reads it, never a panic.
            #[test]
            fn message_lines_read_back(
                keywords in any::<u32>(),
                flags in any::<u16>(),
                uid in any::<u32>(),
                len in 1usize..300,
                cut in 0usize..80,
                byte in any::<u8>(),
            ) {
                let text = vec![b'x'; len];
                let m = build::message(" 2-Dec-1992 05:53:22 +0000", keywords, flags, uid, &text);
                let e = parse_entry(&m, 2048, 2048 + m.len() as u64).unwrap();
                prop_assert_eq!(
                    (e.keywords, e.flags, e.uid, e.size, e.line_len as usize + len),
                    (keywords, flags, uid, len as u64, m.len())
                );
                prop_assert!(e.date.parsed);
                let mut damaged = m.clone();
                let at = cut.min(damaged.len() - 1);
                damaged[at] = byte;
                let _ = parse_entry(&damaged, 2048, 2048 + damaged.len() as u64);
                let _ = parse_entry(&m[..at], 2048, 2048 + at as u64);
            }

            /// A whole file of any bytes after a valid header indexes or is refused, never a
            /// panic; what it indexes lies inside the file, UIDs ascending.
            #[test]
            fn any_file_after_a_header(tail in prop::collection::vec(any::<u8>(), 0..400)) {
                let mut f = build::header(7, 20, &[b"a", b"b"]);
                f.extend(build::message(" 2-Dec-1992 05:53:22 +0000", 3, 0x10, 4, b"ok\r\n"));
                f.extend(&tail);
                if let Ok(ix) = index(&mut SliceHaystack(&f), &TimeZone::UTC, 42) {
                    let mut prev = 0;
                    for m in &ix.messages {
                        prop_assert!(m.offset + m.len <= f.len() as u64);
                        prop_assert!(m.uid > prev);
                        prev = m.uid;
                    }
                    prop_assert!(ix.uid_next > prev);
                }
            }
        }
    }
}
