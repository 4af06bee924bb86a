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
pub mod dovecot_config;
pub mod fromline;
pub mod fs;
mod fuse;
pub mod guard;
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
mod notify;
mod parallel;
pub mod plan;
pub mod preflight;
pub mod safe;
pub mod scan;
pub mod shard;
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

/// The log filter for `-q`/`-v`: warnings and errors by default, on standard error only (never
/// standard output, which carries listings and configurations).
fn log_filter(quiet: bool, verbose: u8) -> String {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    // fuser's own warnings (unimplemented calls, an unmount already done by `umount`) are noise
    // for an admin; -vv or RUST_LOG=fuser=warn shows them.
    if verbose >= 2 {
        level.to_string()
    } else {
        format!("{level},fuser=error")
    }
}

/// Runs one command.
pub fn run(cli: Cli) -> ExitCode {
    // Colour only on a terminal (env_logger's default; RUST_LOG_STYLE=never turns it off).
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(log_filter(cli.quiet, cli.verbose)),
    )
    .format_timestamp_secs()
    .target(env_logger::Target::Stderr)
    .init();
    let result = match cli.command {
        Command::Plan(a) => plan_command(a),
        Command::Mount(a) => mount_command(a),
        Command::Materialize(a) => materialize_command(a),
        Command::Verify(a) => verify_command(a),
        Command::DovecotConfig(a) => dovecot_config_command(a),
        Command::GenerateDocs(a) => generate_docs(&a.out),
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

/// Loads the lists and lays out the trees (of one shard), or explains why not.
fn load_tree(
    source: &cli::SourceArgs,
    mode: ReadMode,
    shard: Option<shard::Shard>,
) -> Result<(model::Tree, cli::SourceConfig), String> {
    let mut config = source.config(mode)?;
    config.layout.shard = shard;
    let host = config.layout.load().map_err(|e| e.to_string())?;
    if let Some(s) = shard {
        log::info!("shard {s}: {} users", host.users.len());
    }
    let tree = model::Tree::build(&host, &config.tree);
    Ok((tree, config))
}

/// The plan as JSON, with the DEST checks when there are some.
#[derive(serde::Serialize)]
struct PlanJson<'a> {
    #[serde(flatten)]
    plan: &'a plan::Plan,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest: Option<&'a preflight::DestReport>,
}

fn plan_command(a: cli::PlanArgs) -> Result<u8, String> {
    let (tree, config) = load_tree(&a.source, ReadMode::Map, a.shard)?;
    let mut plan = plan::Plan::make(
        &tree,
        &config.index,
        a.jobs.unwrap_or_else(cli::default_jobs),
    );
    let state = a
        .state_dir
        .or_else(|| Some(mount::default_state_dir()).filter(|d| d.is_dir()));
    if let Some(state) = state {
        plan.add_state(&tree, &state);
    }
    let dest = a.dest.as_deref().map(|d| preflight::check(&plan, &tree, d));
    let mut out = std::io::stdout().lock();
    let written = if a.json {
        let json = PlanJson {
            plan: &plan,
            dest: dest.as_ref(),
        };
        serde_json::to_writer_pretty(&mut out, &json)
            .map_err(std::io::Error::from)
            .and_then(|_| std::io::Write::write_all(&mut out, b"\n"))
    } else {
        plan.write_text(&mut out).and_then(|()| match &dest {
            Some(d) => d.write_text(&mut out),
            None => Ok(()),
        })
    };
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(format!("writing the plan: {e}")),
        Ok(()) => {}
    }
    Ok(
        if plan.has_errors() || dest.as_ref().is_some_and(|d| d.failed()) {
            EXIT_PROBLEMS
        } else {
            EXIT_OK
        },
    )
}

fn mount_command(a: cli::MountArgs) -> Result<u8, String> {
    let (tree, config) = load_tree(&a.source, ReadMode::Pread, None)?;
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
    notify::ready_when_mounted(&a.mountpoint);
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
    let (tree, config) = load_tree(&a.source, ReadMode::Map, a.shard)?;
    report_problems(&tree);
    // Nothing is written while Dovecot's (users') changes are in DEST, unless the admin says so.
    let found = guard::check(&tree, &a.dest);
    if !found.is_empty() {
        if !a.revert_user_changes {
            return Err(guard::refusal(&a.dest, &found));
        }
        log::warn!(
            "{}: reverting what Dovecot changed since mboxfs wrote it (--revert-user-changes):",
            a.dest.display()
        );
        for f in &found {
            log::warn!("  {f}");
        }
    }
    let opts = materialize::Options {
        jobs: a.jobs.unwrap_or(materialize::DEFAULT_JOBS),
        fsync: a.fsync,
        force: a.force,
        progress: true,
    };
    // The guard's stamps never stop a run (a full disk must not keep the admin from finishing
    // the copy); without them, the next check falls back to what only Dovecot writes.
    if let Err(e) = guard::begin(&tree, &a.dest) {
        log::warn!("{}: cannot mark the run as started: {e}", a.dest.display());
        guard::forget(&tree, &a.dest);
    }
    let result = materialize::run(&tree, &config.index, &a.dest, &opts);
    // A run that went through (even with failed folders) wrote only what mboxfs writes: from
    // here on, changes are someone else's. One that could not run (DEST locked by another run)
    // leaves the stamps saying `running`, which the next check reads safely.
    if result.is_ok()
        && let Err(e) = guard::finish(&tree, &a.dest)
    {
        log::warn!("{}: cannot mark the run as finished: {e}", a.dest.display());
    }
    let s = result?;
    for (what, why) in &s.failures {
        eprintln!("mboxfs: FAILED {what}: {why}");
    }
    let secs = s.elapsed.as_secs_f64().max(0.001);
    if s.wrote_nothing() && s.failures.is_empty() {
        println!(
            "{} is already complete: {} folders, {} messages; nothing written",
            a.dest.display(),
            s.folders,
            s.counts.messages
        );
    } else {
        println!(
            "{}: {} folders, {} messages ({} written, {}; {} renamed, {} removed, {} control files) in {:.1} s, {}/s; {} failed",
            a.dest.display(),
            s.folders,
            s.counts.messages,
            s.counts.written,
            plan::human_bytes(s.counts.written_bytes),
            s.counts.renamed,
            s.counts.removed,
            s.counts.control_written,
            secs,
            plan::human_bytes((s.counts.written_bytes as f64 / secs) as u64),
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
    let (tree, config) = load_tree(&a.source, ReadMode::Map, a.shard)?;
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
    drop(out);
    let found = guard::check(&tree, &a.dest);
    if !found.is_empty() {
        let users = guard::users_with_findings(&found);
        eprintln!(
            "mboxfs: note: Dovecot has used {} since mboxfs wrote it ({} user{}; e.g. {}): \
             differences may be users' work, which materialize will not revert unless told \
             --revert-user-changes",
            a.dest.display(),
            users.len(),
            if users.len() == 1 { "" } else { "s" },
            found[0]
        );
    }
    Ok(if bad == 0 { EXIT_OK } else { EXIT_PROBLEMS })
}

fn dovecot_config_command(a: cli::DovecotConfigArgs) -> Result<u8, String> {
    use dovecot_config::{Options, Target, Users};
    if a.print_acl {
        print!("{}", dovecot_config::READONLY_ACL);
        return Ok(EXIT_OK);
    }
    let target = match &a.dest {
        Some(dest) => Target::Production { dest: dest.clone() },
        None => Target::Preview {
            mountpoint: a.mountpoint.clone(),
            writable: a.writable,
        },
    };
    let users = if a.virtual_users {
        let owner = cli::parse_owner(&a.owner).map_err(|e| {
            format!(
                "{e}: virtual users' mail belongs to one system user; create it (useradd --system \
                 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin vmail) or give \
                 --owner USER[:GROUP], the same as the mount's or materialize's --owner"
            )
        })?;
        Users::Virtual {
            passwd_file: a.passwd_file.clone(),
            owner,
            owner_name: a.owner.clone(),
        }
    } else {
        Users::System
    };
    let read_only = matches!(
        target,
        Target::Preview {
            writable: false,
            ..
        }
    );
    let command = std::iter::once("mboxfs".to_string())
        .chain(
            std::env::args()
                .skip(1)
                .filter(|w| w != "-q" && w != "--quiet"),
        )
        .map(|w| dovecot_config::shell_word(&w))
        .collect::<Vec<_>>()
        .join(" ");
    let opts = Options {
        port: a
            .port
            .unwrap_or_else(|| dovecot_config::default_port(&target)),
        target,
        users,
        listen: a.listen.clone(),
        acl_file: a.acl_file.clone(),
        homes: a.homes.clone(),
        volatile_dir: a.volatile_dir.clone(),
        base_dir: a.base_dir.clone(),
        log_path: a.log_path.clone(),
        tls: a.ssl_cert.clone().zip(a.ssl_key.clone()),
        allow_plaintext: a.allow_plaintext,
        command,
    };
    let text = dovecot_config::render(&opts)?;
    if read_only
        && std::fs::read_to_string(&a.acl_file).ok().as_deref()
            != Some(dovecot_config::READONLY_ACL)
    {
        log::warn!(
            "{} is missing or differs from `mboxfs dovecot-config --print-acl`: without it the \
             preview is not read-only",
            a.acl_file.display()
        );
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing: {e}")),
        _ => Ok(EXIT_OK),
    }
}

/// Man pages and shell completions, from the clap definition this binary runs with.
fn generate_docs(out: &std::path::Path) -> Result<u8, String> {
    use clap::CommandFactory;
    let err = |what: &std::path::Path, e: std::io::Error| format!("{}: {e}", what.display());
    let man = out.join("man");
    let completions = out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).map_err(|e| err(d, e))?;
    }
    clap_mangen::generate_to(Cli::command(), &man).map_err(|e| err(&man, e))?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Cli::command(), "mboxfs", &completions)
            .map_err(|e| err(&completions, e))?;
    }
    Ok(EXIT_OK)
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
        "{}: {total} changes thrown away; every folder of a user who had any gets a new UIDVALIDITY at the next mount",
        state.display()
    );
    Ok(EXIT_OK)
}
