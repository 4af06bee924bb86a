//! The command line, and its translation into the plain configuration the rest of the crate
//! takes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::mbox::{IndexOptions, ReadMode};
use crate::model::TreeOptions;
use crate::scan::Unquote;
use crate::source::{Layout, Owner};
use crate::{sys, tz};

/// Migrate a UW-IMAP host (mbox files) to Dovecot Maildir++, keeping every message, flag and
/// UID.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what will be migrated, and every problem of the source. Writes nothing.
    Plan(PlanArgs),
    /// Show the Maildir++ trees live and read-only as a FUSE file system (for Dovecot).
    Mount(MountArgs),
    /// Write the Maildir++ trees as real files under DEST.
    Materialize(MaterializeArgs),
    /// Check that DEST holds exactly what the sources give.
    Verify(VerifyArgs),
    /// Throw away what testers changed through a `--writable` mount (the paper's step 12).
    DiscardChanges(DiscardArgs),
}

/// Where the mail is (the same on every subcommand).
#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// Each user's inbox; %u is the user name.
    #[arg(long, value_name = "PATTERN", default_value = "/var/spool/mail/%u")]
    pub inbox: String,
    /// Each user's home, where filed folders live; %u is the user name.
    #[arg(long, value_name = "PATTERN", default_value = "/home/%u")]
    pub home: String,
    /// The users to migrate, one login name a line.
    #[arg(long, value_name = "FILE", default_value = "/root/migrate/userlist")]
    pub userlist: PathBuf,
    /// The folders to migrate, `<user>/<path under the home>` a line [default:
    /// /root/migrate/folderlist if it exists, else the mbox files found under each home].
    #[arg(long, value_name = "FILE")]
    pub folderlist: Option<PathBuf>,
    /// Find the mbox files under each home instead of reading a folderlist.
    #[arg(long, conflicts_with = "folderlist")]
    pub discover: bool,
    /// Time zone of From_ line dates that carry none (IANA name) [default: this host's].
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// How quoted From lines in bodies are served: as stored (UW-IMAP's way) or mboxrd-unquoted.
    #[arg(long, value_enum, default_value_t = UnquoteArg::None)]
    pub unquote: UnquoteArg,
    /// A folder path prefix to remove from folder names and subscriptions (`mail/`: folder
    /// `mail/Sent` becomes `Sent`); repeat for several. By default none: folders keep the names
    /// UW-IMAP showed (their path under the home).
    #[arg(long, value_name = "PREFIX")]
    pub strip_prefix: Vec<String>,
    /// Accept sources owned by someone other than their user.
    #[arg(long)]
    pub trust_owners: bool,
    /// Go on without bad lines of the user or folder list (they are reported).
    #[arg(long)]
    pub skip_bad: bool,
    /// Own every tree as USER[:GROUP] (virtual mail) instead of each user.
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,
    /// Only this user (repeatable).
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UnquoteArg {
    None,
    Mboxrd,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Folders indexed at once.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// A mount's state directory, to say what it serves and what testers changed [default:
    /// the mount's default, when it exists].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Where Dovecot's own files (indexes, uidlist rewrites, subscriptions changes) are kept
    /// [default: /var/lib/mboxfs/state as root, else ~/.local/state/mboxfs].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Threads serving FUSE requests [default: the machine's cores, 2 to 8].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// How long an mbox is trusted before it is looked at again, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub recheck_ms: u64,
    /// How an mbox is locked while it is read.
    #[arg(long, value_enum, default_value_t = LockArg::Fcntl)]
    pub lock: LockArg,
    /// Let testers change mail (create, rename and delete folders; append, copy, move and
    /// expunge messages; set flags). Their changes are kept per user in the state directory and
    /// never reach an mbox file; `mboxfs discard-changes` throws them away.
    #[arg(long)]
    pub writable: bool,
    /// What Dovecot and testers may write into the state directory per user (K, M, G, T; 0 for
    /// no bound); past it, writes fail as over quota.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = crate::fs::parse_size)]
    pub state_quota: u64,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// The read locks taken while an mbox is indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LockArg {
    /// No lock.
    None,
    /// fcntl and flock read locks (what UW-IMAP and Postfix honour; writes nothing).
    Fcntl,
    /// A `<mbox>.lock` dotlock as well (creates a file in the mbox's directory).
    Dotlock,
}

#[derive(Debug, Args)]
pub struct MaterializeArgs {
    /// The directory to write the trees into (one directory per user).
    pub dest: PathBuf,
    /// Folders worked on at once [default: 8; writing files waits on the disk more than on the
    /// CPU].
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Make each file and directory durable as it is written (else one sync at the end).
    #[arg(long)]
    pub fsync: bool,
    /// Write into a DEST that is not empty and was not made by mboxfs.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The directory materialize wrote.
    pub dest: PathBuf,
    /// Folders checked at once.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Args)]
pub struct DiscardArgs {
    /// The mount's state directory [default: /var/lib/mboxfs/state as root, else
    /// ~/.local/state/mboxfs].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Only this user (repeatable) [default: every user].
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
}

/// The validated source configuration.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub layout: Layout,
    pub tree: TreeOptions,
    pub index: IndexOptions,
}

/// The default folder list, used when it exists.
const DEFAULT_FOLDERLIST: &str = "/root/migrate/folderlist";

impl SourceArgs {
    pub fn config(&self, mode: ReadMode) -> Result<SourceConfig, String> {
        let folderlist = if self.discover {
            None
        } else {
            self.folderlist.clone().or_else(|| {
                let p = PathBuf::from(DEFAULT_FOLDERLIST);
                p.exists().then_some(p)
            })
        };
        let owner = self.owner.as_deref().map(parse_owner).transpose()?;
        let strip: Vec<String> = self
            .strip_prefix
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect();
        Ok(SourceConfig {
            layout: Layout {
                inbox: self.inbox.clone(),
                home: self.home.clone(),
                userlist: self.userlist.clone(),
                folderlist,
                strip_prefixes: strip.clone(),
                trust_owners: self.trust_owners,
                skip_bad: self.skip_bad,
                only_users: self.users.clone(),
            },
            tree: TreeOptions {
                owner,
                trust_owners: self.trust_owners,
                strip_prefixes: strip,
            },
            index: IndexOptions {
                tz: tz::load(self.timezone.as_deref())?,
                unquote: match self.unquote {
                    UnquoteArg::None => Unquote::None,
                    UnquoteArg::Mboxrd => Unquote::Mboxrd,
                },
                derived_uidvalidity: 1,
                mode,
            },
        })
    }
}

/// `USER[:GROUP]`, by name or number.
pub fn parse_owner(s: &str) -> Result<Owner, String> {
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let (uid, default_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let p = sys::user_by_name(user).ok_or_else(|| format!("--owner: no user {user:?}"))?;
            (p.uid, p.gid)
        }
    };
    let gid = match group {
        None | Some("") => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => sys::group_by_name(g).ok_or_else(|| format!("--owner: no group {g:?}"))?,
        },
    };
    Ok(Owner { uid, gid })
}

/// The default number of parallel jobs: the machine's cores.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn owners() {
        assert_eq!(parse_owner("root").unwrap(), Owner { uid: 0, gid: 0 });
        assert_eq!(
            parse_owner("1000:1001").unwrap(),
            Owner {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(parse_owner("0:root").unwrap(), Owner { uid: 0, gid: 0 });
        assert!(parse_owner("no-such-user").is_err());
    }

    #[test]
    fn source_options_follow_the_subcommand() {
        let cli = Cli::try_parse_from([
            "mboxfs",
            "plan",
            "--inbox",
            "/x/%u",
            "--userlist",
            "/u",
            "--timezone",
            "UTC",
            "--json",
        ])
        .unwrap();
        let Command::Plan(p) = cli.command else {
            panic!()
        };
        assert!(p.json);
        assert_eq!(p.source.inbox, "/x/%u");
        let c = p.source.config(ReadMode::Map).unwrap();
        assert!(c.layout.strip_prefixes.is_empty());
    }
}
