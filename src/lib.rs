//! mboxfs: move a UW-IMAP mail host (mbox files) to Dovecot Maildir++ without losing a message,
//! a flag or a UID.
//!
//! The layers, from the bytes up:
//! - [`fromline`] and [`scan`]: a pure scanner that finds messages and status headers;
//! - [`index`]: a folder's messages as IMAP saw them (UIDs, flags, keywords, dates);
//! - [`mbox`]: opening a source file read-only, indexing it, reading served bytes.
//! - [`source`], [`names`] and [`model`]: the host's users and folders, and the Maildir++ trees
//!   they become, shared by [`plan`], the mount, `materialize` and `verify`.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod fromline;
pub mod fs;
mod fuse;
pub mod index;
pub mod lock;
pub mod materialize;
pub mod mbox;
pub mod mbx;
mod mmap;
pub mod mmdf;
pub mod model;
pub mod mount;
pub mod names;
mod parallel;
pub mod plan;
pub mod safe;
pub mod scan;
pub mod source;
pub mod sys;
pub mod tz;
pub mod verify;

use std::io::Write as _;
use std::process::ExitCode;

use cli::{Cli, Command};
use mbox::ReadMode;

/// Exit status: everything went well.
pub const EXIT_OK: u8 = 0;
/// Exit status: the job ran, but something failed or differs (see the output).
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit status: the job could not run (bad options, bad lists).
pub const EXIT_FATAL: u8 = 2;

/// Runs one command.
pub fn run(cli: Cli) -> ExitCode {
    let default_level = match cli.command {
        Command::Mount(_) | Command::Materialize(_) => "info",
        _ => "warn",
    };
    // fuser's own warnings (unimplemented calls, an unmount already done by `umount`) are noise
    // for an admin; RUST_LOG=fuser=warn shows them.
    let default_filter = format!("{default_level},fuser=error");
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
        .format_timestamp_secs()
        .init();
    let result = match cli.command {
        Command::Plan(a) => plan_command(a),
        Command::Mount(a) => mount_command(a),
        Command::Materialize(a) => materialize_command(a),
        Command::Verify(a) => verify_command(a),
        Command::DiscardChanges(a) => discard_command(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mboxfs: {e}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

/// Loads the lists and lays out the trees, or explains why not.
fn load_tree(
    source: &cli::SourceArgs,
    mode: ReadMode,
) -> Result<(model::Tree, cli::SourceConfig), String> {
    let config = source.config(mode)?;
    let host = config.layout.load().map_err(|e| e.to_string())?;
    let tree = model::Tree::build(&host, &config.tree);
    Ok((tree, config))
}

fn plan_command(a: cli::PlanArgs) -> Result<u8, String> {
    let (tree, config) = load_tree(&a.source, ReadMode::Map)?;
    let plan = plan::Plan::make(
        &tree,
        &config.index,
        a.jobs.unwrap_or_else(cli::default_jobs),
    );
    let mut out = std::io::stdout().lock();
    let written = if a.json {
        serde_json::to_writer_pretty(&mut out, &plan)
            .map_err(std::io::Error::from)
            .and_then(|_| std::io::Write::write_all(&mut out, b"\n"))
    } else {
        plan.write_text(&mut out)
    };
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(format!("writing the plan: {e}")),
        Ok(()) => {}
    }
    Ok(if plan.has_errors() {
        EXIT_PROBLEMS
    } else {
        EXIT_OK
    })
}

fn mount_command(a: cli::MountArgs) -> Result<u8, String> {
    let (tree, config) = load_tree(&a.source, ReadMode::Pread)?;
    for p in tree
        .all_problems()
        .filter(|p| p.severity >= source::Severity::Warning)
    {
        log::warn!("{p}");
    }
    let lock = match a.lock {
        cli::LockArg::None => lock::LockMode::None,
        cli::LockArg::Fcntl => lock::LockMode::Fcntl,
        cli::LockArg::Dotlock => lock::LockMode::Dotlock,
    };
    let state_dir = a.state_dir.unwrap_or_else(mount::default_state_dir);
    // Users and folders added to the lists later appear without a remount.
    let lists = {
        let config = config.clone();
        fs::Lists {
            files: std::iter::once(config.layout.userlist.clone())
                .chain(config.layout.folderlist.clone())
                .collect(),
            every: config
                .layout
                .folderlist
                .is_none()
                .then_some(std::time::Duration::from_secs(30)),
            load: Box::new(move || {
                let host = config.layout.load().map_err(|e| e.to_string())?;
                Ok(model::Tree::build(&host, &config.tree))
            }),
        }
    };
    mount::run(
        tree,
        mount::MountConfig {
            mountpoint: a.mountpoint,
            threads: a.threads.unwrap_or_else(|| cli::default_jobs().clamp(2, 8)),
            lists: Some(lists),
            fs: fs::FsOptions {
                index: config.index,
                state_dir,
                recheck: std::time::Duration::from_millis(a.recheck_ms),
                trust_owners: config.tree.trust_owners,
                lock,
                max_open: 0,
                writable: a.writable,
                state_quota: a.state_quota,
            },
        },
    )?;
    Ok(EXIT_OK)
}

fn report_problems(tree: &model::Tree) {
    for p in tree
        .all_problems()
        .filter(|p| p.severity >= source::Severity::Warning)
    {
        log::warn!("{p}");
    }
}

fn materialize_command(a: cli::MaterializeArgs) -> Result<u8, String> {
    let (tree, config) = load_tree(&a.source, ReadMode::Map)?;
    report_problems(&tree);
    let opts = materialize::Options {
        jobs: a.jobs.unwrap_or(materialize::DEFAULT_JOBS),
        fsync: a.fsync,
        force: a.force,
        progress: true,
    };
    let s = materialize::run(&tree, &config.index, &a.dest, &opts)?;
    for (what, why) in &s.failures {
        eprintln!("mboxfs: FAILED {what}: {why}");
    }
    let secs = s.elapsed.as_secs_f64().max(0.001);
    if s.wrote_nothing() && s.failures.is_empty() {
        println!(
            "{} is already complete: {} folders, {} messages; nothing written",
            a.dest.display(),
            s.folders,
            s.messages
        );
    } else {
        println!(
            "{}: {} folders, {} messages ({} written, {}; {} renamed, {} removed, {} control files) in {:.1} s, {}/s; {} failed",
            a.dest.display(),
            s.folders,
            s.messages,
            s.written,
            plan::human_bytes(s.written_bytes),
            s.renamed,
            s.removed,
            s.control_written,
            secs,
            plan::human_bytes((s.written_bytes as f64 / secs) as u64),
            s.failures.len()
        );
    }
    Ok(if s.failures.is_empty() {
        EXIT_OK
    } else {
        EXIT_PROBLEMS
    })
}

fn verify_command(a: cli::VerifyArgs) -> Result<u8, String> {
    let (tree, config) = load_tree(&a.source, ReadMode::Map)?;
    let reports = verify::run(
        &tree,
        &config.index,
        &a.dest,
        a.jobs.unwrap_or_else(cli::default_jobs),
    )?;
    let mut out = std::io::stdout().lock();
    let (mut bad, mut messages) = (0, 0);
    for r in &reports {
        messages += r.messages;
        if r.problems.is_empty() {
            continue;
        }
        bad += 1;
        let _ = writeln!(out, "{}:", r.folder);
        for p in &r.problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    let _ = writeln!(
        out,
        "{}: {} folders checked, {} messages; {}",
        a.dest.display(),
        reports.len(),
        messages,
        if bad == 0 {
            "DEST is exactly what the sources give".to_string()
        } else {
            format!("{bad} with differences")
        }
    );
    Ok(if bad == 0 { EXIT_OK } else { EXIT_PROBLEMS })
}

fn discard_command(a: cli::DiscardArgs) -> Result<u8, String> {
    let state = a.state_dir.unwrap_or_else(mount::default_state_dir);
    // Not while a mount uses it.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .open(state.join(".mboxfs.lock"))
        .map_err(|e| format!("{}: not a state directory of mboxfs ({e})", state.display()))?;
    if !lock::try_exclusive(&lock) {
        return Err(format!(
            "{}: a mount is using it; unmount it first",
            state.display()
        ));
    }
    let users: Vec<String> = if a.users.is_empty() {
        let mut v: Vec<String> = std::fs::read_dir(&state)
            .map_err(|e| format!("{}: {e}", state.display()))?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    } else {
        a.users
    };
    let mut total = 0;
    for user in &users {
        let c = fs::discard_changes(&state, user).map_err(|e| format!("{user}: {e}"))?;
        if c.total() > 0 {
            println!("{user}: {c}: thrown away");
        }
        total += c.total();
    }
    println!(
        "{}: {total} changes thrown away; folders that had any get a new UIDVALIDITY at the next mount",
        state.display()
    );
    Ok(EXIT_OK)
}
