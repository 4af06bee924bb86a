//! The index of one mbox folder: its messages as IMAP saw them, in a compact form.
//!
//! Built from the scanner's [`RawMessage`]s, it applies UW-IMAP's folder semantics:
//! - the pseudo message (`X-IMAP` in the first message) is folder data, not mail;
//! - UIDVALIDITY, the last UID and the keyword order come from `X-IMAP` or `X-IMAPbase`;
//!   a folder without them gets a UIDVALIDITY derived from stable facts by the caller;
//! - an `X-UID` is kept while it is greater than the previous UID and not beyond the next free
//!   one; otherwise the message gets the next free UID (Dovecot's rule, which c-client shares in
//!   effect: both refuse UIDs that go backwards or skip past the recorded last UID);
//! - keywords map to the folder's keyword list; names not listed are appended, as c-client did.
//!
//! A message costs 48 bytes here (plus 8 bytes per extra hidden range for the rare message
//! whose status headers are not one block).

use std::ops::Range;

use jiff::tz::TimeZone;

use crate::scan::{FolderHeader, RawMessage, flag};
use crate::tz;

/// Maildir keeps keywords in file names as the letters `a`–`z`.
pub const MAX_KEYWORDS: usize = 26;

/// One message, as served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    /// Where the message text starts in the mbox (after its From_ line).
    pub offset: u64,
    /// Length of the stored text (separator excluded), hidden ranges included.
    pub len: u64,
    /// INTERNALDATE, seconds since the epoch.
    pub time: i64,
    pub uid: u32,
    /// Bare line feeds in the served bytes (`W=` minus `S=`); `u32::MAX` if too many to tell.
    pub bare_lf: u32,
    /// The hidden range relative to `offset`, or, when `hide_len == SPILL`, an index into the
    /// folder's spill table.
    hide_off: u32,
    hide_len: u32,
    /// Bit `i`: keyword `i` of the folder.
    pub keywords: u32,
    /// [`flag`] bits.
    pub flags: u8,
}

const SPILL: u32 = u32::MAX;

/// Where a folder's UIDVALIDITY came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UidValiditySource {
    /// c-client's pseudo message (`X-IMAP`).
    PseudoMessage,
    /// `X-IMAPbase` in the first message.
    XImapBase,
    /// The folder had none: derived from its user and name.
    Derived,
}

/// The index of one folder.
#[derive(Clone, Debug)]
pub struct FolderIndex {
    pub messages: Vec<Msg>,
    /// Hidden ranges of messages with more than one: `[count, off, len, off, len, ...]`.
    spill: Vec<u32>,
    pub uidvalidity: u32,
    pub uidvalidity_source: UidValiditySource,
    /// The next free UID (`N` of `dovecot-uidlist`).
    pub uid_next: u32,
    /// Keyword names; index `i` is the Maildir letter `'a' + i`.
    pub keywords: Vec<String>,
    /// Things the admin should know (UIDs changed, keywords dropped...).
    pub notes: Vec<String>,
    /// How many bytes of the mbox were indexed.
    pub indexed_len: u64,
    /// Builder state before the last message, to re-read it when the mbox grows.
    pub resume: Option<Resume>,
}

/// Where indexing can pick up again: at the last message, whose end may move when mail is
/// appended after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The last message's From_ line.
    pub from_line: u64,
    /// Messages in the index before it.
    pub messages: usize,
    state: UidState,
    keywords: usize,
    seen: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct UidState {
    prev: u32,
    next: u32,
}

impl Msg {
    /// The size of the served message (`S=`).
    pub fn size(&self, index: &FolderIndex) -> u64 {
        self.len - index.hidden(self).map(|r| r.end - r.start).sum::<u64>()
    }

    /// The size with every bare LF counted as CRLF (`W=`), if known.
    pub fn vsize(&self, index: &FolderIndex) -> Option<u64> {
        (self.bare_lf != u32::MAX).then(|| self.size(index) + u64::from(self.bare_lf))
    }

    /// Maildir flag letters in ASCII order, then keyword letters.
    pub fn maildir_flags(&self) -> String {
        let mut s = String::new();
        for (bit, letter) in [
            (flag::DRAFT, 'D'),
            (flag::FLAGGED, 'F'),
            (flag::ANSWERED, 'R'),
            (flag::SEEN, 'S'),
            (flag::DELETED, 'T'),
        ] {
            if self.flags & bit != 0 {
                s.push(letter);
            }
        }
        for i in 0..MAX_KEYWORDS {
            if self.keywords & (1 << i) != 0 {
                s.push((b'a' + i as u8) as char);
            }
        }
        s
    }

    /// A message without `O` in its status is \Recent: it goes to `new/`.
    pub fn is_recent(&self) -> bool {
        self.flags & flag::OLD == 0
    }
}

impl FolderIndex {
    /// Hidden ranges of a message, absolute, ascending.
    pub fn hidden(&self, m: &Msg) -> impl Iterator<Item = Range<u64>> + '_ {
        let (first, rest): (Option<Range<u64>>, &[u32]) = if m.hide_len == SPILL {
            let at = m.hide_off as usize;
            let count = self.spill[at] as usize;
            (None, &self.spill[at + 1..at + 1 + 2 * count])
        } else if m.hide_len > 0 {
            let start = m.offset + u64::from(m.hide_off);
            (Some(start..start + u64::from(m.hide_len)), &[])
        } else {
            (None, &[])
        };
        let base = m.offset;
        first.into_iter().chain(rest.chunks_exact(2).map(move |p| {
            let start = base + u64::from(p[0]);
            start..start + u64::from(p[1])
        }))
    }

    /// The ranges of the mbox whose concatenation is the served message.
    pub fn segments(&self, m: &Msg) -> Vec<Range<u64>> {
        let mut out = Vec::with_capacity(2);
        let mut pos = m.offset;
        for h in self.hidden(m) {
            if h.start > pos {
                out.push(pos..h.start);
            }
            pos = h.end;
        }
        let end = m.offset + m.len;
        if end > pos {
            out.push(pos..end);
        }
        out
    }

    /// The message with this UID (UIDs ascend with position).
    pub fn by_uid(&self, uid: u32) -> Option<&Msg> {
        self.messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| &self.messages[i])
    }

    /// Bytes of heap this index holds (for the benchmark's memory figure).
    pub fn heap_bytes(&self) -> usize {
        self.messages.capacity() * std::mem::size_of::<Msg>()
            + self.spill.capacity() * 4
            + self.keywords.iter().map(|k| k.capacity()).sum::<usize>()
            + self.notes.iter().map(|k| k.capacity()).sum::<usize>()
    }
}

/// Builds a [`FolderIndex`] from the scanner's messages, in mbox order.
pub struct Indexer {
    index: FolderIndex,
    tz: TimeZone,
    uids: UidState,
    /// Raw messages seen (pseudo message included).
    seen: usize,
    had_header: bool,
}

impl Indexer {
    /// `derived_uidvalidity` is used when the folder carries none.
    pub fn new(tz: TimeZone, derived_uidvalidity: u32) -> Self {
        Indexer {
            index: FolderIndex {
                messages: Vec::new(),
                spill: Vec::new(),
                uidvalidity: derived_uidvalidity.max(1),
                uidvalidity_source: UidValiditySource::Derived,
                uid_next: 1,
                keywords: Vec::new(),
                notes: Vec::new(),
                indexed_len: 0,
                resume: None,
            },
            tz,
            uids: UidState { prev: 0, next: 1 },
            seen: 0,
            had_header: false,
        }
    }

    /// Continues an index whose last message is to be read again (the mbox grew).
    pub fn resume(tz: TimeZone, mut index: FolderIndex) -> Option<Self> {
        let r = index.resume.take()?;
        index.messages.truncate(r.messages);
        index.keywords.truncate(r.keywords);
        let had_header = index.uidvalidity_source != UidValiditySource::Derived;
        Some(Indexer {
            index,
            tz,
            uids: r.state,
            seen: r.seen,
            had_header,
        })
    }

    /// Adds the next message of the mbox.
    pub fn push(&mut self, raw: &RawMessage) {
        let first = self.seen == 0;
        self.seen += 1;
        self.index.resume = Some(Resume {
            from_line: raw.from_line.start,
            messages: self.index.messages.len(),
            state: self.uids,
            keywords: self.index.keywords.len(),
            seen: self.seen - 1,
        });
        self.index.indexed_len = raw.end.max(raw.from_line.end);
        for note in &raw.notes {
            self.note(format!("message at byte {}: {note}", raw.from_line.start));
        }
        if first {
            if let Some(h) = &raw.folder {
                self.folder_header(h);
                if h.pseudo {
                    return;
                }
            }
        }
        let uid = self.assign_uid(raw, first);
        let keywords = self.keyword_bits(&raw.keywords, uid);
        let time = match raw.date.as_ref().and_then(|d| tz::resolve(d, &self.tz)) {
            Some(t) => t,
            None => {
                self.note(format!(
                    "UID {uid}: the From_ line date cannot be represented; using 0"
                ));
                0
            }
        };
        let offset = raw.from_line.end;
        let (hide_off, hide_len) = self.hidden_ranges(offset, &raw.hidden, uid);
        let bare_lf = u32::try_from(raw.newlines - raw.crlf).unwrap_or(u32::MAX);
        self.index.messages.push(Msg {
            offset,
            len: raw.end - offset,
            time,
            uid,
            bare_lf,
            hide_off,
            hide_len,
            keywords,
            flags: raw.flags,
        });
    }

    /// The finished index. `len` is how much of the mbox was read.
    pub fn finish(mut self, len: u64) -> FolderIndex {
        self.index.indexed_len = len;
        self.index.uid_next = self.uids.next;
        // The index lives as long as the mount: no slack from growing.
        self.index.messages.shrink_to_fit();
        self.index.spill.shrink_to_fit();
        self.index
    }

    fn note(&mut self, s: String) {
        const MAX_NOTES: usize = 100;
        if self.index.notes.len() < MAX_NOTES {
            self.index.notes.push(s);
        } else if self.index.notes.len() == MAX_NOTES {
            self.index.notes.push("more notes left out".into());
        }
    }

    fn folder_header(&mut self, h: &FolderHeader) {
        self.had_header = true;
        self.index.uidvalidity = h.uidvalidity;
        self.index.uidvalidity_source = if h.pseudo {
            UidValiditySource::PseudoMessage
        } else {
            UidValiditySource::XImapBase
        };
        self.uids.next = h.uidlast.saturating_add(1);
        for k in &h.keywords {
            let name = String::from_utf8_lossy(k).into_owned();
            if !self
                .index
                .keywords
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&name))
            {
                self.index.keywords.push(name);
            }
        }
    }

    fn assign_uid(&mut self, raw: &RawMessage, first: bool) -> u32 {
        let UidState { prev, next } = self.uids;
        // Dovecot and c-client both ignore an X-UID in the first message before X-IMAPbase.
        let usable = raw
            .uid
            .filter(|_| !(first && (raw.folder.is_none() || raw.uid_before_base)));
        let uid = match usable {
            Some(v) if v > prev && v <= next => v,
            other => {
                if let (Some(v), true) = (other, self.had_header) {
                    self.note(format!(
                        "X-UID {v} of the message at byte {} is out of order (previous {prev}, next free {next}); it gets UID {next}",
                        raw.from_line.start
                    ));
                }
                next
            }
        };
        if uid == u32::MAX {
            self.note("UIDs exhausted (4294967295 reached)".into());
        }
        self.uids = UidState {
            prev: uid,
            next: uid.saturating_add(1).max(next),
        };
        uid
    }

    fn keyword_bits(&mut self, names: &[Vec<u8>], uid: u32) -> u32 {
        let mut bits = 0u32;
        for name in names {
            let name = String::from_utf8_lossy(name);
            let i = match self
                .index
                .keywords
                .iter()
                .position(|k| k.eq_ignore_ascii_case(&name))
            {
                Some(i) => i,
                None => {
                    self.index.keywords.push(name.clone().into_owned());
                    self.index.keywords.len() - 1
                }
            };
            if i < MAX_KEYWORDS {
                bits |= 1 << i;
            } else {
                self.note(format!(
                    "UID {uid}: keyword {name:?} is dropped: Maildir file names hold {MAX_KEYWORDS} keywords at most"
                ));
            }
        }
        bits
    }

    fn hidden_ranges(&mut self, offset: u64, hidden: &[Range<u64>], uid: u32) -> (u32, u32) {
        let rel: Option<Vec<(u32, u32)>> = hidden
            .iter()
            .map(|r| {
                let off = u32::try_from(r.start - offset).ok()?;
                let len = u32::try_from(r.end - r.start).ok()?;
                (len != SPILL).then_some((off, len))
            })
            .collect();
        match rel.as_deref() {
            Some([]) => (0, 0),
            Some([(off, len)]) => (*off, *len),
            Some(runs) => {
                let at = self.index.spill.len() as u32;
                self.index.spill.push(runs.len() as u32);
                for (off, len) in runs {
                    self.index.spill.extend([*off, *len]);
                }
                (at, SPILL)
            }
            None => {
                self.note(format!(
                    "UID {uid}: a status header lies more than 4 GiB into the message; it is served as stored"
                ));
                (0, 0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{Unquote, scan_all};

    fn index(data: &str) -> FolderIndex {
        let mut ix = Indexer::new(TimeZone::UTC, 42);
        for m in scan_all(data.as_bytes(), Unquote::None).unwrap() {
            ix.push(&m);
        }
        ix.finish(data.len() as u64)
    }

    fn msg(uid_hdr: &str, extra: &str) -> String {
        format!("From a Wed Dec  2 05:53:22 1992\n{extra}Subject: x\n{uid_hdr}\nbody\n\n")
    }

    #[test]
    fn msg_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Msg>(), 48);
    }

    #[test]
    fn pseudo_message_gives_uidvalidity_and_is_not_mail() {
        let data = format!(
            "{}{}{}",
            msg("", "X-IMAP: 1104919200 0000000012 Junk\n"),
            msg("X-UID: 7\n", "X-Keywords: Junk\n"),
            msg("X-UID: 9\n", "")
        );
        let ix = index(&data);
        assert_eq!(ix.uidvalidity_source, UidValiditySource::PseudoMessage);
        assert_eq!(ix.uidvalidity, 1104919200);
        assert_eq!(
            ix.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
            [7, 9]
        );
        assert_eq!(ix.uid_next, 13);
        assert_eq!(ix.messages[0].maildir_flags(), "a");
        assert_eq!(ix.keywords, ["Junk"]);
    }

    #[test]
    fn broken_uids_get_the_next_free_one() {
        let data = format!(
            "{}{}{}{}",
            msg("X-UID: 3\n", "X-IMAPbase: 5 10\n"),
            msg("X-UID: 2\n", ""),
            msg("X-UID: 50\n", ""),
            msg("", "")
        );
        let ix = index(&data);
        assert_eq!(
            ix.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
            [3, 11, 12, 13]
        );
        assert_eq!(ix.uid_next, 14);
        assert_eq!(ix.uidvalidity, 5);
    }

    #[test]
    fn without_folder_header_uids_count_from_one() {
        let data = format!("{}{}", msg("X-UID: 5\n", ""), msg("X-UID: 6\n", ""));
        let ix = index(&data);
        assert_eq!(ix.uidvalidity_source, UidValiditySource::Derived);
        assert_eq!(ix.uidvalidity, 42);
        assert_eq!(
            ix.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn a_million_tiny_messages_stay_within_64_bytes_each() {
        let one = "From a Mon Jan  1 00:00:00 2001\nX-UID: 1\n\n";
        let data = one.repeat(1_000_000);
        let mut ix = Indexer::new(TimeZone::UTC, 1);
        let mut hay = crate::scan::SliceHaystack(data.as_bytes());
        let mut sc = crate::scan::Scanner::new(Unquote::None);
        let mut raw = crate::scan::RawMessage::default();
        while sc.next_message(&mut hay, &mut raw).unwrap() {
            ix.push(&raw);
        }
        let ix = ix.finish(data.len() as u64);
        assert_eq!(ix.messages.len(), 1_000_000);
        let per_message = ix.heap_bytes() / ix.messages.len();
        assert!(per_message <= 64, "{per_message} bytes a message");
        assert_eq!(ix.messages.last().unwrap().uid, 1_000_000);
    }

    #[test]
    fn sizes_and_flags() {
        let data = "From a Wed Dec  2 05:53:22 1992\nSubject: x\nStatus: RO\nX-Status: DA\n\nbody\r\nmore\n\n";
        let ix = index(data);
        let m = &ix.messages[0];
        assert_eq!(m.size(&ix), "Subject: x\n\nbody\r\nmore\n".len() as u64);
        assert_eq!(m.vsize(&ix), Some(m.size(&ix) + 3));
        assert_eq!(m.maildir_flags(), "RST");
        assert!(!m.is_recent());
        assert_eq!(m.time, 723275602);
    }
}
