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

/// A legacy host made by `mkcorpus.py` (seeded, so the same every time).
pub struct Host {
    pub dir: tempfile::TempDir,
}

impl Host {
    pub fn make(args: &[&str]) -> Host {
        let dir = tempfile::Builder::new()
            .prefix("mboxfs-host")
            .tempdir()
            .unwrap();
        let status = std::process::Command::new("python3")
            .arg(shared().join("tools/mkcorpus.py"))
            .arg(dir.path())
            .args(args)
            .status()
            .expect("python3");
        assert!(status.success(), "mkcorpus.py failed");
        Host { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The source options that point mboxfs at this host.
    pub fn source_args(&self) -> Vec<String> {
        let d = self.path().display();
        vec![
            format!("--inbox={d}/var/spool/mail/%u"),
            format!("--home={d}/home/%u"),
            format!("--userlist={d}/userlist"),
            format!("--folderlist={d}/folderlist"),
            "--timezone=UTC".into(),
        ]
    }

    pub fn manifest(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path().join("manifest.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn users(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("userlist"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Runs the built `mboxfs` binary.
pub fn mboxfs() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_mboxfs"))
}
