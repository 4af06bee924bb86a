//! `mboxfs plan`: what will be migrated, and what is wrong with the source. Writes nothing.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::index::{Store, UidValiditySource};
use crate::mbox::{IndexOptions, ReadError};
use crate::model::{Folder, Tree};
use crate::parallel;
use crate::source::{Owner, Problem, Severity};

/// One folder in the plan.
#[derive(Debug, Serialize)]
pub struct FolderPlan {
    /// The IMAP name.
    pub name: String,
    /// The Maildir++ directory, relative to the destination root.
    pub maildir: String,
    pub source: Option<PathBuf>,
    /// The store the source is in (`None`: no source read).
    pub store: Option<Store>,
    pub messages: usize,
    pub bytes: u64,
    pub uidvalidity: u32,
    pub uidvalidity_source: UidValiditySource,
    pub uid_next: u32,
    pub keywords: Vec<String>,
    /// The UIDVALIDITY a mount with the state directory given serves, when it served the folder.
    pub served_uidvalidity: Option<u32>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct UserPlan {
    pub user: String,
    pub owner: Owner,
    pub owner_from: &'static str,
    pub folders: Vec<FolderPlan>,
    pub subscriptions: Vec<String>,
    /// What testers changed through a `--writable` mount (with the state directory given).
    pub tester_changes: Option<crate::fs::TesterChanges>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub users: usize,
    pub folders: usize,
    pub messages: usize,
    pub bytes: u64,
    pub errors: usize,
    pub warnings: usize,
    pub notes: usize,
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub users: Vec<UserPlan>,
    pub problems: Vec<Problem>,
    pub totals: Totals,
}

impl Plan {
    /// Indexes every folder (`jobs` at once) and collects the plan.
    pub fn make(tree: &Tree, opts: &IndexOptions, jobs: usize) -> Plan {
        let work: Vec<(usize, &Folder)> = tree
            .users
            .iter()
            .enumerate()
            .flat_map(|(u, user)| user.folders.iter().map(move |f| (u, f)))
            .collect();
        let mut planned = parallel::map(&work, jobs, |(u, f)| {
            folder_plan(&tree.users[*u].name, f, opts)
        })
        .into_iter();
        let mut totals = Totals::default();
        let users: Vec<UserPlan> = tree
            .users
            .iter()
            .map(|u| {
                let folders: Vec<FolderPlan> = planned.by_ref().take(u.folders.len()).collect();
                UserPlan {
                    user: u.name.clone(),
                    owner: u.owner,
                    owner_from: u.owner_from,
                    subscriptions: u
                        .subscriptions
                        .iter()
                        .map(|&i| u.folders[i].display.clone())
                        .collect(),
                    tester_changes: None,
                    problems: u.problems.clone(),
                    folders,
                }
            })
            .collect();
        let all = tree.problems.iter().chain(users.iter().flat_map(|u| {
            u.problems
                .iter()
                .chain(u.folders.iter().flat_map(|f| f.problems.iter()))
        }));
        for p in all {
            match p.severity {
                Severity::Error => totals.errors += 1,
                Severity::Warning => totals.warnings += 1,
                Severity::Note => totals.notes += 1,
            }
        }
        totals.users = users.len();
        totals.folders = users.iter().map(|u| u.folders.len()).sum();
        totals.messages = users
            .iter()
            .flat_map(|u| &u.folders)
            .map(|f| f.messages)
            .sum();
        totals.bytes = users.iter().flat_map(|u| &u.folders).map(|f| f.bytes).sum();
        Plan {
            users,
            problems: tree.problems.clone(),
            totals,
        }
    }

    /// What a mount's state directory says: the UIDVALIDITY it serves where that is not the
    /// mbox's, and how many changes testers made. Notes, never errors.
    pub fn add_state(&mut self, tree: &Tree, state: &std::path::Path) {
        for (u, plan) in tree.users.iter().zip(&mut self.users) {
            match crate::fs::count_changes(state, &u.name) {
                Ok(c) if c.total() > 0 => {
                    plan.problems.push(Problem::new(
                        Severity::Note,
                        Some(state),
                        format!(
                            "testers' changes ({c}); `materialize` ignores them, \
                             `mboxfs discard-changes` throws them away"
                        ),
                    ));
                    plan.tester_changes = Some(c);
                    self.totals.notes += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    plan.problems.push(Problem::new(
                        Severity::Warning,
                        Some(state),
                        format!("testers' changes cannot be read: {e}"),
                    ));
                    self.totals.warnings += 1;
                }
            }
            for (f, fp) in u.folders.iter().zip(&mut plan.folders) {
                if f.source.is_none() {
                    continue;
                }
                let served = crate::fs::served_uidvalidity(state, &u.name, f.uw_name.as_deref());
                fp.served_uidvalidity = served;
                match served {
                    Some(v) if v != fp.uidvalidity => {
                        fp.problems.push(Problem::new(
                            Severity::Note,
                            fp.source.as_deref(),
                            format!(
                                "the mount serves UIDVALIDITY {v}: the mbox's own ({}) cannot be \
                                 served again to the clients it already had; `materialize` writes \
                                 the mbox's",
                                fp.uidvalidity
                            ),
                        ));
                        self.totals.notes += 1;
                    }
                    _ => {}
                }
            }
        }
    }

    pub fn has_errors(&self) -> bool {
        self.totals.errors > 0
    }

    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        for p in &self.problems {
            writeln!(out, "{p}")?;
        }
        for u in &self.users {
            writeln!(
                out,
                "{} (uid {}, gid {}, from {})",
                u.user, u.owner.uid, u.owner.gid, u.owner_from
            )?;
            for p in &u.problems {
                writeln!(out, "  {p}")?;
            }
            let width = u
                .folders
                .iter()
                .map(|f| f.name.chars().count())
                .max()
                .unwrap_or(5);
            for f in &u.folders {
                let source = match (&f.source, f.store) {
                    (None, _) => "(none)".into(),
                    (Some(p), Some(store)) => format!("{} ({store})", p.display()),
                    (Some(p), None) => p.display().to_string(),
                };
                writeln!(
                    out,
                    "  {:width$}  {} -> {}/{}  {} messages, {}, UIDVALIDITY {} ({}), UIDNEXT {}",
                    f.name,
                    source,
                    u.user,
                    f.maildir,
                    f.messages,
                    human_bytes(f.bytes),
                    f.uidvalidity,
                    match f.uidvalidity_source {
                        UidValiditySource::PseudoMessage => "X-IMAP pseudo message",
                        UidValiditySource::XImapBase => "X-IMAPbase",
                        UidValiditySource::MbxHeader => "mbx header",
                        UidValiditySource::Derived => "derived",
                        UidValiditySource::Discarded => "derived: UW-IMAP discarded the folder's",
                    },
                    f.uid_next,
                )?;
                for p in &f.problems {
                    writeln!(out, "    {p}")?;
                }
            }
            writeln!(out, "  subscriptions: {}", u.subscriptions.join(", "))?;
        }
        let t = &self.totals;
        writeln!(
            out,
            "total: {} users, {} folders, {} messages, {}; {} errors, {} warnings, {} notes",
            t.users,
            t.folders,
            t.messages,
            human_bytes(t.bytes),
            t.errors,
            t.warnings,
            t.notes
        )
    }
}

fn folder_plan(user: &str, f: &Folder, opts: &IndexOptions) -> FolderPlan {
    let mut problems = f.problems.clone();
    let mut store = None;
    let index = if f.refused.is_some() {
        f.empty_index(opts)
    } else {
        match f.index(opts) {
            Ok((ix, src)) => {
                store = src.map(|_| ix.store);
                ix
            }
            Err(e) => {
                let why = match &e {
                    ReadError::NotMbox(w) => format!("not migrated: {w}"),
                    ReadError::Io(e) => format!("not migrated: cannot read: {e}"),
                };
                problems.push(Problem::new(Severity::Error, f.source.as_deref(), why));
                f.empty_index(opts)
            }
        }
    };
    if f.source.is_some()
        && index.messages.is_empty()
        && !problems.iter().any(|p| p.severity == Severity::Error)
    {
        problems.push(Problem::new(
            Severity::Note,
            f.source.as_deref(),
            "empty: no messages",
        ));
    }
    problems.extend(f.date_problems(&index));
    for note in &index.notes {
        problems.push(Problem::new(
            Severity::Warning,
            f.source.as_deref(),
            note.clone(),
        ));
    }
    log::debug!("planned {user}/{}", f.display);
    FolderPlan {
        name: f.display.clone(),
        maildir: f.dir.clone(),
        source: f.source.clone(),
        store,
        messages: index.messages.len(),
        bytes: index.messages.iter().map(|m| m.size(&index)).sum(),
        uidvalidity: index.uidvalidity,
        uidvalidity_source: index.uidvalidity_source,
        uid_next: index.uid_next,
        keywords: index.keywords.clone(),
        served_uidvalidity: None,
        problems,
    }
}

/// `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
