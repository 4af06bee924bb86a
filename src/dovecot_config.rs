//! `mboxfs dovecot-config`: a complete Dovecot 2.3 configuration for the preview (serving the
//! mount on a spare port while UW-IMAP keeps port 143) or for production (serving DEST).
//!
//! What every configuration keeps from UW-IMAP: the hierarchy separator `/` in an empty-prefix
//! inbox namespace (clients keep their folder names), and by default the system's users (PAM and
//! the passwd database). `--virtual` uses a passwd-file and one mail owner instead.
//!
//! The read-only preview (the default) is made read-only by Dovecot itself: the acl plugin with
//! a global ACL file granting `lr` (lookup, read) and nothing else. Every write is then refused
//! with a clear `NO [NOPERM]`, folders open `[READ-ONLY]`, and no flag change is stored, so a
//! tester never sees a change "stick" that the migration would not carry.
//!
//! Every path that goes into the configuration is checked: Dovecot expands `%` and splits
//! `mail_location` at `:`, so such paths are refused with a message rather than written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::source::Owner;

/// Where the preview is mounted by default (the systemd unit mounts there).
pub const DEFAULT_MOUNTPOINT: &str = "/srv/mboxfs";
/// The read-only ACL file the package installs.
pub const DEFAULT_ACL_FILE: &str = "/usr/share/mboxfs/dovecot-readonly.acl";
/// The preview Dovecot's runtime directory, apart from the system Dovecot's `/run/dovecot`.
pub const PREVIEW_BASE_DIR: &str = "/run/mboxfs-preview-dovecot";
/// Where the preview's Dovecot keeps its lock files (one directory per user, made by Dovecot
/// as the user: this directory must be world-writable and sticky, like /tmp).
pub const PREVIEW_VOLATILE_DIR: &str = "/run/mboxfs-preview-volatile";
pub const PREVIEW_PORT: u16 = 1043;
pub const PRODUCTION_PORT: u16 = 143;

/// The contents of the global ACL file of the read-only preview.
pub const READONLY_ACL: &str = "\
# mboxfs read-only preview: every user may list and read their own mailboxes, nothing else
# (no flags, no inserts, no expunges, no new or deleted mailboxes). Written by mboxfs.
* owner lr
";

/// What Dovecot serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The mount (`mboxfs mount MOUNTPOINT`).
    Preview { mountpoint: PathBuf, writable: bool },
    /// The maildirs `materialize` wrote.
    Production { dest: PathBuf },
}

/// Who logs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Users {
    /// PAM and the passwd database, as UW-IMAP had.
    System,
    /// A passwd-file; all mail belongs to `owner` (`owner_name` for the comments).
    Virtual {
        passwd_file: PathBuf,
        owner: Owner,
        owner_name: String,
    },
}

/// Everything the configuration depends on.
#[derive(Clone, Debug)]
pub struct Options {
    pub target: Target,
    pub users: Users,
    pub port: u16,
    pub listen: String,
    pub acl_file: PathBuf,
    pub homes: PathBuf,
    pub volatile_dir: PathBuf,
    pub base_dir: Option<PathBuf>,
    pub log_path: Option<PathBuf>,
    /// (certificate, key).
    pub tls: Option<(PathBuf, PathBuf)>,
    pub allow_plaintext: bool,
    /// The command line that wrote it, for the header.
    pub command: String,
}

/// A path as Dovecot must see it: absolute, and without characters Dovecot would interpret.
fn dovecot_path(what: &str, p: &Path) -> Result<String, String> {
    let s = p
        .to_str()
        .ok_or_else(|| format!("{what} {}: not UTF-8", p.display()))?;
    if !p.is_absolute() {
        return Err(format!("{what} {s:?}: must be an absolute path"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_alphanumeric() || "/._-+@,".contains(*c)))
    {
        return Err(format!(
            "{what} {s:?}: {c:?} cannot be written into a Dovecot configuration safely (Dovecot \
             expands %, splits mail_location at ':'); use a path without it"
        ));
    }
    let t = s.trim_end_matches('/');
    Ok(if t.is_empty() { "/".into() } else { t.into() })
}

/// `listen`: addresses, `*` and `::`, separated by commas.
fn check_listen(listen: &str) -> Result<(), String> {
    let ok = !listen.trim().is_empty()
        && listen
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ,.:*[]-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--listen {listen:?}: give addresses separated by commas (e.g. '127.0.0.1' or '*, ::')"
        ))
    }
}

/// Renders the configuration.
pub fn render(o: &Options) -> Result<String, String> {
    check_listen(&o.listen)?;
    let mut c = String::new();
    let (preview, writable) = match &o.target {
        Target::Preview { writable, .. } => (true, *writable),
        Target::Production { .. } => (false, true),
    };
    let location = match &o.target {
        Target::Preview { mountpoint, .. } => dovecot_path("--mountpoint", mountpoint)?,
        Target::Production { dest } => dovecot_path("--dest", dest)?,
    };
    let kind = match (preview, writable) {
        (true, false) => "the mboxfs preview, read-only",
        (true, true) => "the mboxfs preview, writable (testers' changes stay in the preview)",
        (false, _) => "production: the maildirs mboxfs materialize wrote",
    };
    let _ = writeln!(c, "# Dovecot 2.3 configuration for {kind}.");
    let _ = writeln!(c, "# Written by: {}", o.command);
    let _ = writeln!(c, "# Check it with `doveconf -n -c FILE`.");
    c.push('\n');
    c.push_str("protocols = imap\n");
    let _ = writeln!(c, "listen = {}", o.listen.trim());
    if preview {
        c.push_str(
            "# Its own runtime directory and instance name: it runs beside the system's Dovecot\n\
             # (and UW-IMAP) without sharing sockets.\n",
        );
    }
    let base_dir = match (&o.base_dir, preview) {
        (Some(d), _) => Some(dovecot_path("--base-dir", d)?),
        (None, true) => Some(PREVIEW_BASE_DIR.to_string()),
        (None, false) => None,
    };
    if let Some(d) = base_dir {
        let _ = writeln!(c, "base_dir = {d}");
    }
    if preview {
        c.push_str("instance_name = mboxfs-preview\n");
        let _ = writeln!(
            c,
            "login_greeting = mboxfs preview ({})",
            if writable { "writable" } else { "read-only" }
        );
    }
    match &o.log_path {
        Some(p) => {
            let _ = writeln!(c, "log_path = {}", dovecot_path("--log-path", p)?);
        }
        None => c.push_str("# Logs go to syslog, mail facility (Dovecot's default).\n"),
    }
    c.push('\n');
    match &o.tls {
        None => c.push_str(
            "# No TLS: passwords travel in clear text (give --ssl-cert and --ssl-key for STARTTLS).\n\
             ssl = no\n\
             disable_plaintext_auth = no\n",
        ),
        Some((cert, key)) => {
            let _ = writeln!(c, "ssl = yes");
            let _ = writeln!(c, "ssl_cert = <{}", dovecot_path("--ssl-cert", cert)?);
            let _ = writeln!(c, "ssl_key = <{}", dovecot_path("--ssl-key", key)?);
            let _ = writeln!(
                c,
                "disable_plaintext_auth = {}",
                if o.allow_plaintext { "no" } else { "yes" }
            );
        }
    }
    c.push_str("auth_mechanisms = plain login\n\n");

    if preview {
        let volatile = dovecot_path("--volatile-dir", &o.volatile_dir)?;
        let _ = write!(
            c,
            "# Lock files go to {volatile} (mode 1777; Dovecot makes one directory per user), not\n\
             # into the mount: without them, CREATE and RENAME would fail with [SERVERBUG].\n\
             mail_location = maildir:{location}/%u:VOLATILEDIR={volatile}/%u\n"
        );
    } else {
        let _ = writeln!(c, "mail_location = maildir:{location}/%u");
    }
    c.push_str(
        "# UW-IMAP's hierarchy separator was '/', with no prefix: clients keep their folder names.\n\
         namespace inbox {\n  inbox = yes\n  separator = /\n  prefix =\n}\n",
    );
    if preview {
        c.push_str(
            "# New mail in the mbox files reaches IDLE clients within a second.\n\
             mailbox_idle_check_interval = 1 secs\n",
        );
    }
    if preview && !writable {
        let acl = dovecot_path("--acl-file", &o.acl_file)?;
        let _ = write!(
            c,
            "\n# Read-only: a global ACL grants lookup and read only. Writes get NO [NOPERM],\n\
             # folders open [READ-ONLY], and flag changes are not kept. {acl} holds:\n"
        );
        for line in READONLY_ACL.lines().filter(|l| !l.starts_with('#')) {
            let _ = writeln!(c, "#   {line}");
        }
        let _ = write!(
            c,
            "mail_plugins = $mail_plugins acl\n\
             protocol imap {{\n  mail_plugins = $mail_plugins imap_acl\n}}\n\
             plugin {{\n  acl = vfile:{acl}\n  acl_globals_only = yes\n}}\n"
        );
    }
    c.push('\n');
    match &o.users {
        Users::System => {
            c.push_str(
                "# The system's users and passwords, as under UW-IMAP.\n\
                 passdb {\n  driver = pam\n}\n\
                 userdb {\n  driver = passwd\n",
            );
            if preview {
                let homes = dovecot_path("--homes", &o.homes)?;
                let _ = write!(
                    c,
                    "  # Dovecot keeps nothing in the preview's homes; the users' real homes, where\n  \
                     # their mbox folders are, are left alone.\n  \
                     override_fields = home={homes}/%u\n"
                );
            }
            c.push_str("}\n");
        }
        Users::Virtual {
            passwd_file,
            owner,
            owner_name,
        } => {
            let file = dovecot_path("--passwd-file", passwd_file)?;
            let home = if preview {
                format!("{}/%u", dovecot_path("--homes", &o.homes)?)
            } else {
                format!("{location}/%u")
            };
            let _ = write!(
                c,
                "# Virtual users: {file} holds `user:{{SCHEME}}password::::::` lines (make a hash with\n\
                 # `doveadm pw -s SHA512-CRYPT`); Dovecot's auth process reads it as the dovecot user\n\
                 # (chgrp dovecot, chmod 640). All mail belongs to {owner_name} (uid {uid}, gid {gid}).\n\
                 passdb {{\n  driver = passwd-file\n  args = username_format=%u {file}\n}}\n\
                 userdb {{\n  driver = passwd-file\n  args = username_format=%u {file}\n  \
                 default_fields = uid={uid} gid={gid} home={home}\n}}\n\
                 first_valid_uid = {uid}\n\
                 last_valid_uid = {uid}\n",
                uid = owner.uid,
                gid = owner.gid,
            );
            if !preview {
                let _ = write!(
                    c,
                    "# Delivery with dovecot-lda -d, running as {owner_name}, looks users up here.\n\
                     service auth {{\n  unix_listener auth-userdb {{\n    mode = 0600\n    user = {uid}\n  }}\n}}\n",
                    uid = owner.uid
                );
            }
        }
    }
    c.push('\n');
    let imaps = match (&o.tls, preview) {
        (Some(_), false) => 993,
        _ => 0,
    };
    let _ = write!(
        c,
        "service imap-login {{\n  inet_listener imap {{\n    port = {}\n  }}\n  \
         inet_listener imaps {{\n    port = {imaps}\n  }}\n}}\n",
        o.port
    );
    Ok(c)
}

/// The default port of a target.
pub fn default_port(target: &Target) -> u16 {
    match target {
        Target::Preview { .. } => PREVIEW_PORT,
        Target::Production { .. } => PRODUCTION_PORT,
    }
}

/// Quotes one command-line word for a shell, when it needs it.
pub fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,%".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview() -> Options {
        Options {
            target: Target::Preview {
                mountpoint: DEFAULT_MOUNTPOINT.into(),
                writable: false,
            },
            users: Users::System,
            port: 1043,
            listen: "*, ::".into(),
            acl_file: DEFAULT_ACL_FILE.into(),
            homes: "/var/lib/mboxfs/home".into(),
            volatile_dir: PREVIEW_VOLATILE_DIR.into(),
            base_dir: None,
            log_path: None,
            tls: None,
            allow_plaintext: false,
            command: "mboxfs dovecot-config".into(),
        }
    }

    #[test]
    fn the_read_only_preview_has_the_acl_and_uw_names() {
        let c = render(&preview()).unwrap();
        assert!(
            c.contains(
                "mail_location = maildir:/srv/mboxfs/%u:VOLATILEDIR=/run/mboxfs-preview-volatile/%u\n"
            ),
            "{c}"
        );
        assert!(c.contains("  separator = /\n  prefix =\n"), "{c}");
        assert!(c.contains("acl = vfile:/usr/share/mboxfs/dovecot-readonly.acl\n"));
        assert!(c.contains("base_dir = /run/mboxfs-preview-dovecot\n"));
        assert!(c.contains("    port = 1043\n"));
        assert!(c.contains("driver = pam"));
        assert!(c.contains("override_fields = home=/var/lib/mboxfs/home/%u"));
    }

    #[test]
    fn writable_and_production_have_no_acl() {
        let mut o = preview();
        o.target = Target::Preview {
            mountpoint: "/srv/mboxfs".into(),
            writable: true,
        };
        assert!(!render(&o).unwrap().contains("acl"));
        o.target = Target::Production {
            dest: "/data/mail2/".into(),
        };
        o.port = 143;
        let c = render(&o).unwrap();
        assert!(!c.contains("acl"));
        assert!(
            c.contains("mail_location = maildir:/data/mail2/%u\n"),
            "{c}"
        );
        assert!(!c.contains("base_dir"));
        assert!(!c.contains("override_fields"));
    }

    #[test]
    fn dangerous_paths_are_refused() {
        for bad in [
            "relative/x",
            "/srv/a:b",
            "/srv/100%",
            "/srv/a b",
            "/srv/a\nb",
        ] {
            let mut o = preview();
            o.target = Target::Preview {
                mountpoint: bad.into(),
                writable: false,
            };
            assert!(render(&o).is_err(), "{bad:?}");
        }
        let mut o = preview();
        o.listen = "1.2.3.4\n}\nfoo".into();
        assert!(render(&o).is_err());
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("--port"), "--port");
        assert_eq!(shell_word("*, ::"), "'*, ::'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
