//! Readiness for systemd (`Type=notify`): `READY=1` once the file system is mounted, so that
//! units ordered after the mount (the preview's Dovecot) start only when there is something to
//! serve.
//!
//! A thread watches `/proc/self/mountinfo` for a new `fuse.mboxfs` mount at the mountpoint (a
//! dead mount left there by a killed process does not count), then sends the datagram to
//! `$NOTIFY_SOCKET`. Reading the mount table never touches the FUSE file system, so the thread
//! cannot block on the requests it is waiting for.

use std::collections::HashSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Mount ids of `fuse.mboxfs` mounts at `mountpoint`.
fn mboxfs_mounts(mountpoint: &Path) -> HashSet<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut f = left.split(' ');
            let id = f.next()?;
            let mp = f.nth(3)?.replace("\\040", " ");
            (right.split(' ').next() == Some("fuse.mboxfs") && Path::new(&mp) == mountpoint)
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
    if let Err(e) = spawned {
        log::warn!("cannot watch for the mount to tell systemd: {e}");
    }
}
