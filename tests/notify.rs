//! `mboxfs mount` under systemd (`Type=notify`): READY=1 arrives only once the file system is
//! mounted, and the mount logs nothing by default.

mod common;

use std::os::unix::net::UnixDatagram;

use common::{Host, is_mounted, mboxfs};

#[test]
fn ready_is_sent_once_mounted() {
    common::require_root_and_tools(&[]);
    let host = Host::make(&[
        "--users",
        "2",
        "--folders",
        "1",
        "--messages",
        "3",
        "--seed",
        "51",
    ]);
    let dir = common::open_dir("mboxfs-notify");
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let log = dir.path().join("log");
    let mut child = mboxfs()
        .arg("mount")
        .arg(&mnt)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(host.source_args())
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let got = socket.recv(&mut buf);
    let mounted = is_mounted(&mnt);
    common::signal(child.id(), libc::SIGTERM);
    let status = child.wait().unwrap();
    let n = got.expect("no READY=1 within 20 s");
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(msg.starts_with("READY=1\n"), "{msg}");
    assert!(mounted, "READY=1 before the mount");
    assert!(status.success(), "{status}");
    assert!(!is_mounted(&mnt));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.is_empty(), "the mount logged by default:\n{log}");
}
