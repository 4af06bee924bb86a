//! `mboxfs mount`: mounts the view, serves it in the foreground, and leaves nothing mounted.
//!
//! fuser installs no signal handler, so SIGINT, SIGTERM and SIGHUP are blocked in every thread
//! and taken by one thread with `sigwait`, which detaches the mount (`umount2(MNT_DETACH)`, or
//! `fusermount3 -u -z` when not root); the session then ends and the process exits 0. An external
//! `umount` ends it the same way. A dead mount left by a killed process is cleared at start.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{Config, INodeNo, MountOption, SessionACL};

use crate::fs::{FsOptions, Invalidation, Lists, MailFs};
use crate::fuse::Adapter;
use crate::model::Tree;
use crate::sys;

/// Everything `mount` needs.
pub struct MountConfig {
    pub mountpoint: PathBuf,
    pub threads: usize,
    /// How to read the lists again (users and folders added later appear).
    pub lists: Option<Lists>,
    /// `max_open` 0: chosen from the open-files limit.
    pub fs: FsOptions,
}

/// The default state directory.
pub fn default_state_dir() -> PathBuf {
    if sys::euid() == 0 {
        PathBuf::from("/var/lib/mboxfs/state")
    } else {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".local/state/mboxfs")
    }
}

fn c_path(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)
}

/// Detaches the mount at `mountpoint`.
pub fn unmount(mountpoint: &Path) -> std::io::Result<()> {
    if sys::euid() == 0 {
        let c = c_path(mountpoint)?;
        // SAFETY: `c` is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        return Err(std::io::Error::last_os_error());
    }
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(mountpoint)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("fusermount3 -u failed"))
    }
}

/// What is mounted at `mp`, if anything (its file system type, from `/proc/self/mountinfo`).
/// The mount itself is not looked into: only its parent is resolved.
pub fn mounted_at(mp: &Path) -> Option<String> {
    let real = match (mp.parent(), mp.file_name()) {
        (Some(parent), Some(name)) => parent.canonicalize().ok()?.join(name),
        _ => mp.canonicalize().ok()?,
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let point = unescape_mountinfo(line.split(' ').nth(4)?);
        (Path::new(&point) == real).then(|| {
            line.split(" - ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .unwrap_or("unknown")
                .to_string()
        })
    })
}

/// A mountinfo field with its octal escapes (`\040` for a space...) decoded.
fn unescape_mountinfo(field: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; the calls only
    // touch this local set and the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Mounts and serves until unmounted or signalled.
pub fn run(tree: Tree, config: MountConfig) -> Result<(), String> {
    let mp = &config.mountpoint;
    match std::fs::metadata(mp) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{}: not a directory", mp.display())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            log::warn!(
                "{}: a dead mount is in the way (a killed mboxfs?); detaching it",
                mp.display()
            );
            unmount(mp).map_err(|e| {
                format!(
                    "{}: cannot detach the dead mount: {e}; try `umount -l {0}`",
                    mp.display()
                )
            })?;
        }
        Err(e) => return Err(format!("{}: {e}", mp.display())),
    }
    if let Some(fstype) = mounted_at(mp) {
        return Err(format!(
            "{}: already mounted ({fstype}); unmount it first (`umount {0}`)",
            mp.display()
        ));
    }
    std::fs::create_dir_all(&config.fs.state_dir)
        .map_err(|e| format!("state directory {}: {e}", config.fs.state_dir.display()))?;
    let users = tree.users.len();
    let mut fs_options = config.fs.clone();
    if fs_options.max_open == 0 {
        // Open mbox files are kept in a bounded cache; the soft limit is raised first (systemd's
        // default soft limit is 1024).
        let limit = sys::raise_open_files_limit().unwrap_or(1024);
        fs_options.max_open = (limit.saturating_sub(512) / 2).clamp(16, 8192) as usize;
        log::info!(
            "open files: limit {limit}; up to {} mbox files kept open",
            fs_options.max_open
        );
    }
    let writable = fs_options.writable;
    let fs = MailFs::new(tree, fs_options, config.lists)
        .map_err(|e| format!("state directory {}: {e}", config.fs.state_dir.display()))?;
    let changed: Vec<_> = fs
        .tester_changes()
        .into_iter()
        .filter(|(_, c)| c.total() > 0)
        .collect();
    for (user, c) in &changed {
        log::info!("{user}: testers' changes kept: {c}");
    }
    if !writable && !changed.is_empty() {
        return Err(format!(
            "{}: holds testers' changes for {} user(s) ({}); mount with --writable to show them, or \
             throw them away with `mboxfs discard-changes --state-dir {0}`",
            config.fs.state_dir.display(),
            changed.len(),
            changed
                .iter()
                .map(|(u, c)| format!("{u}: {}", c.total()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    let mut options = Config::default();
    options.mount_options = vec![
        MountOption::FSName("mboxfs".into()),
        MountOption::Subtype("mboxfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoExec,
        MountOption::NoAtime,
    ];
    options.acl = if sys::euid() == 0 {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    options.n_threads = Some(config.threads.max(1));
    options.clone_fd = true;

    let signals = block_signals();
    let fs = Arc::new(fs);
    let mut session = fuser::Session::new(Adapter { fs: fs.clone() }, mp, &options)
        .map_err(|e| format!("cannot mount {}: {e}", mp.display()))?;
    let mut unmounter = session.unmount_callable();

    // Invalidations go to the kernel from their own thread: a request handler must not wait on
    // the kernel while the kernel waits on it.
    let notifier = session.notifier();
    let (tx, rx) = std::sync::mpsc::channel::<Invalidation>();
    fs.set_invalidations(tx);
    std::thread::Builder::new()
        .name("invalidate".into())
        .spawn(move || {
            for inv in rx {
                // ENOENT only means the kernel has nothing cached for it.
                let _ = match &inv {
                    Invalidation::Inode(ino) => notifier.inval_inode(INodeNo(*ino), 0, 0),
                    Invalidation::Entry(parent, name) => {
                        notifier.inval_entry(INodeNo(*parent), name)
                    }
                };
            }
        })
        .map_err(|e| e.to_string())?;

    let waiter_mp = mp.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: `signals` is an initialised set and `sig` a live local.
            unsafe { libc::sigwait(&signals, &mut sig) };
            log::info!("signal {sig}: unmounting {}", waiter_mp.display());
            // A plain unmount first; a lazy detach when something still holds the mount busy.
            if let Err(e) = unmounter.unmount() {
                log::info!("{} is busy ({e}); detaching it", waiter_mp.display());
                if let Err(e) = unmount(&waiter_mp) {
                    log::error!("unmounting {}: {e}", waiter_mp.display());
                }
            }
        })
        .map_err(|e| e.to_string())?;

    println!(
        "mboxfs: mounted {} ({users} users, state in {}); Ctrl-C or `umount {0}` unmounts",
        mp.display(),
        config.fs.state_dir.display()
    );
    let _ = std::io::stdout().flush();
    // Every folder read once in the background: the first client to open one finds it ready.
    let warm = fs.clone();
    std::thread::Builder::new()
        .name("warm-up".into())
        .spawn(move || warm.warm_up())
        .map_err(|e| e.to_string())?;
    let result = session.run();
    log::info!("{} unmounted", mp.display());
    result.map_err(|e| format!("serving {}: {e}", mp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        assert_eq!(unescape_mountinfo("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape_mountinfo("/plain\\9"), "/plain\\9");
        assert_eq!(mounted_at(Path::new("/proc")).as_deref(), Some("proc"));
        assert_eq!(mounted_at(Path::new("/proc/self")), None);
    }
}
