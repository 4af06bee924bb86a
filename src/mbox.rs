//! Reading one source file: opening it without changing it, recognising its store (mbox, or
//! UW's mbx or MMDF: [`sniff`]), indexing it, and reading a message's served bytes.
//!
//! Source files are opened `O_RDONLY | O_NOFOLLOW | O_NOATIME` (the last where the kernel allows
//! it), and never written. Indexing reads through a memory map for one-shot passes, or through
//! `pread` windows for the long-running mount, where a map could SIGBUS if the file is truncated.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use jiff::tz::TimeZone;

pub use crate::index::Store;
use crate::index::{FolderIndex, Indexer, Msg};
use crate::scan::{Haystack, RawMessage, ScanError, Scanner, SliceHaystack, Unquote};
use crate::{mbx, mmdf};

/// How a file is read while it is indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// A memory map (fastest; for passes over quiet files).
    Map,
    /// `pread` into a bounded buffer (safe if the file shrinks underneath).
    Pread,
}

/// Everything that decides how an mbox is read.
#[derive(Clone, Debug)]
pub struct IndexOptions {
    /// The zone of From_ dates without one.
    pub tz: TimeZone,
    pub unquote: Unquote,
    /// The UIDVALIDITY of a folder that has none.
    pub derived_uidvalidity: u32,
    pub mode: ReadMode,
}

/// Who a file is and when it last changed: enough to tell whether it must be read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub uid: u32,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            uid: meta.uid(),
        }
    }
}

/// Why a source could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// Not something to read as an mbox (another format, a device, ...), and why.
    NotMbox(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::NotMbox(why) => write!(f, "{why}"),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<ScanError> for ReadError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::Io(e) => ReadError::Io(e),
            ScanError::NotMbox(why) => ReadError::NotMbox(why),
        }
    }
}

/// Opens a source file for reading only, refusing symlinks and anything but a regular file.
pub fn open(path: &Path) -> Result<(File, FileId), ReadError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC);
    // O_NOATIME keeps the source's atime as it was; the kernel allows it to the owner and root.
    let file = match opts
        .clone()
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOATIME)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => opts.open(path)?,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(ReadError::NotMbox("is a symbolic link".into()));
        }
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(ReadError::NotMbox(describe_file_type(&meta).into()));
    }
    Ok((file, FileId::of(&meta)))
}

pub fn describe_file_type(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    if ft.is_dir() {
        "is a directory"
    } else if ft.is_symlink() {
        "is a symbolic link"
    } else if ft.is_fifo() {
        "is a FIFO"
    } else if ft.is_socket() {
        "is a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "is a device"
    } else {
        "is not a regular file"
    }
}

/// Recognises which store a file is in by its first bytes (at least the first
/// [`mbx::HDRSIZE`] when the file has them): mbox (whatever is none of the others; the scanner
/// then decides), UW's mbx, or MMDF, as c-client's drivers recognise them. `Err`: one of UW's
/// other formats, or a damaged one, and why it is not read.
pub fn sniff(head: &[u8]) -> Result<Store, String> {
    if head.starts_with(b"*mbx*") {
        return match mbx::check_header(head) {
            Ok(()) => Ok(Store::Mbx),
            Err(why) => Err(format!(
                "UW-IMAP mbx mailbox (magic *mbx*) with a header UW-IMAP could not read: {why}"
            )),
        };
    }
    if mmdf::is_mmdf(head) {
        return Ok(Store::Mmdf);
    }
    if head.starts_with(b"\x01\x01\x01\x01") {
        return Err(
            "starts like an MMDF mailbox (^A^A^A^A), but not with the separator line (^A^A^A^A \
             and a line feed) that UW-IMAP requires"
                .into(),
        );
    }
    // tenex: "dd-mmm-yyyy hh:mm:ss +zzzz,<size>;<12 hex flags>\n"; mtx: the same with a
    // shorter flags field. Both start with a date.
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    let is_date_line = line.len() > 28
        && line.get(2) == Some(&b'-')
        && line.get(6) == Some(&b'-')
        && line.contains(&b',')
        && line.contains(&b';');
    if is_date_line {
        return Err(
            "UW-IMAP tenex or mtx mailbox (date,size;flags records): convert it with UW's \
             mailutil first"
                .into(),
        );
    }
    Ok(Store::Mbox)
}

/// An mbox read through `pread` windows.
pub struct PreadHaystack<'f> {
    file: &'f File,
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    at: u64,
}

const PREAD_WINDOW: usize = 4 * 1024 * 1024;

impl<'f> PreadHaystack<'f> {
    pub fn new(file: &'f File, len: u64) -> Self {
        PreadHaystack {
            file,
            len,
            buf: Vec::new(),
            at: 0,
        }
    }
}

impl Haystack for PreadHaystack<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn get(&mut self, offset: u64, min: usize) -> io::Result<&[u8]> {
        let want_end = (offset + min as u64).min(self.len);
        let have_end = self.at + self.buf.len() as u64;
        if offset < self.at || want_end > have_end {
            let size = ((self.len - offset) as usize).min(min.max(PREAD_WINDOW));
            self.buf.resize(size, 0);
            let mut filled = 0;
            while filled < size {
                match self
                    .file
                    .read_at(&mut self.buf[filled..], offset + filled as u64)
                {
                    Ok(0) => {
                        // The file shrank since it was measured.
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file shrank while it was read",
                        ));
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.at = offset;
        }
        Ok(&self.buf[(offset - self.at) as usize..])
    }
}

/// Indexes an open source file of length `len`: an mbox, an mbx or an MMDF file.
pub fn index_file(file: &File, len: u64, opts: &IndexOptions) -> Result<FolderIndex, ReadError> {
    let mut head = vec![0; (mbx::HDRSIZE as u64).min(len) as usize];
    file.read_exact_at(&mut head, 0)?;
    let store = sniff(&head).map_err(ReadError::NotMbox)?;
    let mtime = file.metadata()?.mtime();
    match opts.mode {
        ReadMode::Map if len > 0 => match crate::mmap::Map::new(file, len) {
            Ok(map) => index_store(store, &mut SliceHaystack(map.bytes()), mtime, opts),
            Err(e) => {
                log::debug!("mmap failed ({e}); reading instead");
                index_store(store, &mut PreadHaystack::new(file, len), mtime, opts)
            }
        },
        _ => index_store(store, &mut PreadHaystack::new(file, len), mtime, opts),
    }
}

/// Indexes a file of a known store. `mtime`: the file's modification time (MMDF dates messages
/// without From_ line with it).
pub fn index_store(
    store: Store,
    hay: &mut impl Haystack,
    mtime: i64,
    opts: &IndexOptions,
) -> Result<FolderIndex, ReadError> {
    let indexer = Indexer::new(opts.tz.clone(), opts.derived_uidvalidity);
    match store {
        Store::Mbox => run(hay, Scanner::new(opts.unquote), indexer),
        Store::Mbx => Ok(mbx::index(hay, &opts.tz, opts.derived_uidvalidity)?),
        Store::Mmdf => run_mmdf(hay, mmdf::Scanner::new(mtime), indexer),
    }
}

/// Indexes what was appended to an mbox since `index` was made: the last message is read again
/// (its end may have moved) and new ones are added. The caller has checked that the bytes
/// before the end are unchanged. mbx and MMDF files are indexed again whole (an mbx header
/// changes with new mail; where an MMDF message starts depends on what follows the last one).
pub fn index_appended(
    file: &File,
    len: u64,
    index: FolderIndex,
    opts: &IndexOptions,
) -> Result<FolderIndex, ReadError> {
    let from = index.resume.as_ref().map(|r| r.from_line);
    if index.store != Store::Mbox {
        return index_file(file, len, opts);
    }
    let (Some(from), Some(indexer)) = (from, Indexer::resume(opts.tz.clone(), index)) else {
        return index_file(file, len, opts);
    };
    run(
        &mut PreadHaystack::new(file, len),
        Scanner::resume_at(opts.unquote, from),
        indexer,
    )
}

fn run(
    hay: &mut impl Haystack,
    mut scanner: Scanner,
    mut indexer: Indexer,
) -> Result<FolderIndex, ReadError> {
    let mut msg = RawMessage::default();
    while scanner.next_message(hay, &mut msg)? {
        indexer.push(&msg);
    }
    Ok(indexer.finish(hay.len()))
}

fn run_mmdf(
    hay: &mut impl Haystack,
    mut scanner: mmdf::Scanner,
    mut indexer: Indexer,
) -> Result<FolderIndex, ReadError> {
    let mut msg = RawMessage::default();
    let mut undated = 0usize;
    while scanner.next_message(hay, &mut msg)? {
        undated += usize::from(msg.flags & crate::scan::flag::DATE_FROM_FILE != 0);
        indexer.push(&msg);
    }
    let mut index = indexer.finish(hay.len());
    index.store = Store::Mmdf;
    // Appended mail is read by indexing the file again: where a message starts depends on
    // what follows the last one.
    index.resume = None;
    if undated > 0 {
        index.notes.push(format!(
            "{undated} message(s) have no From_ line: their INTERNALDATE is the file's \
             modification time, as UW-IMAP showed it when it opened the folder (it changes \
             whenever the file does)"
        ));
    }
    Ok(index)
}

/// Opens and indexes a file in one go.
pub fn index_path(path: &Path, opts: &IndexOptions) -> Result<(FolderIndex, FileId), ReadError> {
    let (file, id) = open(path)?;
    let index = index_file(&file, id.len, opts)?;
    Ok((index, id))
}

/// Reads `buf.len()` bytes of a message's served bytes, from served offset `offset`. Returns how
/// many were read (short only at the end of the message).
pub fn read_served(
    file: &File,
    index: &FolderIndex,
    msg: &Msg,
    offset: u64,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut filled = 0;
    let mut skip = offset;
    for seg in index.segments(msg) {
        if filled == buf.len() {
            break;
        }
        let seg_len = seg.end - seg.start;
        if skip >= seg_len {
            skip -= seg_len;
            continue;
        }
        let from = seg.start + skip;
        let n = ((seg_len - skip) as usize).min(buf.len() - filled);
        file.read_exact_at(&mut buf[filled..filled + n], from)?;
        filled += n;
        skip = 0;
    }
    Ok(filled)
}

/// The whole served message.
pub fn served_bytes(file: &File, index: &FolderIndex, msg: &Msg) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; msg.size(index) as usize];
    let n = read_served(file, index, msg, 0, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_uw_formats() {
        let mbx = mbx::build::header(1, 0, &[]);
        assert_eq!(sniff(&mbx), Ok(Store::Mbx));
        assert!(
            sniff(&mbx[..100])
                .unwrap_err()
                .contains("shorter than the 2048-byte")
        );
        assert!(
            sniff(b"*mbx*\r\n0000000x")
                .unwrap_err()
                .contains("not a hex digit")
        );
        assert_eq!(sniff(b"\x01\x01\x01\x01\n"), Ok(Store::Mmdf));
        assert!(sniff(b"\x01\x01\x01\x01\r\n").unwrap_err().contains("MMDF"));
        assert!(
            sniff(b" 1-Jan-2004 10:00:00 +0000,1234;000000000003\r\n")
                .unwrap_err()
                .contains("tenex")
        );
        assert_eq!(sniff(b"From a Wed Dec  2 05:53:22 1992\n"), Ok(Store::Mbox));
    }

    #[test]
    fn map_and_pread_give_the_same_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box");
        let mut data = String::new();
        for i in 0..200 {
            data += &format!(
                "From a Wed Dec  2 05:53:{:02} 1992\nSubject: {i}\nStatus: RO\nX-UID: {}\n\n{}\n\n",
                i % 60,
                i + 1,
                "x".repeat(i * 997 % 50_000)
            );
        }
        std::fs::write(&path, &data).unwrap();
        let mut opts = IndexOptions {
            tz: TimeZone::UTC,
            unquote: Unquote::None,
            derived_uidvalidity: 7,
            mode: ReadMode::Map,
        };
        let (a, _) = index_path(&path, &opts).unwrap();
        opts.mode = ReadMode::Pread;
        let (b, _) = index_path(&path, &opts).unwrap();
        assert_eq!(a.messages, b.messages);
        assert_eq!(a.messages.len(), 200);
        let (file, _) = open(&path).unwrap();
        let m = &a.messages[3];
        assert_eq!(
            served_bytes(&file, &a, m).unwrap(),
            format!("Subject: 3\n\n{}\n", "x".repeat(2991)).as_bytes()
        );
        let mut part = [0u8; 5];
        assert_eq!(read_served(&file, &a, m, 9, &mut part).unwrap(), 5);
        assert_eq!(&part, b"3\n\nxx");
    }

    #[test]
    fn refuses_links_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(open(&link), Err(ReadError::NotMbox(w)) if w.contains("symbolic")));
        let fifo = dir.path().join("f");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        #[allow(unsafe_code)]
        unsafe {
            libc::mkfifo(c.as_ptr(), 0o600);
        }
        assert!(matches!(open(&fifo), Err(ReadError::NotMbox(w)) if w.contains("FIFO")));
        assert!(matches!(open(dir.path()), Err(ReadError::NotMbox(w)) if w.contains("directory")));
    }
}
