//! A message's header, walked line by line as c-client walks it: where it ends, which of its
//! bytes are hidden, and what its status headers say.
//!
//! Each line is classified on its own (`header_line.rs`); what runs from one line to the next is
//! kept here: the header filter's state (a continuation line is hidden with a hidden field, and
//! kept with a kept one) and the parser's (`retain`: whether it takes a continuation line, which
//! runs on from one MMDF message to the next). Where filter and parser part ways, the message
//! gets a note or a [`quirk`]. The MMDF reader walks its headers here too, with [`HeaderEnd`]
//! saying that a separator also ends them.

use super::haystack::{HEADER_WINDOW, line_end};
use super::header_line::{Parsed, classify};
use super::{Haystack, RawMessage, ScanError, StatusEvent, quirk};

/// How much of a header line is examined (status values longer than this are cut).
pub(super) const MAX_LINE_LOOK: usize = 64 * 1024;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::testutil::{F1, served};
    use crate::scan::{Unquote, flag, scan_all};

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
    fn continuation_lines_belong_to_their_header_and_are_not_read() {
        let data = format!("{F1}X-Keywords: a\n b\nSubject: s\n  more\nStatus: R\n O\n\nx\n");
        let m = &scan_all(data.as_bytes(), Unquote::None).unwrap()[0];
        assert_eq!(served(data.as_bytes(), m), b"Subject: s\n  more\n\nx\n");
        assert_eq!(m.events, [StatusEvent::Keywords(vec![b"a".to_vec()])]);
        assert_eq!(m.flags, flag::SEEN);
        assert_eq!(m.notes.len(), 2);
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
}
