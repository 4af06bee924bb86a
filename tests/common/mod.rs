//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// The team's shared directory (tools and corpora): `$MBOXFS_SHARED`, else `../shared` next to
/// the checkout, else `/work/shared`.
pub fn shared() -> PathBuf {
    let candidates = [
        std::env::var_os("MBOXFS_SHARED").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")),
        Some(PathBuf::from("/work/shared")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("tools/mkcorpus.py").is_file())
        .expect("the shared directory (set MBOXFS_SHARED to the folder holding tools/ and corpus/)")
}

pub fn real_corpus() -> PathBuf {
    shared().join("corpus/real")
}

/// Fails (never skips) when the test cannot run here: the README's test command installs what
/// the tests need and CI runs as root.
pub fn require_root_and_tools(tools: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (run scripts/test.sh as root)"
    );
    for t in tools {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
            .unwrap_or(false)
            || Path::new("/usr/sbin").join(t).is_file();
        assert!(found, "{t} is missing (scripts/test.sh installs it)");
    }
}

/// A temporary directory that `user` owns.
pub fn scratch_dir_for(user: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mboxfs-test")
        .tempdir()
        .unwrap();
    chown_tree(dir.path(), user);
    dir
}

/// `chown -R user:<user's group> path`.
pub fn chown_tree(path: &Path, user: &str) {
    let status = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}
