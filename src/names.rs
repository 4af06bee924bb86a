//! Folder names: from a UW-IMAP folder path (bytes, as on disk) to a Maildir++ directory.
//!
//! - Folder `a/b/c` becomes `.a.b.c`; its parents `.a` and `.a.b` exist as (empty) folders.
//! - Names are modified UTF-7 on disk, as Dovecot expects: `&` is `&-`, non-ASCII comes from
//!   UTF-8, or from Latin-1 when a name is not UTF-8 (reported). A name that is already valid
//!   modified UTF-7 (c-client stored client-created names that way) is kept as it is.
//! - A `.` inside one name is Maildir++'s separator, so it becomes `_` (what Dovecot's own
//!   `mb2md` does); names that then collide get a `_2`, `_3`... suffix. Every rename is reported.

use base64::Engine;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};

const MUTF7: GeneralPurpose = GeneralPurpose::new(
    &IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
);

/// Encodes a name as IMAP modified UTF-7 (RFC 3501, 5.1.3).
pub fn mutf7_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if !pending.is_empty() {
            let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&MUTF7.encode(bytes));
            out.push('-');
            pending.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes modified UTF-7; `None` if `name` is not valid modified UTF-7.
pub fn mutf7_decode(name: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = name;
    while let Some(amp) = rest.find('&') {
        let plain = &rest[..amp];
        if !plain.chars().all(|c| (' '..='~').contains(&c)) {
            return None;
        }
        out.push_str(plain);
        let after = &rest[amp + 1..];
        let dash = after.find('-')?;
        let b64 = &after[..dash];
        if b64.is_empty() {
            out.push('&');
        } else {
            let bytes = MUTF7.decode(b64).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            let s = String::from_utf16(&units).ok()?;
            // Printable ASCII must not be encoded, and the encoding must be canonical.
            if s.chars().any(|c| (' '..='~').contains(&c)) || MUTF7.encode(&bytes) != b64 {
                return None;
            }
            out.push_str(&s);
        }
        rest = &after[dash + 1..];
    }
    if !rest.chars().all(|c| (' '..='~').contains(&c)) {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// One folder name, mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// The Maildir++ directory: `.a.b` (never empty: INBOX is not mapped here).
    pub dir: String,
    /// The IMAP name a client sees, in UTF-8, `/` between levels.
    pub display: String,
    /// Whether the folder has a source (false: a parent created for a nested folder).
    pub has_source: bool,
    /// What was changed, for the admin.
    pub notes: Vec<String>,
}

/// Maps one path component. Returns (on-disk mUTF-7 with `.` replaced, UTF-8 display, notes).
fn component(raw: &[u8]) -> (String, String, Vec<String>) {
    let mut notes = Vec::new();
    let (encoded, display) = match std::str::from_utf8(raw) {
        Ok(s) => match mutf7_decode(s) {
            // Already modified UTF-7 (kept), or plain printable ASCII without `&`.
            Some(decoded) if s.contains('&') => (s.to_string(), decoded),
            Some(_) => (s.to_string(), s.to_string()),
            None => (mutf7_encode(s), s.to_string()),
        },
        Err(_) => {
            let latin1: String = raw.iter().map(|&b| b as char).collect();
            notes.push(format!(
                "{:?} is not UTF-8; read as Latin-1: {latin1:?}",
                String::from_utf8_lossy(raw)
            ));
            (mutf7_encode(&latin1), latin1)
        }
    };
    if encoded.contains('.') {
        notes.push(format!(
            "{display:?}: '.' separates Maildir++ levels, so it is shown as '_'"
        ));
        (encoded.replace('.', "_"), display.replace('.', "_"), notes)
    } else {
        (encoded, display, notes)
    }
}

/// Maps UW folder names (paths relative to the home, `/` between levels) to Maildir++
/// directories, in order, adding parents and making every directory unique. The result holds
/// one entry per input name first (same order), then the parents that had to be added.
pub fn map_folders(names: &[Vec<u8>]) -> Vec<Mapped> {
    let mut out: Vec<Mapped> = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for raw in names {
        let parts: Vec<&[u8]> = raw
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        let mut notes = Vec::new();
        let mut dir_parts = Vec::new();
        let mut display_parts = Vec::new();
        for p in &parts {
            let (d, s, n) = component(p);
            dir_parts.push(d);
            display_parts.push(s);
            notes.extend(n);
        }
        if dir_parts.is_empty() {
            dir_parts.push("_".into());
            display_parts.push("_".into());
        }
        if dir_parts.len() == 1 && dir_parts[0].eq_ignore_ascii_case("INBOX") {
            notes.push("a folder named INBOX would be hidden by the inbox; shown as INBOX_".into());
            dir_parts[0].push('_');
            display_parts[0].push('_');
        }
        let mut dir = format!(".{}", dir_parts.join("."));
        let mut display = display_parts.join("/");
        if taken.contains(&dir.to_ascii_lowercase()) {
            let (base_dir, base_display) = (dir.clone(), display.clone());
            let mut n = 2;
            while taken.contains(&format!("{base_dir}_{n}").to_ascii_lowercase()) {
                n += 1;
            }
            dir = format!("{base_dir}_{n}");
            display = format!("{base_display}_{n}");
            notes.push(format!(
                "another folder is already shown as {base_display:?}; this one is {display:?}"
            ));
        }
        taken.insert(dir.to_ascii_lowercase());
        out.push(Mapped {
            dir,
            display,
            has_source: true,
            notes,
        });
    }
    // Parents of nested folders, as empty folders.
    let mut parents = Vec::new();
    for m in &out {
        let levels: Vec<&str> = m.dir[1..].split('.').collect();
        let shown: Vec<&str> = m.display.split('/').collect();
        for depth in 1..levels.len() {
            let dir = format!(".{}", levels[..depth].join("."));
            if taken.insert(dir.to_ascii_lowercase()) {
                parents.push(Mapped {
                    dir,
                    display: shown[..depth.min(shown.len())].join("/"),
                    has_source: false,
                    notes: vec![],
                });
            }
        }
    }
    out.extend(parents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutf7_round_trip() {
        for (plain, enc) in [
            ("Entwürfe", "Entw&APw-rfe"),
            ("R&D", "R&-D"),
            ("日本語", "&ZeVnLIqe-"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("emoji 😀", "emoji &2D3eAA-"),
        ] {
            assert_eq!(mutf7_encode(plain), enc);
            assert_eq!(mutf7_decode(enc).as_deref(), Some(plain));
        }
        for bad in ["R&D", "&AGE-", "&Jjo", "Entwürfe", "&,,,-"] {
            assert_eq!(mutf7_decode(bad), None, "{bad}");
        }
    }

    fn dirs(names: &[&str]) -> Vec<(String, String)> {
        let raw: Vec<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
        map_folders(&raw)
            .into_iter()
            .map(|m| (m.dir, m.display))
            .collect()
    }

    #[test]
    fn mapping() {
        let got = dirs(&[
            "Work/2004/Q1",
            "R&D",
            "Entwürfe",
            "Entw&APw-rfe2",
            "v1.0 release",
            "v1_0 release",
            "inbox",
            "100%",
        ]);
        let want: Vec<(String, String)> = [
            (".Work.2004.Q1", "Work/2004/Q1"),
            (".R&-D", "R&D"),
            (".Entw&APw-rfe", "Entwürfe"),
            (".Entw&APw-rfe2", "Entwürfe2"),
            (".v1_0 release", "v1_0 release"),
            (".v1_0 release_2", "v1_0 release_2"),
            (".inbox_", "inbox_"),
            (".100%", "100%"),
            (".Work", "Work"),
            (".Work.2004", "Work/2004"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn latin1_names_are_reported() {
        let m = map_folders(&[b"Entw\xfcrfe".to_vec()]);
        assert_eq!(m[0].dir, ".Entw&APw-rfe");
        assert!(m[0].notes[0].contains("Latin-1"));
    }
}
