//! Readiness for systemd (`Type=notify`): `READY=1` once the file system is mounted, so that
//! units ordered after the mount (the preview's Dovecot) start only when there is something to
//! serve.
//!
//! A thread watches `/proc/self/mountinfo` for a new mboxfs mount at the mountpoint (a
//! dead mount left there by a killed process does not count), then sends the datagram to
//! `$NOTIFY_SOCKET`. Reading the mount table never touches the FUSE file system, so the thread
//! cannot block on the requests it is waiting for.

use std::collections::HashSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Mount ids of mboxfs's FUSE mounts at `mountpoint` (type `fuse` or `fuse.mboxfs`, source
/// `mboxfs`).
fn mboxfs_mounts(mountpoint: &Path) -> HashSet<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut f = left.split(' ');
            let id = f.next()?;
            let mp = f.nth(3)?.replace("\\040", " ");
            let mut r = right.split(' ');
            let (fstype, source) = (r.next()?, r.next()?);
            (fstype.starts_with("fuse") && source == "mboxfs" && Path::new(&mp) == mountpoint)
                .then(|| id.to_string())
        })
        .collect()
}

/// Sends one notification to systemd, if it asked for them.
pub fn send(state: &str) {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = addr.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), PathBuf::from(&addr))
    };
    if let Err(e) = sent {
        log::warn!("telling systemd {state:?}: {e}");
    }
}

/// Tells systemd `READY=1` once `mountpoint` is mounted (when run under `Type=notify`).
pub fn ready_when_mounted(mountpoint: &Path) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    // The mountpoint itself may be a dead mount (ENOTCONN) until `mount` clears it: resolve its
    // parent.
    let mp = match (mountpoint.parent(), mountpoint.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            parent
                .canonicalize()
                .map(|p| p.join(name))
                .unwrap_or_else(|_| mountpoint.to_path_buf())
        }
        _ => mountpoint.to_path_buf(),
    };
    let before = mboxfs_mounts(&mp);
    // The thread must not take SIGTERM or SIGINT, whose default action would end the process
    // without unmounting: `mount` waits for them in a thread of its own. A new thread inherits
    // the signal mask, so block them around the spawn.
    let old = block_stop_signals();
    let spawned = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            loop {
                if mboxfs_mounts(&mp).difference(&before).next().is_some() {
                    send(&format!("READY=1\nSTATUS=mounted at {}", mp.display()));
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    restore_signals(&old);
    if let Err(e) = spawned {
        log::warn!("cannot watch for the mount to tell systemd: {e}");
    }
}

#[allow(unsafe_code)]
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls change only this
    // thread's mask and write the previous one into a live local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        old
    }
}

#[allow(unsafe_code)]
fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: `old` is the mask pthread_sigmask returned; this sets the calling thread's mask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
    }
}
