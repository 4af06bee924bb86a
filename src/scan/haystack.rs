//! Random access to an mbox's bytes ([`Haystack`]), and the reads through it that the mbox
//! scanner and the MMDF reader share: where a line ends, and the line feeds, CRLF pairs and bare
//! CRs of a range.
//!
//! A haystack is a snapshot of one file: a slice ([`SliceHaystack`]: a memory map, for one-shot
//! passes) or bounded `pread` windows (the mount's reader). A read asks for at least so many
//! bytes and may get more, so these functions walk a range window by window and carry what
//! straddles a window's edge (a CR whose LF is in the next window) across it: a file gives the
//! same answers at any window size.

use std::io;
use std::ops::Range;

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

/// How much a header-phase read asks for.
pub(super) const HEADER_WINDOW: usize = 64 * 1024;
/// How much a body-phase read asks for.
pub(crate) const BODY_WINDOW: usize = 1024 * 1024;

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

#[cfg(test)]
mod tests {
    use crate::scan::testutil::{F1, served};
    use crate::scan::{Unquote, quirk, scan_all};

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
}
