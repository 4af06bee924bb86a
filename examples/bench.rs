//! Measurements for `scripts/bench.sh` that need the library's insides.
//!
//!   bench index-memory [source options]
//!       indexes every folder; prints messages, index heap bytes, and bytes per message.
//!   bench append-cost MBOX [ROUNDS]
//!       indexes MBOX as a mounted folder, then appends one message ROUNDS times and prints the
//!       time the mount takes to notice each (stat, fingerprint, lock, read of the new bytes,
//!       new snapshot), against reading the whole file again. MBOX is appended to.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Parser;
use mboxfs::cli::SourceArgs;
use mboxfs::fs::{FsOptions, MailFs};
use mboxfs::mbox::{self, ReadMode};
use mboxfs::model::Tree;

#[derive(Parser)]
struct IndexMemory {
    #[command(flatten)]
    source: SourceArgs,
}

fn index_memory(args: Vec<String>) {
    let a = IndexMemory::parse_from(std::iter::once("bench".to_string()).chain(args));
    let config = a.source.config(ReadMode::Map).unwrap();
    let tree = Tree::build(&config.layout.load().unwrap(), &config.tree);
    let (mut messages, mut heap, mut bytes) = (0usize, 0usize, 0u64);
    for user in &tree.users {
        for f in &user.folders {
            if let Ok((ix, id)) = f.index(&config.index) {
                messages += ix.messages.len();
                heap += ix.heap_bytes();
                bytes += id.map_or(0, |i| i.id.len);
            }
        }
    }
    println!(
        "messages={messages} mbox_bytes={bytes} index_heap_bytes={heap} bytes_per_message={:.1}",
        heap as f64 / messages.max(1) as f64
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn append_cost(args: Vec<String>) {
    let path = std::path::PathBuf::from(&args[0]);
    let rounds: usize = args.get(1).map_or(20, |r| r.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let user = "bench";
    std::fs::write(dir.path().join("userlist"), format!("{user}\n")).unwrap();
    std::fs::write(dir.path().join("folderlist"), "").unwrap();
    std::fs::create_dir_all(dir.path().join("home")).unwrap();
    let source = IndexMemory::parse_from([
        "bench".to_string(),
        format!("--inbox={}", path.display()),
        format!("--home={}/home/%u", dir.path().display()),
        format!("--userlist={}/userlist", dir.path().display()),
        format!("--folderlist={}/folderlist", dir.path().display()),
        "--timezone=UTC".into(),
        "--trust-owners".into(),
    ])
    .source;
    let config = source.config(ReadMode::Pread).unwrap();
    let tree = Tree::build(&config.layout.load().unwrap(), &config.tree);
    let fs = MailFs::new(
        tree,
        FsOptions {
            index: config.index.clone(),
            state_dir: dir.path().join("state"),
            recheck: Duration::ZERO,
            trust_owners: true,
            lock: mboxfs::lock::LockMode::Fcntl,
            max_open: 64,
            writable: false,
            state_quota: 0,
        },
        None,
    )
    .unwrap();
    // A spool is not being written as it is mounted: date the file back, so that its last
    // message is not held back as possibly incomplete.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    // As in the mount: the kernel is told what changed (here the messages are dropped).
    let (tx, rx) = std::sync::mpsc::channel();
    fs.set_invalidations(tx);
    std::thread::spawn(move || for _ in rx {});
    let len = std::fs::metadata(&path).unwrap().len();
    // A full read, as the mount does when it cannot append.
    let mut full = Vec::new();
    for _ in 0..3 {
        let (file, _) = mbox::open(&path).unwrap();
        let t = Instant::now();
        let ix = mbox::index_file(&file, len, &config.index).unwrap();
        full.push(t.elapsed());
        assert!(!ix.messages.is_empty());
    }
    let first = fs.snapshot(0).unwrap();
    let before = first.index.messages.len();
    let mut notice = Vec::new();
    for k in 0..rounds {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(
            f,
            "From bench@example.org Sat Nov 28 12:00:{:02} 2026\nSubject: appended {k}\nMessage-ID: <bench{k}@example.org>\n\nnew mail {k}\n\n",
            k % 60
        )
        .unwrap();
        drop(f);
        let t = Instant::now();
        let snap = fs.snapshot(0).unwrap();
        notice.push(t.elapsed());
        assert_eq!(
            snap.index.messages.len(),
            before + k + 1,
            "append {k} not seen"
        );
    }
    println!(
        "mbox_bytes={len} messages={before} full_index_ms={:.2} notice_append_ms_median={:.3} notice_append_ms_max={:.3}",
        median(full).as_secs_f64() * 1e3,
        median(notice.clone()).as_secs_f64() * 1e3,
        notice.iter().max().unwrap().as_secs_f64() * 1e3,
    );
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.remove(0);
    match what.as_str() {
        "index-memory" => index_memory(args),
        "append-cost" => append_cost(args),
        other => panic!("unknown measurement {other}"),
    }
}
