//! The fuser adapter: each request calls [`MailFs`] and turns the answer into a reply. Every
//! handler runs under `catch_unwind`: a panic answers EIO and the thread keeps serving.

use std::ffi::OsStr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, Errno as FErrno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::fs::{Attr, Errno, Kind, MailFs, NEGATIVE_TTL};

pub struct Adapter {
    pub fs: Arc<MailFs>,
}

fn errno(e: Errno) -> FErrno {
    FErrno::from_i32(e.0)
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: match a.kind {
            Kind::Dir => FileType::Directory,
            Kind::File => FileType::RegularFile,
        },
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Runs a handler; a panic is logged and the reply (dropped while unwinding) answers EIO.
fn guard(op: &str, f: impl FnOnce()) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        log::error!("{op}: internal error ({what}); answered EIO");
    }
}

fn reply_entry(reply: ReplyEntry, r: crate::fs::Result<Attr>) {
    match r {
        Ok(a) => reply.entry_with_ttls(&a.ttl, &a.entry_ttl, &file_attr(&a), Generation(0)),
        // A negative entry (inode 0): the kernel need not ask again for a while. Names that
        // appear through the view are invalidated when they do.
        Err(Errno::ENOENT) => {
            let none = Attr {
                ino: 0,
                kind: Kind::File,
                size: 0,
                mtime: SystemTime::UNIX_EPOCH,
                perm: 0,
                uid: 0,
                gid: 0,
                nlink: 0,
                ttl: NEGATIVE_TTL,
                entry_ttl: NEGATIVE_TTL,
            };
            reply.entry(&NEGATIVE_TTL, &file_attr(&none), Generation(0))
        }
        Err(e) => reply.error(errno(e)),
    }
}

fn to_system_time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // READDIRPLUS: a listing of cur/ brings every message's attributes with it, so opening
        // them later costs no LOOKUP or GETATTR.
        let wanted = InitFlags::FUSE_PARALLEL_DIROPS | InitFlags::FUSE_DO_READDIRPLUS;
        if let Err(unsupported) = config.add_capabilities(wanted) {
            log::debug!("kernel lacks {unsupported:?}");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        guard("lookup", || {
            reply_entry(reply, self.fs.lookup(parent.0, name))
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        guard("getattr", || match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&a.ttl, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        guard("setattr", || {
            if uid.is_some() || gid.is_some() {
                // Ownership is the view's to decide; accept a no-op chown only.
                match self.fs.getattr(ino.0) {
                    Ok(a) if uid.is_none_or(|u| u == a.uid) && gid.is_none_or(|g| g == a.gid) => {}
                    Ok(_) => return reply.error(FErrno::EPERM),
                    Err(e) => return reply.error(errno(e)),
                }
            }
            let times = (atime.is_some() || mtime.is_some())
                .then(|| (atime.map(to_system_time), mtime.map(to_system_time)));
            match self.fs.setattr(ino.0, size, mode, times) {
                Ok(a) => reply.attr(&a.ttl, &file_attr(&a)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn mknod(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        reply.error(FErrno::EACCES);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        guard("mkdir", || match self.fs.mkdir(parent.0, name) {
            Ok(a) => reply.entry_with_ttls(&a.ttl, &a.entry_ttl, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guard("unlink", || match self.fs.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guard("rmdir", || match self.fs.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn symlink(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _t: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(FErrno::EACCES);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        guard("rename", || {
            if !flags.is_empty() {
                return reply.error(FErrno::EINVAL);
            }
            match self.fs.rename(parent.0, name, newparent.0, newname) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        guard("link", || match self.fs.link(ino.0, newparent.0, newname) {
            Ok(a) => reply.entry_with_ttls(&a.ttl, &a.entry_ttl, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // ENOSYS: the kernel stops sending opens and releases (it keeps cached pages, and the
        // permission checks are its own). Reads and writes then come by inode.
        reply.error(FErrno::ENOSYS);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        guard("read", || match self.fs.read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        guard("write", || match self.fs.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        guard("fsync", || match self.fs.fsync(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        guard("opendir", || match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        guard("readdir", || {
            let r = self.fs.readdir(ino.0, fh.0, offset, |e, next| {
                let kind = match e.kind {
                    Kind::Dir => FileType::Directory,
                    Kind::File => FileType::RegularFile,
                };
                reply.add(INodeNo(e.ino), next, kind, &e.name)
            });
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        guard("readdirplus", || {
            let r = self.fs.readdirplus(ino.0, fh.0, offset, |e, attr, next| {
                let a = file_attr(attr);
                // One time to live for both: the shorter, so that directory attributes still
                // reach the view every second.
                let ttl = attr.ttl.min(attr.entry_ttl);
                reply.add(INodeNo(e.ino), next, &e.name, &ttl, &a, Generation(0))
            });
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (blocks, bfree, bavail, files, ffree, bsize) = self.fs.statfs();
        reply.statfs(blocks, bfree, bavail, files, ffree, bsize, 255, bsize);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The kernel checks permissions itself (default_permissions); this only says the node
        // exists.
        guard("access", || match self.fs.getattr(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        guard("create", || {
            match self.fs.create(parent.0, name, mode & !umask, flags) {
                Ok(a) => reply.created(
                    &a.ttl,
                    &file_attr(&a),
                    Generation(0),
                    FileHandle(0),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(errno(e)),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_returns_to_the_loop() {
        // The reply a real handler owns is dropped while unwinding, which answers EIO (fuser's
        // Drop for replies); what matters here is that the panic stops at the guard, so that the
        // thread goes back to serving.
        let mut after = false;
        guard("test", || panic!("boom"));
        guard("test", || after = true);
        assert!(after);
    }
}
