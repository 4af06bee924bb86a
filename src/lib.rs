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
pub mod mbox;
mod mmap;
pub mod model;
pub mod mount;
pub mod names;
mod parallel;
pub mod plan;
pub mod scan;
pub mod source;
pub mod sys;
pub mod tz;

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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format_timestamp_secs()
        .init();
    let result = match cli.command {
        Command::Plan(a) => plan_command(a),
        Command::Mount(a) => mount_command(a),
        Command::Materialize(_) | Command::Verify(_) => Err("not yet".to_string()),
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
    mount::run(
        tree,
        mount::MountConfig {
            mountpoint: a.mountpoint,
            threads: a.threads,
            fs: fs::FsOptions {
                index: config.index,
                state_dir,
                recheck: std::time::Duration::from_millis(a.recheck_ms),
                trust_owners: config.tree.trust_owners,
                lock,
            },
        },
    )?;
    Ok(EXIT_OK)
}
