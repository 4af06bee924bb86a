//! `plan --dest`: the paper's checks before copying, on real file systems: a small ext4 with
//! too few inodes (loop device) fails with the numbers, an ext3 states its subdirectory limit,
//! a roomy DEST passes, and a DEST that is not empty and not mboxfs's fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Host, mboxfs};

/// A file system image on a loop device, mounted; all undone on drop.
struct LoopFs {
    _dir: tempfile::TempDir,
    device: String,
    mountpoint: PathBuf,
}

impl LoopFs {
    fn make(fstype: &str, megabytes: u64, mkfs_args: &[&str]) -> LoopFs {
        let dir = tempfile::Builder::new()
            .prefix("mboxfs-loop")
            .tempdir()
            .unwrap();
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(megabytes << 20)
            .unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let device = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let fs = LoopFs {
            _dir: dir,
            device,
            mountpoint,
        };
        let ok = Command::new(format!("mkfs.{fstype}"))
            .arg("-q")
            .args(mkfs_args)
            .arg(&fs.device)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfs.{fstype}");
        let ok = Command::new("mount")
            .arg(&fs.device)
            .arg(&fs.mountpoint)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount {}", fs.device);
        fs
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mountpoint).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

fn plan(host: &Host, dest: &Path, json: bool) -> (Option<i32>, String) {
    let out = mboxfs()
        .arg("plan")
        .arg("--dest")
        .arg(dest)
        .args(json.then_some("--json"))
        .args(host.source_args())
        .output()
        .unwrap();
    (out.status.code(), common::text(&out))
}

fn check_line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} check in\n{text}"))
}

#[test]
fn too_few_inodes_on_a_small_file_system_fail_with_the_numbers() {
    common::require_root_and_tools(&["losetup", "mkfs.ext4", "mkfs.ext3", "dovecot"]);
    let host = Host::make(&[
        "--users",
        "3",
        "--folders",
        "3",
        "--messages",
        "20",
        "--seed",
        "41",
    ]);
    // 64 inodes, of which ext4 keeps 11: far fewer than 3 users' 240 messages need.
    let small = LoopFs::make("ext4", 16, &["-N", "64"]);
    let dest = small.mountpoint.join("mail2");
    let (code, text) = plan(&host, &dest, false);
    assert_eq!(code, Some(1), "{text}");
    let inodes = check_line(&text, "inodes");
    assert!(inodes.trim_start().starts_with("FAILED"), "{inodes}");
    assert!(inodes.contains(" free"), "{inodes}");
    let messages: usize = host.manifest().len();
    assert!(
        inodes.contains(&format!("({messages} messages")),
        "{inodes}\n{text}"
    );
    assert!(text.contains("(ext4 on /dev/loop"), "{text}");
    assert!(check_line(&text, "destination").contains("does not exist yet"));
    let dovecot = check_line(&text, "dovecot");
    assert!(
        dovecot.trim_start().starts_with("ok") && dovecot.contains("2."),
        "{dovecot}"
    );
    // The same in JSON, with the numbers.
    let (code, json) = plan(&host, &dest, true);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let c = v["dest"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "inodes")
        .unwrap()
        .clone();
    assert_eq!(c["status"], "failed");
    assert!(
        c["needed"].as_u64().unwrap() > c["available"].as_u64().unwrap(),
        "{c}"
    );
    assert!(c["available"].as_u64().unwrap() <= 64);
    drop(small);

    // ext3: its 31,998-subdirectory limit is stated (and not reached by 3 users).
    let ext3 = LoopFs::make("ext3", 16, &[]);
    let (code, text) = plan(&host, &ext3.mountpoint.join("mail2"), false);
    assert_eq!(code, Some(0), "{text}");
    let sub = check_line(&text, "subdirectories");
    assert!(
        sub.contains("ext3 holds at most 31,998 subdirectories"),
        "{sub}"
    );
    drop(ext3);

    // A roomy DEST passes; a foreign, non-empty one fails.
    let roomy = tempfile::tempdir().unwrap();
    let (code, text) = plan(&host, roomy.path(), false);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("DEST checks: 0 failed"), "{text}");
    std::fs::write(roomy.path().join("somebodys-file"), "x").unwrap();
    let (code, text) = plan(&host, roomy.path(), false);
    assert_eq!(code, Some(1), "{text}");
    assert!(check_line(&text, "destination").contains("not made by mboxfs"));
}
