//! The one memory map of the crate, used to index quiet files quickly.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{Advice, Mmap, MmapOptions};

/// A read-only map of the first `len` bytes of a file.
pub struct Map {
    map: Mmap,
}

impl Map {
    /// Maps `len` bytes of `file`.
    ///
    /// The map is only used for passes that end before anyone should change the file (`plan`,
    /// `materialize` and `verify` run after mail is stopped). If another process truncates the
    /// file during the pass, reading the lost pages raises SIGBUS; the mount never maps sources.
    pub fn new(file: &File, len: u64) -> io::Result<Map> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        // SAFETY: the mapping is read-only and private to this process; the contract above
        // (no truncation during a one-shot pass) is the caller's, as documented.
        let map = unsafe { MmapOptions::new().len(len).map(file)? };
        if let Err(e) = map.advise(Advice::Sequential) {
            log::debug!("madvise(SEQUENTIAL) failed: {e}");
        }
        Ok(Map { map })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}
