//! The Debian package: `scripts/package.sh` builds it (one release build), `dpkg -i` installs
//! it on this machine, and then `mboxfs --version`, `man -w` for every page, `systemd-analyze
//! verify` on the units and `doveconf` on the shipped configuration work; `dpkg --purge`
//! leaves nothing behind.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().unwrap();
    (out.status.success(), common::text(&out))
}

fn installed() -> bool {
    sh("dpkg-query", &["-W", "-f", "${Status}", "mboxfs"])
        .1
        .contains("install ok installed")
}

/// Purges the package even when an assertion failed.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "mboxfs"]).output();
    }
}

#[test]
fn the_package_installs_a_working_mboxfs_with_man_pages_and_units() {
    common::require_root_and_tools(&["dpkg", "dpkg-deb", "man", "doveconf"]);
    // One package test at a time on this machine (it installs system-wide).
    let lock = std::fs::File::create("/run/lock/mboxfs-package-test.lock").unwrap();
    // SAFETY: flock on a descriptor we own, held until `lock` is dropped.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0);
    assert!(
        !installed(),
        "an mboxfs package is installed on this machine; this test installs and purges its own: \
         remove it first (dpkg --purge mboxfs)"
    );

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (ok, out) = sh(repo.join("scripts/package.sh").to_str().unwrap(), &[]);
    assert!(ok, "package.sh failed:\n{out}");
    let deb = repo.join(out.lines().last().unwrap().trim());
    let name = deb.file_name().unwrap().to_string_lossy().to_string();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        name.starts_with(&format!("mboxfs_{version}_")) && name.ends_with(".deb"),
        "{name}"
    );

    let _purge = Purge;
    let (ok, out) = sh("dpkg", &["-i", deb.to_str().unwrap()]);
    assert!(ok, "dpkg -i:\n{out}");
    let (ok, out) = sh("/usr/bin/mboxfs", &["--version"]);
    assert!(ok && out.trim() == format!("mboxfs {version}"), "{out}");
    // Stripped: no debug information left.
    let (_, sections) = sh("readelf", &["-S", "/usr/bin/mboxfs"]);
    assert!(!sections.contains(".debug_info"), "not stripped");
    for page in [
        "mboxfs",
        "mboxfs-plan",
        "mboxfs-mount",
        "mboxfs-materialize",
        "mboxfs-verify",
        "mboxfs-dovecot-config",
    ] {
        let (ok, out) = sh("man", &["-w", page]);
        assert!(ok, "man -w {page}: {out}");
        assert!(
            out.trim() == format!("/usr/share/man/man1/{page}.1.gz"),
            "{out}"
        );
    }
    let (_, page) = sh("man", &["-P", "cat", "mboxfs-dovecot-config"]);
    assert!(page.contains("--writable"), "{page}");
    let completion =
        std::fs::read_to_string("/usr/share/bash-completion/completions/mboxfs").unwrap();
    assert!(completion.contains("dovecot-config"));
    let units = [
        "/lib/systemd/system/mboxfs-preview.service",
        "/lib/systemd/system/mboxfs-preview-dovecot.service",
    ];
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let (ok, out) = sh("systemd-analyze", &[&["verify"], &units[..]].concat());
        assert!(
            ok && out.trim().is_empty(),
            "systemd-analyze verify:\n{out}"
        );
    }
    let (ok, out) = sh(
        "doveconf",
        &["-n", "-c", "/etc/mboxfs/dovecot-preview.conf"],
    );
    assert!(ok, "{out}");
    let acl = std::fs::read_to_string("/usr/share/mboxfs/dovecot-readonly.acl").unwrap();
    assert!(acl.contains("* owner lr"), "{acl}");
    for f in std::fs::read_dir("/usr/share/doc/mboxfs/examples")
        .unwrap()
        .flatten()
    {
        let (ok, out) = sh("doveconf", &["-n", "-c", f.path().to_str().unwrap()]);
        assert!(ok, "{}: {out}", f.path().display());
    }

    let (ok, out) = sh("dpkg", &["--purge", "mboxfs"]);
    assert!(ok, "{out}");
    assert!(!installed());
    for gone in [
        "/usr/bin/mboxfs",
        "/etc/mboxfs",
        "/etc/default/mboxfs",
        units[0],
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
}
