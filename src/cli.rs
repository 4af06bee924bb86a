//! The command line, and its translation into the plain configuration the rest of the crate
//! takes.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::mbox::{IndexOptions, ReadMode};
use crate::model::TreeOptions;
use crate::scan::Unquote;
use crate::shard::Shard;
use crate::source::{Layout, Owner};
use crate::{sys, tz};

/// Migrate a UW-IMAP host (mbox files) to Dovecot Maildir++, keeping every message, flag and
/// UID.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    long_about = "Migrate a UW-IMAP host (mbox files) to Dovecot Maildir++, keeping every \
message, flag and UID.\n\n\
mboxfs reads the legacy host as UW-IMAP did: inboxes in /var/spool/mail/<user>, filed folders \
as mbox files under /home/<user>, the users in /root/migrate/userlist and the folders in \
/root/migrate/folderlist. `plan` shows what will be migrated and checks the destination, \
`mount` shows the Maildir++ trees live (a preview that a Dovecot from `dovecot-config` serves \
to testers), `materialize` writes them as real files, and `verify` proves the copy exact. The \
mbox files are never written.",
    after_long_help = "Logs go to standard error: warnings and errors only, unless -v (or \
RUST_LOG, e.g. RUST_LOG=debug) asks for more.\n\n\
Exit status: 0 when everything went well; 1 when the job ran but something failed, differs or \
a check did not pass; 2 when the job could not run (bad options or lists, a refused DEST).\n\n\
See /usr/share/doc/mboxfs/README.md for the migration runbook.",
    propagate_version = true
)]
pub struct Cli {
    /// More log output on standard error (-v: progress, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what will be migrated, and every problem of the source; with --dest, check the
    /// destination too. Writes nothing.
    Plan(PlanArgs),
    /// Show the Maildir++ trees live and read-only as a FUSE file system (for Dovecot).
    Mount(MountArgs),
    /// Write the Maildir++ trees as real files under DEST.
    Materialize(MaterializeArgs),
    /// Check that DEST holds exactly what the sources give.
    Verify(VerifyArgs),
    /// Print a complete Dovecot configuration for the preview (the mount) or for production
    /// (--dest).
    DovecotConfig(DovecotConfigArgs),
    /// Write the man pages and shell completions (used to build the package).
    #[command(hide = true)]
    GenerateDocs(GenerateDocsArgs),
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
    /// Also check the destination before copying: free inodes and space against what it will
    /// need, the file system's subdirectory limit, that it is empty or made by mboxfs, that
    /// Dovecot has not used it, and which Dovecot is installed. Exit status 1 when a check fails.
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Only the users of shard K of N (a stable hash of the user name).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
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
    /// Write DEST from the sources even though Dovecot has used it since mboxfs last wrote it:
    /// flags, expunged and moved messages go back to what the mbox files say (nothing that
    /// mboxfs did not write is removed). Without it, such a DEST is refused.
    #[arg(long)]
    pub revert_user_changes: bool,
    /// Only the users of shard K of N (a stable hash of the user name), so that several
    /// machines can share the work.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
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
    /// Only the users of shard K of N (a stable hash of the user name).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Args)]
pub struct DovecotConfigArgs {
    /// Production: serve the maildirs materialize wrote under DIR (read-write, port 143).
    /// Without it: the preview, served from the mount.
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// The preview's mountpoint (where `mboxfs mount` shows the trees).
    #[arg(long, value_name = "DIR", default_value = crate::dovecot_config::DEFAULT_MOUNTPOINT,
        conflicts_with = "dest")]
    pub mountpoint: PathBuf,
    /// The IMAP port [default: 1043 for the preview, 143 for production].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// The addresses to listen on (Dovecot's `listen`).
    #[arg(long, value_name = "ADDRS", default_value = "*, ::")]
    pub listen: String,
    /// Let testers change mail in the preview (for a mount run with --writable). Without it the
    /// preview refuses every write with NO [NOPERM] and opens folders [READ-ONLY].
    #[arg(long, conflicts_with = "dest")]
    pub writable: bool,
    /// Virtual users: logins and passwords from a passwd-file, mail owned by one system user
    /// (as a mount or materialize with --owner). Without it: the system's users, PAM and
    /// passwd, as UW-IMAP had them.
    #[arg(long = "virtual")]
    pub virtual_users: bool,
    /// The passwd-file of the virtual users (`user:{SCHEME}password::::::` a line).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/dovecot/users",
        requires = "virtual_users"
    )]
    pub passwd_file: PathBuf,
    /// The system user (and group) that owns virtual users' mail: the --owner given to the
    /// mount or to materialize.
    #[arg(
        long,
        value_name = "USER[:GROUP]",
        default_value = "vmail",
        requires = "virtual_users"
    )]
    pub owner: String,
    /// The global ACL file that makes the read-only preview read-only (`--print-acl` gives
    /// its contents; the package installs it).
    #[arg(long, value_name = "FILE", default_value = crate::dovecot_config::DEFAULT_ACL_FILE)]
    pub acl_file: PathBuf,
    /// Print the read-only ACL file's contents instead of the configuration.
    #[arg(long)]
    pub print_acl: bool,
    /// The preview's homes (Dovecot keeps nothing there; the users' real homes, where their
    /// mbox folders are, stay untouched).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/mboxfs/home",
        conflicts_with = "dest"
    )]
    pub homes: PathBuf,
    /// Where the preview's Dovecot keeps lock files: a directory like /tmp (mode 1777), e.g.
    /// the preview unit's RuntimeDirectory.
    #[arg(long, value_name = "DIR", default_value = crate::dovecot_config::PREVIEW_VOLATILE_DIR,
        conflicts_with = "dest")]
    pub volatile_dir: PathBuf,
    /// Dovecot's runtime directory [default: /run/mboxfs-preview-dovecot for the preview,
    /// Dovecot's own for production].
    #[arg(long, value_name = "DIR")]
    pub base_dir: Option<PathBuf>,
    /// Log to FILE instead of syslog (mail facility).
    #[arg(long, value_name = "FILE")]
    pub log_path: Option<PathBuf>,
    /// TLS certificate (PEM): turns on STARTTLS (and imaps on 993 in production).
    #[arg(long, value_name = "FILE", requires = "ssl_key")]
    pub ssl_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "ssl_cert")]
    pub ssl_key: Option<PathBuf>,
    /// With TLS, still accept passwords on connections without it (as UW-IMAP may have).
    #[arg(long)]
    pub allow_plaintext: bool,
}

#[derive(Debug, Args)]
pub struct GenerateDocsArgs {
    /// Where to write man/*.1 and completions/.
    pub out: PathBuf,
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
                shard: None,
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
