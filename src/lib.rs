//! mboxfs: move a UW-IMAP mail host (mbox files) to Dovecot Maildir++ without losing a message,
//! a flag or a UID.
//!
//! The layers, from the bytes up:
//! - [`fromline`] and [`scan`]: a pure scanner that finds messages and status headers;
//! - [`index`]: a folder's messages as IMAP saw them (UIDs, flags, keywords, dates);
//! - [`mbox`]: opening a source file read-only, indexing it, reading served bytes.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod fromline;
pub mod index;
pub mod mbox;
mod mmap;
pub mod scan;
pub mod tz;
