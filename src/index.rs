//! The index of one mbox folder: its messages as IMAP saw them, in a compact form.
//!
//! Built from the scanner's [`RawMessage`]s, it applies the folder semantics of UW-IMAP's
//! c-client (2007f), checked against c-client itself (`tests/oracle.rs`,
//! `tests/differential.rs`):
//! - the pseudo message (a valid `X-IMAP` in the first message) is folder data, not mail;
//! - UIDVALIDITY, the last UID and the keyword names come from the first valid `X-IMAP` or
//!   `X-IMAPbase` of the first message; a folder without one gets a UIDVALIDITY derived from
//!   stable facts by the caller, and its messages get UIDs from 1 (`X-UID`s are not read);
//! - an `X-UID` is kept when it is greater than the previous message's UID, even when it is
//!   beyond the last UID the folder header recorded (the last UID follows it); a message without
//!   one gets the last UID plus one;
//! - an `X-UID` that is not greater than the previous UID, or a second `X-UID` in a message,
//!   makes c-client discard the folder's UIDVALIDITY: it reads no more `X-UID`s, numbers the
//!   rest of the messages on from the last UID, and invents a UIDVALIDITY (the time of opening).
//!   mboxfs gives the same UIDs under its derived, stable UIDVALIDITY, and says so in a note;
//! - `X-Keywords` names count only when the folder header named them (in any letter case),
//!   before the `X-Keywords` line (in the first message), up to the first name c-client could
//!   not take (longer than 50 bytes).
//!
//! A message costs 48 bytes here (plus 8 bytes per extra hidden range for the rare message
//! whose hidden bytes are not one block: status headers apart, bare CRs).

use std::ops::Range;

use jiff::tz::TimeZone;

use crate::scan::{FolderHeader, RawMessage, StatusEvent, flag, quirk};
use crate::tz;

/// Maildir keeps keywords in file names as the letters `a`–`z`.
pub const MAX_KEYWORDS: usize = 26;

/// The notes kept per folder (more are counted, not kept).
pub const MAX_NOTES: usize = 100;

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

/// The store a folder is kept in on the UW-IMAP host (which c-client driver read it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// Berkeley mbox: From_ lines between messages, status headers (the `unix` driver).
    #[default]
    Mbox,
    /// UW's own mbx: a 2048-byte folder header, then each message after a fixed header line
    /// with its date, size, flags and UID (the `mbx` driver).
    Mbx,
    /// MMDF: each message between `^A^A^A^A` lines, status headers as in mbox (the `mmdf`
    /// driver).
    Mmdf,
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Store::Mbox => "mbox",
            Store::Mbx => "mbx",
            Store::Mmdf => "MMDF",
        })
    }
}

/// Where a folder's UIDVALIDITY came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UidValiditySource {
    /// c-client's pseudo message (`X-IMAP`).
    PseudoMessage,
    /// `X-IMAPbase` in the first message.
    XImapBase,
    /// The header of an mbx file.
    MbxHeader,
    /// The folder had none: derived from its user and name.
    Derived,
    /// The folder had one, but c-client discarded it (an `X-UID` out of order, or one that IMAP
    /// cannot carry): derived from its user and name. UIDs are c-client's.
    Discarded,
}

/// The index of one folder.
#[derive(Clone, Debug)]
pub struct FolderIndex {
    /// The store that was read.
    pub store: Store,
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
    /// The keywords `X-Keywords` may name, in c-client's order: the name, and its index in
    /// `keywords`.
    slots: Vec<(Vec<u8>, u8)>,
    /// The UIDVALIDITY to use when the folder has none.
    derived_uidvalidity: u32,
    /// The messages were numbered from 1 (their UIDs did not fit in 32 bits).
    renumbered: bool,
}

/// Where indexing can pick up again: at the last message, whose end may move when mail is
/// appended after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The last message's From_ line.
    pub from_line: u64,
    /// Messages in the index before it.
    pub messages: usize,
    notes: usize,
    spill: usize,
    state: State,
}

/// c-client's parse state between messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct State {
    /// Messages seen, the pseudo message included (c-client's `nmsgs`).
    seen: usize,
    /// The first message's folder header: its UIDVALIDITY, and whether it is `X-IMAP`.
    header: Option<(u64, bool)>,
    /// c-client's `uid_validity` while it parses: 0 before a folder header, or once discarded.
    live: u64,
    uid_last: u64,
    prev_uid: u64,
    /// A UID does not fit in 32 bits: the messages are numbered from 1 at the end.
    too_big: bool,
    /// [`quirk::HANGS`] or [`quirk::CRASHES`]: c-client could not open the folder.
    breaks: u8,
    /// Notes left out (beyond the first hundred).
    notes_left_out: usize,
}

impl Msg {
    /// A message served as stored, nothing hidden (UW's mbx store keeps no status headers in
    /// the text).
    pub fn whole(
        offset: u64,
        len: u64,
        time: i64,
        uid: u32,
        bare_lf: u32,
        keywords: u32,
        flags: u8,
    ) -> Msg {
        Msg {
            offset,
            len,
            time,
            uid,
            bare_lf,
            hide_off: 0,
            hide_len: 0,
            keywords,
            flags,
        }
    }

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

/// A folder read by a store's own reader (mbx), which decides UIDs and keywords itself.
#[derive(Clone, Debug)]
pub struct StoreReading {
    pub store: Store,
    /// In file order; UIDs ascending.
    pub messages: Vec<Msg>,
    pub uidvalidity: u32,
    pub uidvalidity_source: UidValiditySource,
    pub uid_next: u32,
    pub keywords: Vec<String>,
    pub notes: Vec<String>,
    /// How many bytes of the file were read.
    pub indexed_len: u64,
    /// The UIDVALIDITY derived for the folder (used when it has none).
    pub derived_uidvalidity: u32,
}

impl From<StoreReading> for FolderIndex {
    fn from(r: StoreReading) -> FolderIndex {
        let mut messages = r.messages;
        messages.shrink_to_fit();
        FolderIndex {
            store: r.store,
            messages,
            spill: Vec::new(),
            uidvalidity: r.uidvalidity,
            uidvalidity_source: r.uidvalidity_source,
            uid_next: r.uid_next,
            keywords: r.keywords,
            notes: r.notes,
            indexed_len: r.indexed_len,
            // Read whole again when it changes.
            resume: None,
            slots: Vec::new(),
            derived_uidvalidity: r.derived_uidvalidity.max(1),
            renumbered: false,
        }
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
            + self
                .slots
                .iter()
                .map(|(k, _)| k.capacity() + 32)
                .sum::<usize>()
            + self.keywords.iter().map(|k| k.capacity()).sum::<usize>()
            + self.notes.iter().map(|k| k.capacity()).sum::<usize>()
    }
}

/// Builds a [`FolderIndex`] from the scanner's messages, in mbox order.
pub struct Indexer {
    index: FolderIndex,
    tz: TimeZone,
    st: State,
    /// c-client's keyword names by number, as the first message's folder headers set them.
    user_flags: Vec<Option<Vec<u8>>>,
}

impl Indexer {
    /// `derived_uidvalidity` is used when the folder carries none.
    pub fn new(tz: TimeZone, derived_uidvalidity: u32) -> Self {
        let derived_uidvalidity = derived_uidvalidity.max(1);
        Indexer {
            index: FolderIndex {
                store: Store::Mbox,
                messages: Vec::new(),
                spill: Vec::new(),
                uidvalidity: derived_uidvalidity,
                uidvalidity_source: UidValiditySource::Derived,
                uid_next: 1,
                keywords: Vec::new(),
                notes: Vec::new(),
                indexed_len: 0,
                resume: None,
                slots: Vec::new(),
                derived_uidvalidity,
                renumbered: false,
            },
            tz,
            st: State::default(),
            user_flags: Vec::new(),
        }
    }

    /// Continues an index whose last message is to be read again (the mbox grew). `None` when
    /// the index must be made again from the start.
    pub fn resume(tz: TimeZone, mut index: FolderIndex) -> Option<Self> {
        let r = index.resume.take()?;
        if r.state.seen == 0 || index.renumbered {
            // The first message decides the folder header; renumbered UIDs are decided on all.
            return None;
        }
        index.messages.truncate(r.messages);
        index.notes.truncate(r.notes);
        index.spill.truncate(r.spill);
        // Only the first message sets keyword names: they are settled.
        Some(Indexer {
            index,
            tz,
            st: r.state,
            user_flags: Vec::new(),
        })
    }

    /// Adds the next message of the mbox.
    pub fn push(&mut self, raw: &RawMessage) {
        self.index.resume = Some(Resume {
            from_line: raw.from_line.start,
            messages: self.index.messages.len(),
            notes: self.index.notes.len(),
            spill: self.index.spill.len(),
            state: self.st,
        });
        self.st.seen += 1;
        let first = self.st.seen == 1;
        self.index.indexed_len = raw.end.max(raw.from_line.end);
        // c-client's message number (the pseudo message is not one).
        let number = self.index.messages.len() + 1;
        let at = raw.from_line.start;
        let mut notes: Vec<String> = raw.notes.clone();

        let mut uid: u64 = 0;
        let mut slot_bits: u32 = 0;
        let pseudo = |st: &State| st.header.is_some_and(|(_, p)| p);
        for ev in &raw.events {
            match ev {
                StatusEvent::Folder(h) if first && self.st.live == 0 => {
                    self.folder_header(h, &mut notes);
                }
                StatusEvent::Folder(_) => {}
                StatusEvent::Keywords(names) => {
                    for name in names {
                        if let Some(j) = self
                            .index
                            .slots
                            .iter()
                            .position(|(k, _)| k.eq_ignore_ascii_case(name))
                        {
                            slot_bits |= 1 << j;
                        }
                    }
                }
                StatusEvent::Uid(v) if self.st.live != 0 && !(first && pseudo(&self.st)) => {
                    let v = *v;
                    let problem = if uid != 0 {
                        Some(format!(
                            "a second X-UID ({v}) after X-UID {uid} (UW-IMAP logged \"Message \
                             {number} UID {v} already has UID {uid}\")"
                        ))
                    } else if v <= self.st.prev_uid {
                        Some(format!(
                            "X-UID {v} is not greater than the previous UID {} (UW-IMAP logged \
                             \"Message {number} UID {v} less than {}\")",
                            self.st.prev_uid,
                            self.st.prev_uid.wrapping_add(1)
                        ))
                    } else {
                        None
                    };
                    match problem {
                        Some(why) => {
                            notes.push(format!(
                                "{why}: UW-IMAP discarded the folder's UIDVALIDITY and numbered \
                                 this message and all later ones on from the last UID"
                            ));
                            self.st.live = 0;
                            uid = 0;
                        }
                        None => {
                            uid = v;
                            self.st.prev_uid = v;
                            self.st.uid_last = self.st.uid_last.max(v);
                        }
                    }
                }
                StatusEvent::Uid(_) => {}
            }
        }
        let breaks = raw.cclient & (quirk::HANGS | quirk::CRASHES);
        self.st.breaks |= breaks;

        if first && pseudo(&self.st) {
            // c-client's pseudo message: folder data, not mail.
            for note in notes {
                self.note(format!("the pseudo message (at byte {at}): {note}"));
            }
            return;
        }
        if uid == 0 {
            self.st.uid_last = self.st.uid_last.wrapping_add(1);
            uid = self.st.uid_last;
            self.st.prev_uid = uid;
        }
        if uid > u64::from(u32::MAX - 1) {
            self.st.too_big = true;
        }
        for (bit, note) in [
            (
                quirk::NUL_IN_NAME,
                "a NUL byte ends a header name: UW-IMAP served it as a space, mboxfs serves it as \
                 stored",
            ),
            (
                quirk::PAST_EOF,
                "the file ends inside this message's header without a line feed: UW-IMAP read \
                 beyond the end of the file for it, and served what its memory held there (a line \
                 feed, or bits of earlier lines), or counted a byte more in RFC822.SIZE; mboxfs \
                 serves the header as stored",
            ),
            (
                quirk::SIZE_MISMATCH,
                "a bare CR in the header makes UW-IMAP hide a line its RFC822.SIZE counts, or the \
                 other way round (it logged \"Calculated RFC822.SIZE != reported size\" when the \
                 message was fetched); mboxfs serves what UW-IMAP served, with its true size",
            ),
            (
                quirk::CUT_LINE,
                "MMDF: a line ending with the separator ^A^A^A^A cut this message there, or its \
                 first line is a separator; UW-IMAP's RFC822.SIZE for it was wrong, or it served a \
                 line feed more at the end of its header; mboxfs serves the bytes as stored",
            ),
        ] {
            if raw.cclient & bit != 0 {
                notes.push(note.to_string());
            }
        }
        for note in notes {
            self.note(format!("message {number} (at byte {at}): {note}"));
        }
        // c-client's keyword numbers to the folder's keyword list (as the headers left it).
        let slot_bits = (0..self.index.slots.len())
            .filter(|j| slot_bits & (1 << j) != 0)
            .fold(0u32, |bits, j| bits | 1 << self.index.slots[j].1);
        let keywords = slot_bits & ((1 << MAX_KEYWORDS) - 1);
        for i in MAX_KEYWORDS..32 {
            if slot_bits & (1 << i) != 0 {
                let name = self.index.keywords[i].clone();
                self.note(format!(
                    "message {number} (at byte {at}): keyword {name:?} is dropped: Maildir file \
                     names hold {MAX_KEYWORDS} keywords at most"
                ));
            }
        }
        let time = match raw.date.as_ref().and_then(|d| tz::resolve(d, &self.tz)) {
            Some(t) => t,
            None => {
                self.note(format!(
                    "message {number} (at byte {at}): the From_ line date cannot be \
                     represented; using 0"
                ));
                0
            }
        };
        let offset = raw.from_line.end;
        let (hide_off, hide_len) = self.hidden_ranges(offset, &raw.hidden, number);
        let bare_lf = u32::try_from(raw.newlines - raw.crlf).unwrap_or(u32::MAX);
        self.index.messages.push(Msg {
            offset,
            len: raw.end - offset,
            time,
            uid: uid as u32,
            bare_lf,
            hide_off,
            hide_len,
            keywords,
            flags: raw.flags,
        });
    }

    /// The finished index. `len` is how much of the mbox was read.
    pub fn finish(mut self, len: u64) -> FolderIndex {
        let ix = &mut self.index;
        ix.indexed_len = len;
        let st = self.st;
        let derived = ix.derived_uidvalidity;
        let too_big = st.too_big || st.uid_last >= u64::from(u32::MAX);
        let mut notes = Vec::new();
        ix.renumbered = too_big;
        if too_big {
            for (i, m) in ix.messages.iter_mut().enumerate() {
                m.uid = i as u32 + 1;
            }
            ix.uid_next = ix.messages.len() as u32 + 1;
            notes.push(format!(
                "the folder's UIDs go beyond what IMAP can carry (32 bits; the last is {}): its \
                 messages are numbered from 1 under the derived UIDVALIDITY {derived}",
                st.uid_last
            ));
        } else {
            ix.uid_next = st.uid_last as u32 + 1;
        }
        (ix.uidvalidity, ix.uidvalidity_source) = match st.header {
            None => (derived, UidValiditySource::Derived),
            Some((v, pseudo)) if st.live != 0 && !too_big && v <= u64::from(u32::MAX) => (
                v as u32,
                if pseudo {
                    UidValiditySource::PseudoMessage
                } else {
                    UidValiditySource::XImapBase
                },
            ),
            Some((v, _)) => {
                if st.live == 0 && !too_big {
                    notes.push(format!(
                        "UW-IMAP discarded the folder's UIDVALIDITY {v} (see the X-UID notes) and \
                         invented a new one when it opened the folder; the UIDs are UW-IMAP's, \
                         under the derived, stable UIDVALIDITY {derived}"
                    ));
                } else if v > u64::from(u32::MAX) {
                    notes.push(format!(
                        "the folder's UIDVALIDITY {v} is beyond what IMAP can carry (32 bits): \
                         the derived UIDVALIDITY {derived} is used"
                    ));
                }
                (derived, UidValiditySource::Discarded)
            }
        };
        if st.breaks != 0 {
            notes.push(format!(
                "UW-IMAP could not open this folder: c-client {} reading it (see the notes of \
                 its messages); mboxfs reads it as described there",
                if st.breaks & quirk::CRASHES != 0 {
                    "crashes"
                } else {
                    "loops forever"
                }
            ));
        }
        for n in notes {
            self.note(n);
        }
        if self.st.notes_left_out > 0 {
            let n = self.st.notes_left_out;
            self.index.notes.push(format!("{n} more notes left out"));
        }
        // The index lives as long as the mount: no slack from growing.
        self.index.messages.shrink_to_fit();
        self.index.spill.shrink_to_fit();
        self.index
    }

    fn note(&mut self, s: String) {
        if self.index.notes.len() < MAX_NOTES {
            self.index.notes.push(s);
        } else {
            self.st.notes_left_out += 1;
        }
    }

    /// The first message's valid `X-IMAP`/`X-IMAPbase`: UIDVALIDITY, last UID, keywords.
    fn folder_header(&mut self, h: &FolderHeader, notes: &mut Vec<String>) {
        let pseudo = self.st.header.is_some_and(|(_, p)| p) || h.pseudo;
        self.st.header = Some((h.uidvalidity, pseudo));
        self.st.live = h.uidvalidity;
        self.st.uid_last = h.uidlast;
        self.st.breaks |= h.breaks;
        if h.breaks & quirk::CRASHES != 0 {
            notes.push(
                "a NUL in the keyword list of the folder header, or no line end after it (the file \
                 ends there), crashes c-client: UW-IMAP could not open the folder; mboxfs reads \
                 the names before it"
                    .into(),
            );
        } else if h.breaks & quirk::HANGS != 0 {
            notes.push(
                "a bare CR in the keyword list of the folder header: c-client loops forever \
                 reading it, so UW-IMAP could not open the folder; mboxfs reads the names around \
                 it"
                .into(),
            );
        }
        // c-client's keyword numbers: a later header of the first message replaces the names it
        // gives, number by number (a name too long leaves the number as it was).
        for (j, name) in h.keywords.iter().enumerate() {
            if j >= self.user_flags.len() {
                self.user_flags.resize(j + 1, None);
            }
            match name {
                Some(name) => self.user_flags[j] = Some(name.clone()),
                None => notes.push(
                    "a keyword name of the folder header is longer than 50 bytes: UW-IMAP ignored \
                     it, and every keyword after it on messages"
                        .into(),
                ),
            }
        }
        let ix = &mut self.index;
        ix.keywords.clear();
        ix.slots.clear();
        let mut usable = true;
        for name in &self.user_flags {
            let Some(name) = name else {
                // c-client's search for a message's keyword stops at the first empty number.
                usable = false;
                continue;
            };
            let text = String::from_utf8_lossy(name).into_owned();
            let i = match ix
                .keywords
                .iter()
                .position(|n| n.eq_ignore_ascii_case(&text))
            {
                Some(i) => i,
                None => {
                    ix.keywords.push(text);
                    ix.keywords.len() - 1
                }
            };
            if usable && i < 32 {
                ix.slots.push((name.clone(), i as u8));
            }
        }
    }

    fn hidden_ranges(&mut self, offset: u64, hidden: &[Range<u64>], number: usize) -> (u32, u32) {
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
                    "message {number}: a hidden header or CR lies more than 4 GiB into the \
                     message; it is served as stored"
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
        format!(
            "From a Wed Dec  2 05:53:22 1992\n{extra}Subject: x\nStatus: RO\n{uid_hdr}\nbody\n\n"
        )
    }

    /// Indexing what was appended (from the last message on) gives what indexing it all gives.
    #[test]
    fn resuming_after_an_append_is_indexing_again() {
        use crate::scan::{Scanner, SliceHaystack};
        let index_of = |data: &[u8], prior: Option<FolderIndex>| {
            let (mut ix, mut sc) = match prior.and_then(|p| {
                let from = p.resume.as_ref()?.from_line;
                Some((Indexer::resume(TimeZone::UTC, p)?, from))
            }) {
                Some((ix, from)) => (ix, Scanner::resume_at(Unquote::None, from)),
                None => (Indexer::new(TimeZone::UTC, 42), Scanner::new(Unquote::None)),
            };
            let mut hay = SliceHaystack(data);
            let mut raw = RawMessage::default();
            while sc.next_message(&mut hay, &mut raw).unwrap() {
                ix.push(&raw);
            }
            ix.finish(data.len() as u64)
        };
        let base = format!(
            "{}{}",
            msg("X-UID: 3\n", "X-IMAPbase: 5 10 Junk\n"),
            msg("X-UID: 4\n", "X-Keywords: Junk\n")
        );
        for appended in [
            msg("X-UID: 7\n", ""),
            msg("X-UID: 2\n", ""),
            "From a Wed Dec  2 05:53:22 1992\nX-UID: 99999999999\n\nx\n".to_string(),
            format!("{}{}", msg("", "X-Keywords: junk\n"), msg("", "")),
        ] {
            for cut in [base.len() - 1, base.len()] {
                let first = index_of(&base.as_bytes()[..cut], None);
                let whole = format!("{base}{appended}");
                let resumed = index_of(whole.as_bytes(), Some(first));
                let fresh = index_of(whole.as_bytes(), None);
                assert_eq!(resumed.messages, fresh.messages, "{appended:?} {cut}");
                assert_eq!(
                    (resumed.uidvalidity, resumed.uid_next, &resumed.notes),
                    (fresh.uidvalidity, fresh.uid_next, &fresh.notes)
                );
                assert_eq!(resumed.keywords, fresh.keywords);
            }
        }
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
        assert_eq!(ix.messages[0].maildir_flags(), "Sa");
        assert_eq!(ix.keywords, ["Junk"]);
    }

    fn uids(ix: &FolderIndex) -> Vec<u32> {
        ix.messages.iter().map(|m| m.uid).collect()
    }

    #[test]
    fn an_x_uid_out_of_order_discards_the_uidvalidity_as_c_client_did() {
        let data = format!(
            "{}{}{}{}",
            msg("X-UID: 3\n", "X-IMAPbase: 5 10\n"),
            msg("X-UID: 2\n", ""),
            msg("X-UID: 50\n", ""),
            msg("", "")
        );
        let ix = index(&data);
        // c-client: "Message 2 UID 2 less than 4"; later X-UIDs are not read.
        assert_eq!(uids(&ix), [3, 11, 12, 13]);
        assert_eq!(ix.uid_next, 14);
        assert_eq!(ix.uidvalidity, 42);
        assert_eq!(ix.uidvalidity_source, UidValiditySource::Discarded);
        assert!(
            ix.notes.iter().any(|n| n.contains("less than 4")),
            "{:?}",
            ix.notes
        );
        // A second X-UID in one message does the same.
        let ix = index(&msg("X-UID: 3\nX-UID: 4\n", "X-IMAPbase: 5 10\n"));
        assert_eq!((uids(&ix), ix.uidvalidity), (vec![11], 42));
    }

    #[test]
    fn an_x_uid_beyond_the_last_uid_is_kept_and_the_last_uid_follows() {
        let data = format!(
            "{}{}{}",
            msg("X-UID: 3\n", "X-IMAPbase: 5 10\n"),
            msg("X-UID: 15\n", ""),
            msg("", "")
        );
        let ix = index(&data);
        assert_eq!(uids(&ix), [3, 15, 16]);
        assert_eq!((ix.uid_next, ix.uidvalidity), (17, 5));
        assert_eq!(ix.uidvalidity_source, UidValiditySource::XImapBase);
        assert!(ix.notes.is_empty(), "{:?}", ix.notes);
    }

    #[test]
    fn keywords_count_only_when_the_folder_header_named_them_before() {
        let data = format!(
            "{}{}",
            msg(
                "X-UID: 3\n",
                "X-Keywords: a\nX-IMAPbase: 5 10 a B\nX-Keywords: b c\n"
            ),
            msg("", "X-Keywords: A x B\n")
        );
        let ix = index(&data);
        assert_eq!(ix.keywords, ["a", "B"]);
        assert_eq!(ix.messages[0].maildir_flags(), "Sb");
        assert_eq!(ix.messages[1].maildir_flags(), "Sab");
    }

    #[test]
    fn uids_beyond_32_bits_are_numbered_from_one() {
        let ix = index(&format!(
            "{}{}",
            msg("", "X-IMAPbase: 5 4294967295\n"),
            msg("", "")
        ));
        assert_eq!(
            (uids(&ix), ix.uid_next, ix.uidvalidity),
            (vec![1, 2], 3, 42)
        );
        assert_eq!(ix.uidvalidity_source, UidValiditySource::Discarded);
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
