//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod imap;
pub mod uw;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

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
        // A real spool is not being written the moment it is mounted: date the files a minute
        // back, so that no last message is held back as possibly incomplete.
        let minute_ago = SystemTime::now() - Duration::from_secs(60);
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    set_mtime(&e.path(), minute_ago);
                }
            }
        }
        Host { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The source options that point mboxfs at this host.
    pub fn source_args(&self) -> Vec<String> {
        source_args_at(self.path(), "var/spool/mail")
    }

    /// `user`'s inbox (`var/spool/mail/<user>`).
    pub fn inbox(&self, user: &str) -> PathBuf {
        self.path().join("var/spool/mail").join(user)
    }

    /// Gives mkcorpus's user `from` to the system user `to`: renames its inbox and home, puts
    /// `to` for `from` in the user list, the folder list and the manifest, and makes `to` the
    /// owner of its inbox and home.
    pub fn rename_user(&self, from: &str, to: &str) {
        let p = self.path();
        std::fs::rename(self.inbox(from), self.inbox(to)).unwrap();
        std::fs::rename(p.join("home").join(from), p.join("home").join(to)).unwrap();
        for file in ["userlist", "folderlist", "manifest.jsonl"] {
            let text = std::fs::read_to_string(p.join(file))
                .unwrap()
                .replace(from, to);
            std::fs::write(p.join(file), text).unwrap();
        }
        chown_tree(&self.inbox(to), to);
        chown_tree(&p.join("home").join(to), to);
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

/// The source options for a host under `root`: inboxes in `root/<spool>/<user>`, homes in
/// `root/home/<user>`, the lists `root/userlist` and `root/folderlist`, dates in UTC.
pub fn source_args_at(root: &Path, spool: &str) -> Vec<String> {
    let d = root.display();
    vec![
        format!("--inbox={d}/{spool}/%u"),
        format!("--home={d}/home/%u"),
        format!("--userlist={d}/userlist"),
        format!("--folderlist={d}/folderlist"),
        "--timezone=UTC".into(),
    ]
}

/// A small legacy host written by hand in a directory the test made: the inboxes in
/// `<spool>/<user>` (the test writes them), a home for each user, and the two lists.
pub struct HandHost {
    pub dir: tempfile::TempDir,
    spool: &'static str,
}

impl HandHost {
    /// Makes `<spool>/` and `home/<user>` for each of `users` in `dir`, and writes the user list
    /// (`users`, one a line) and the folder list (`folderlist`, as it is).
    pub fn new(
        dir: tempfile::TempDir,
        spool: &'static str,
        users: &[&str],
        folderlist: &str,
    ) -> HandHost {
        let p = dir.path();
        std::fs::create_dir_all(p.join(spool)).unwrap();
        for u in users {
            std::fs::create_dir_all(p.join("home").join(u)).unwrap();
        }
        let userlist: String = users.iter().map(|u| format!("{u}\n")).collect();
        std::fs::write(p.join("userlist"), userlist).unwrap();
        std::fs::write(p.join("folderlist"), folderlist).unwrap();
        HandHost { dir, spool }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `user`'s inbox.
    pub fn inbox(&self, user: &str) -> PathBuf {
        self.path().join(self.spool).join(user)
    }

    /// `user`'s home.
    pub fn home(&self, user: &str) -> PathBuf {
        self.path().join("home").join(user)
    }

    /// The source options that point mboxfs at this host.
    pub fn source_args(&self) -> Vec<String> {
        source_args_at(self.path(), self.spool)
    }

    /// [`source_args`](Self::source_args), then `extra`.
    pub fn source_args_with(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.source_args();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }
}

/// Sets the modification time of the file at `path`.
pub fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

/// The first entry `read_dir` gives of `dir` (which must have one).
pub fn first_entry(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap_or_else(|| panic!("{} is empty", dir.display()))
        .path()
}

/// Runs the built `mboxfs` binary.
pub fn mboxfs() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_mboxfs"))
}

/// Runs `mboxfs CMD DEST SOURCE... EXTRA...` to its end (`materialize` or `verify` DEST; `mount`
/// MOUNTPOINT when it is to fail).
pub fn run(cmd: &str, dest: &Path, source: &[String], extra: &[&str]) -> std::process::Output {
    mboxfs()
        .arg(cmd)
        .arg(dest)
        .args(source)
        .args(extra)
        .output()
        .unwrap()
}

/// All a finished command printed: its standard output, then its standard error.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `mboxfs plan --json SOURCE... EXTRA...`, which must succeed: the plan it prints.
pub fn plan_json(source: &[String], extra: &[&str]) -> serde_json::Value {
    let out = mboxfs()
        .arg("plan")
        .arg("--json")
        .args(source)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `python3 -c SCRIPT`, which must succeed; returns what it printed.
pub fn python(script: &str) -> String {
    python_with(script, &[])
}

/// Runs `python3 -c SCRIPT ARGS...`, which must succeed; returns what it printed.
pub fn python_with(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Checks `done` every `every` until it holds; fails with `what()` once `limit` has passed.
pub fn wait_until(
    limit: Duration,
    every: Duration,
    mut done: impl FnMut() -> bool,
    what: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{}", what());
        std::thread::sleep(every);
    }
}

/// Sends signal `sig` to the process `pid` (one this test started).
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory preconditions; the caller names its own process.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A file system a test mounted (a tmpfs, a bind mount): unmounted (lazily) when dropped.
pub struct MountGuard {
    target: PathBuf,
}

impl MountGuard {
    /// `mount -t tmpfs -o size=SIZE tmpfs TARGET`.
    pub fn tmpfs(target: &Path, size: &str) -> MountGuard {
        run_mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            target,
        );
        MountGuard {
            target: target.to_path_buf(),
        }
    }

    /// `mount --bind SOURCE TARGET`, then the bind remounted read-only.
    pub fn read_only_bind(source: &Path, target: &Path) -> MountGuard {
        let ok = std::process::Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount --bind {} {}", source.display(), target.display());
        let guard = MountGuard {
            target: target.to_path_buf(),
        };
        run_mount(&["-o", "remount,bind,ro"], target);
        guard
    }

    /// Gives the tmpfs a new size (`mount -t tmpfs -o remount,size=SIZE tmpfs TARGET`).
    pub fn resize_tmpfs(&self, size: &str) {
        run_mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("remount,size={size}"),
                "tmpfs",
            ],
            &self.target,
        );
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.target)
            .status();
    }
}

/// A DEST that fills up: an empty 3 MB tmpfs, and a mkcorpus host with more mail than that
/// (2 users, 4 folders, 60 messages each, every fifth one big; seed 4). Unmounted on drop.
pub struct SmallDisk {
    pub host: Host,
    /// The tmpfs's mountpoint.
    pub dest: PathBuf,
    pub tmpfs: MountGuard,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn new() -> SmallDisk {
        let host = Host::make(&[
            "--users",
            "2",
            "--folders",
            "4",
            "--messages",
            "60",
            "--big-every",
            "5",
            "--seed",
            "4",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("small");
        std::fs::create_dir(&dest).unwrap();
        let tmpfs = MountGuard::tmpfs(&dest, "3m");
        SmallDisk {
            host,
            dest,
            tmpfs,
            _dir: dir,
        }
    }
}

/// `mount ARGS... TARGET`, which must succeed.
fn run_mount(args: &[&str], target: &Path) {
    let ok = std::process::Command::new("mount")
        .args(args)
        .arg(target)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount {args:?} {}", target.display());
}

/// Whether something is mounted at `path`.
pub fn is_mounted(path: &Path) -> bool {
    let want = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(&m.replace("\\040", " ")) == want)
}

/// A directory others may enter (for mountpoints Dovecot reaches as another user).
pub fn open_dir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// `mboxfs mount`, served by a child process.
pub struct Mount {
    pub mountpoint: PathBuf,
    pub state: tempfile::TempDir,
    _dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    stderr: PathBuf,
}

impl Mount {
    pub fn start(source_args: &[String], extra: &[&str]) -> Mount {
        Self::start_under(&[], source_args, extra)
    }

    /// Like [`start`](Self::start), with the mount run under `wrapper` (e.g. `prlimit ...`).
    pub fn start_under(wrapper: &[&str], source_args: &[String], extra: &[&str]) -> Mount {
        let dir = open_dir("mboxfs-mnt");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let state = tempfile::Builder::new()
            .prefix("mboxfs-state")
            .tempdir()
            .unwrap();
        let stderr = dir.path().join("mount.log");
        let mut m = Mount {
            mountpoint,
            state,
            _dir: dir,
            child: None,
            stderr,
        };
        m.spawn(wrapper, source_args, extra);
        m
    }

    /// Unmounts (SIGTERM) and mounts again at the same place with the same state directory.
    pub fn remount(&mut self, source_args: &[String], extra: &[&str]) {
        if self.child.is_some() {
            let status = self.stop_with(libc::SIGTERM);
            assert!(status.success(), "mount exited with {status}");
        }
        self.spawn(&[], source_args, extra);
    }

    fn spawn(&mut self, wrapper: &[&str], source_args: &[String], extra: &[&str]) {
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = std::process::Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_mboxfs"));
                c
            }
            None => mboxfs(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .unwrap();
        let child = cmd
            .arg("mount")
            .arg(&self.mountpoint)
            .arg("--state-dir")
            .arg(self.state.path())
            .args(source_args)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let (mountpoint, stderr) = (&self.mountpoint, &self.stderr);
        let log = || std::fs::read_to_string(stderr).unwrap_or_default();
        let child = self.child.as_mut().unwrap();
        wait_until(
            Duration::from_secs(20),
            Duration::from_millis(20),
            || {
                if is_mounted(mountpoint) {
                    return true;
                }
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("mboxfs mount exited ({status}):\n{}", log());
                }
                false
            },
            || format!("not mounted after 20 s:\n{}", log()),
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Whether the serving process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Sends a signal and waits for the process to end; returns its exit status.
    pub fn stop_with(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        self::signal(child.id(), signal);
        wait_for(&mut child, 20)
    }

    /// Waits for the process to end by itself (after an external unmount).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        wait_for(self.child.as_mut().expect("running"), 20)
    }
}

fn wait_for(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not end within {secs} s", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c);
        }
        if is_mounted(&self.mountpoint) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

/// Asks a child to stop (SIGTERM), and kills it if it has not within 10 seconds.
fn stop_child(mut c: std::process::Child) {
    signal(c.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Dovecot (imap only) on 127.0.0.1, any user logging in with password `pw`.
pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<std::process::Child>,
    /// Homes of the users when they are all `nobody` (virtual mail).
    _homes: Option<tempfile::TempDir>,
}

impl Dovecot {
    /// `userdb` is the args of a static userdb (`uid=... gid=... home=...`), or `None` for the
    /// passwd userdb (each user's own uid).
    pub fn start(mail_location: &str, userdb: Option<&str>, extra_conf: &str) -> Dovecot {
        require_root_and_tools(&["dovecot"]);
        let dir = open_dir("mboxfs-dovecot");
        let port = free_port();
        let d = dir.path().display();
        let userdb = match userdb {
            Some(args) => format!("userdb {{\n  driver = static\n  args = {args}\n}}\n"),
            None => "userdb {\n  driver = passwd\n}\n".to_string(),
        };
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let conf = format!(
            "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {d}/run\ninstance_name = {name}\n\
             log_path = {d}/dovecot.log\nssl = no\ndisable_plaintext_auth = no\n\
             auth_mechanisms = plain\nmail_location = {mail_location}\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n  prefix =\n}}\n\
             passdb {{\n  driver = static\n  args = password=pw\n}}\n{userdb}\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  \
             inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service stats {{\n  unix_listener stats-writer {{\n    mode = 0666\n  }}\n}}\n{extra_conf}\n"
        );
        std::fs::write(dir.path().join("dovecot.conf"), conf).unwrap();
        Dovecot::serve(dir, port)
    }

    /// Runs Dovecot with the configuration `dir/dovecot.conf`, which logs to `dir/dovecot.log`
    /// and listens on 127.0.0.1:`port`; returns once it listens.
    pub fn serve(dir: tempfile::TempDir, port: u16) -> Dovecot {
        let child = std::process::Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(dir.path().join("dovecot.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("dovecot (scripts/test.sh installs dovecot-imapd)");
        let mut dv = Dovecot {
            dir,
            port,
            child: Some(child),
            _homes: None,
        };
        let child = dv.child.as_mut().unwrap();
        let d = dv.dir.path();
        wait_until(
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return true;
                }
                if let Some(s) = child.try_wait().unwrap() {
                    panic!(
                        "dovecot exited ({s}): {}\n{}",
                        std::fs::read_to_string(d.join("stderr")).unwrap_or_default(),
                        std::fs::read_to_string(d.join("dovecot.log")).unwrap_or_default()
                    );
                }
                false
            },
            || "dovecot did not listen within 20 s".to_string(),
        );
        dv
    }

    /// Every user is `nobody` (virtual mail, as `--owner nobody` mounts and writes it).
    pub fn for_nobody(mail_location: &str, extra_conf: &str) -> Dovecot {
        let homes = scratch_dir_for("nobody");
        let userdb = format!("uid=nobody gid=nogroup home={}/%u", homes.path().display());
        let mut dv = Dovecot::start(mail_location, Some(&userdb), extra_conf);
        dv._homes = Some(homes);
        dv
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Log lines that are not Info.
    pub fn complaints(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                ["Error:", "Warning:", "Fatal:", "Panic:"]
                    .iter()
                    .any(|k| l.contains(k))
            })
            .map(str::to_string)
            .collect()
    }

    /// Runs `imapcheck.py check --bodies`; returns (output, passed, failed).
    pub fn imapcheck(&self, users: &Path, manifest: &Path) -> (String, usize, usize) {
        let out = std::process::Command::new("python3")
            .arg(shared().join("tools/imapcheck.py"))
            .args(["check", "--bodies", "--port", &self.port.to_string()])
            .arg("--users")
            .arg(users)
            .arg("--manifest")
            .arg(manifest)
            .output()
            .unwrap();
        let text = text(&out);
        let last = text
            .lines()
            .rev()
            .find(|l| l.ends_with(" failed"))
            .unwrap_or_else(|| panic!("no result line:\n{text}"));
        let nums: Vec<usize> = last
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        (text.clone(), nums[0], nums[1])
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c);
        }
    }
}

/// sha256 of every file under `dir`, by path.
pub fn tree_hashes(dir: &Path) -> Vec<(PathBuf, String)> {
    use sha2::Digest;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let h = sha2::Sha256::digest(std::fs::read(e.path()).unwrap());
                out.push((e.path(), format!("{h:x}")));
            }
        }
    }
    out.sort();
    out
}

/// Runs a shell command as another user; returns (success, stderr).
pub fn as_user(user: &str, script: &str) -> (bool, String) {
    let gid = String::from_utf8(
        std::process::Command::new("id")
            .args(["-g", user])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={}", gid.trim()))
        .args(["--init-groups", "sh", "-c", script])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A system user for tests (made once, kept): returns its uid.
pub fn ensure_user(name: &str) -> u32 {
    let id = || {
        std::process::Command::new("id")
            .args(["-u", name])
            .output()
            .unwrap()
    };
    let out = id();
    if !out.status.success() {
        let ok = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok || id().status.success(), "useradd {name} failed");
    }
    String::from_utf8(id().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Test users held by a test: each is made when first needed, and removed (`userdel`) when the
/// last test of this process holding it ends, if this process made it.
pub struct TestUsers {
    pub uids: Vec<u32>,
}

static HELD_USERS: std::sync::Mutex<(usize, Vec<String>)> = std::sync::Mutex::new((0, Vec::new()));

impl TestUsers {
    pub fn hold(names: &[&str]) -> TestUsers {
        let mut held = HELD_USERS.lock().unwrap_or_else(|e| e.into_inner());
        held.0 += 1;
        let mut uids = Vec::new();
        for name in names {
            let existed = std::process::Command::new("id")
                .args(["-u", name])
                .output()
                .unwrap()
                .status
                .success();
            uids.push(ensure_user(name));
            if !existed {
                held.1.push(name.to_string());
            }
        }
        TestUsers { uids }
    }
}

impl Drop for TestUsers {
    fn drop(&mut self) {
        let mut held = HELD_USERS.lock().unwrap_or_else(|e| e.into_inner());
        held.0 -= 1;
        if held.0 == 0 {
            for name in held.1.drain(..) {
                let _ = std::process::Command::new("userdel").arg(&name).status();
            }
        }
    }
}
