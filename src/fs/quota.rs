//! A bound on what Dovecot (and, on a writable mount, testers) may write into the state
//! directory for one user: indexes, uidlist copies, messages added. Past it, writes fail with
//! EDQUOT, which Dovecot reports to the client as over quota; nothing else on the host fills up.
//!
//! A file costs its size rounded up to 4 KiB, plus 4 KiB for its inode. What a user has is
//! counted once (on first write) and kept up to date on every create, write, truncate, rename
//! over a file, link and unlink.

use super::*;

const BLOCK: u64 = 4096;

/// What a file of `len` bytes costs.
pub(super) fn cost(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK + BLOCK
}

/// Per-user usage of the state directory.
#[derive(Default)]
pub(super) struct Usage {
    by_user: HashMap<usize, u64>,
}

impl MailFs {
    /// Takes `delta` bytes from user `st.user`'s allowance (or gives them back, if negative).
    pub(super) fn charge(&self, st: &FolderState, delta: i64) -> Result<()> {
        let limit = self.opts.state_quota;
        if limit == 0 || delta == 0 {
            return Ok(());
        }
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let used = usage
            .by_user
            .entry(st.user)
            .or_insert_with(|| self.count_usage(st.user));
        if delta > 0 && *used + delta as u64 > limit {
            let user = self.user_tree(st.user).name.clone();
            self.say(
                st,
                log::Level::Warn,
                format!(
                    "{user}: the state directory allowance ({}) is used up; writes fail (--state-quota)",
                    crate::plan::human_bytes(limit)
                ),
            );
            return Err(Errno(libc::EDQUOT));
        }
        *used = used.saturating_add_signed(delta);
        Ok(())
    }

    /// Counts again what user `u` has (after a folder was removed whole).
    pub(super) fn recount(&self, u: usize) {
        if self.opts.state_quota == 0 {
            return;
        }
        let counted = self.count_usage(u);
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_user
            .insert(u, counted);
    }

    /// What the files of user `u` in the state directory cost (mboxfs's own records aside).
    fn count_usage(&self, u: usize) -> u64 {
        let user = self.user_tree(u).name.clone();
        let mut total = 0;
        let mut stack = vec![self.opts.state_dir.join(user)];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let Ok(m) = e.path().symlink_metadata() else {
                    continue;
                };
                if m.is_dir() && e.file_name() != ".mboxfs" {
                    stack.push(e.path());
                } else if m.is_file() {
                    total += cost(m.len()) / u64::from(m.nlink().max(1) as u32);
                }
            }
        }
        total
    }

    /// Gives back what the file at `path` costs, if removing or replacing it frees it.
    pub(super) fn refund_file(&self, st: &FolderState, path: &Path) {
        if let Ok(m) = path.symlink_metadata() {
            if m.is_file() && m.nlink() <= 1 {
                let _ = self.charge(st, -(cost(m.len()) as i64));
            }
        }
    }

    /// Takes what making the file at `path` costs (or truncating it, with `O_TRUNC`).
    pub(super) fn charge_creation(&self, st: &FolderState, path: &Path, flags: i32) -> Result<()> {
        match path.symlink_metadata() {
            Err(_) => self.charge(st, cost(0) as i64),
            Ok(m) if flags & libc::O_TRUNC != 0 && m.is_file() => {
                self.charge(st, cost(0) as i64 - cost(m.len()) as i64)
            }
            Ok(_) => Ok(()),
        }
    }

    /// Takes what growing the file at `path` (or making it, if it is not there) from its size
    /// now to `new_len` costs.
    pub(super) fn charge_growth(&self, st: &FolderState, path: &Path, new_len: u64) -> Result<()> {
        let old = match path.symlink_metadata() {
            Ok(m) => cost(m.len()),
            Err(_) => 0,
        };
        let new = cost(new_len);
        if new > old {
            self.charge(st, (new - old) as i64)
        } else {
            Ok(())
        }
    }
}

/// `SIZE` with an optional K, M, G or T suffix (powers of 1024); 0 for no bound.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], s[i..].to_ascii_uppercase()),
        None => (s, String::new()),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512M, 2G, 0)"))?;
    let shift = match unit.trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{s:?}: unknown unit (K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3X").is_err());
        assert_eq!(cost(0), 4096);
        assert_eq!(cost(1), 8192);
    }
}
