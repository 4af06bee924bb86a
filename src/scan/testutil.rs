//! Helpers for the scanner's unit tests and the MMDF reader's: a haystack that shows few bytes
//! at a time, the served bytes of a message, and two From_ lines.

use std::io;

use super::{Haystack, RawMessage, Unquote, scan_all};

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

/// The served bytes of each message of `data`, as text.
pub(super) fn texts(data: &[u8]) -> Vec<String> {
    scan_all(data, Unquote::None)
        .unwrap()
        .iter()
        .map(|m| String::from_utf8(served(data, m)).unwrap())
        .collect()
}

/// Two From_ lines, of two messages.
pub(super) const F1: &str = "From a@b Wed Dec  2 05:53:22 1992\n";
pub(super) const F2: &str = "From c@d Thu Dec  3 05:53:22 1992\n";
