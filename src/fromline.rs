//! The mbox From_ line: which lines start a message, and the date they carry.
//!
//! This follows c-client's `VALID()` macro (UW-IMAP's `unix` driver), which decides where UW-IMAP
//! saw messages begin. Like `VALID()` it reads the line from its end, because the sender part may
//! contain unquoted spaces, and it accepts these date layouts, each optionally followed by
//! ` remote from <host>`:
//!
//! ```text
//! From user Wed Dec  2 05:53 1992            From user Wed Dec  2 05:53:22 1992
//! From user Wed Dec  2 05:53 PST 1992        From user Wed Dec  2 05:53:22 PST 1992
//! From user Wed Dec  2 05:53 -0700 1992      From user Wed Dec  2 05:53:22 -0700 1992
//! From user Wed Dec  2 05:53 1992 PST        From user Wed Dec  2 05:53:22 1992 PST
//! From user Wed Dec  2 05:53 1992 -0700      From user Wed Dec  2 05:53:22 1992 -0700
//! ```
//!
//! `VALID()` only checks where the spaces and colons stand; this parser also checks that the
//! fields are what they claim to be (a month name, digits for day, time and year), so that a body
//! line that merely has the right shape is not taken for a message start. Dovecot's
//! `mbox_from_parse()` is looser in places (any named zone, an RFC 2822 style date); the oracle
//! test in `tests/oracle.rs` lists where the two rules give different results.

/// The zone of a From_ line date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// No zone, or a name c-client did not know: the date is the server's local time.
    Local,
    /// Seconds east of UTC, from a numeric zone or a zone name in c-client's table.
    Offset(i32),
}

/// The date of a From_ line, as written (not yet resolved against a time zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MboxDate {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub zone: Zone,
}

/// Lines longer than this are never From_ lines. Real ones are well under 1 KiB; the cap keeps a
/// hostile multi-megabyte line that starts with `From ` from being scanned backwards.
pub const MAX_FROM_LINE: usize = 4096;

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// Parses one line (without its `\n`; a trailing `\r` is allowed) as a From_ line.
///
/// Returns `None` when the line does not start a message.
pub fn parse(line: &[u8]) -> Option<MboxDate> {
    let mut line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.starts_with(b"From ") || line.len() > MAX_FROM_LINE {
        return None;
    }
    // ` remote from <host>` (smail, Solaris): c-client only looks for it on lines of 41 bytes
    // or more, after the rightmost space.
    if line.len() >= 41 {
        if let Some(sp) = memchr::memrchr(b' ', line) {
            if line[..sp].ends_with(b" remote from") {
                line = &line[..sp - b" remote from".len()];
            }
        }
    }
    if line.len() < 27 {
        return None;
    }
    let n = line.len();
    let at = |back: usize| line[n - back];
    let sign = |b: u8| b == b'+' || b == b'-';
    // Each layout, read from the end: `ti` is the distance back to the space after the time,
    // then where the zone and the year stand.
    let (ti, zone, year_at): (usize, &[u8], usize) = if at(5) == b' ' && at(8) == b':' {
        (5, b"", n - 4) // hh:mm yyyy
    } else if at(5) == b' ' && at(9) == b' ' {
        (9, &line[n - 8..n - 5], n - 4) // hh:mm zzz yyyy
    } else if at(5) == b' ' && at(11) == b' ' && sign(at(10)) {
        (11, &line[n - 10..n - 5], n - 4) // hh:mm +zzzz yyyy
    } else if at(4) == b' ' && at(9) == b' ' {
        (9, &line[n - 3..], n - 8) // hh:mm yyyy zzz
    } else if at(6) == b' ' && at(11) == b' ' && sign(at(5)) {
        (11, &line[n - 5..], n - 10) // hh:mm yyyy +zzzz
    } else {
        return None;
    };
    // The time: `hh:mm` or `hh:mm:ss` ending just before `ti`.
    let t_end = n - ti;
    if t_end < 6 || line[t_end - 3] != b':' {
        return None;
    }
    let with_seconds = t_end >= 9 && line[t_end - 6] == b':';
    let t_start = t_end - if with_seconds { 8 } else { 5 };
    // Before the time: ` www mmm dd ` with spaces at fixed places. The space before the
    // weekday must end a sender field (possibly empty), not be the one after `From`.
    if t_start < 17 {
        return None;
    }
    let s = t_start - 1;
    if line[s] != b' ' || line[s - 3] != b' ' || line[s - 7] != b' ' || line[s - 11] != b' ' {
        return None;
    }
    if !line[s - 10..s - 7].iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let month = month_number(&line[s - 6..s - 3])?;
    let day = match &line[s - 2..s] {
        [b' ', d] => digits(&[*d])?,
        dd => digits(dd)?,
    };
    let hour = digits(&line[t_start..t_start + 2])?;
    let minute = digits(&line[t_start + 3..t_start + 5])?;
    let second = if with_seconds {
        digits(&line[t_start + 6..t_start + 8])?
    } else {
        0
    };
    let year = digits(&line[year_at..year_at + 4])?;
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(MboxDate {
        year: year as u16,
        month,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        zone: parse_zone(zone)?,
    })
}

fn month_number(name: &[u8]) -> Option<u8> {
    let lower = [
        name[0].to_ascii_lowercase(),
        name[1].to_ascii_lowercase(),
        name[2].to_ascii_lowercase(),
    ];
    MONTHS
        .iter()
        .position(|m| **m == lower)
        .map(|i| i as u8 + 1)
}

fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// A numeric zone `+hhmm`, a three-letter name, or nothing.
fn parse_zone(zone: &[u8]) -> Option<Zone> {
    match zone {
        [] => Some(Zone::Local),
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 4 => {
            let hh = digits(&rest[..2])?;
            let mm = digits(&rest[2..])?;
            if mm > 59 {
                return None;
            }
            let secs = (hh * 3600 + mm * 60) as i32;
            Some(Zone::Offset(if *sign == b'-' { -secs } else { secs }))
        }
        name if name.len() == 3 && name.iter().all(u8::is_ascii_alphabetic) => {
            Some(named_zone(name).map_or(Zone::Local, |h| Zone::Offset(h * 3600)))
        }
        _ => None,
    }
}

/// The three-letter zone names c-client's `mail_parse_date()` knows (its default build), in
/// hours east of UTC. c-client read any other name as local time.
fn named_zone(name: &[u8]) -> Option<i32> {
    let upper = name.to_ascii_uppercase();
    Some(match upper.as_slice() {
        b"UTC" | b"GMT" => 0,
        b"MET" => 1,
        b"EET" => 2,
        b"JST" => 9,
        b"ADT" => -3,
        b"AST" | b"EDT" => -4,
        b"EST" | b"CDT" => -5,
        b"CST" | b"MDT" => -6,
        b"MST" | b"PDT" => -7,
        b"PST" | b"YDT" => -8,
        b"YST" => -9,
        b"HST" => -10,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(line: &str) -> Option<(u16, u8, u8, u8, u8, u8, Zone)> {
        parse(line.as_bytes()).map(|d| (d.year, d.month, d.day, d.hour, d.minute, d.second, d.zone))
    }

    #[test]
    fn c_client_layouts() {
        use Zone::*;
        let cases = [
            (
                "From user Wed Dec  2 05:53 1992",
                (1992, 12, 2, 5, 53, 0, Local),
            ),
            (
                "From user Wed Dec  2 05:53:22 1992",
                (1992, 12, 2, 5, 53, 22, Local),
            ),
            (
                "From user Wed Dec  2 05:53 PST 1992",
                (1992, 12, 2, 5, 53, 0, Offset(-8 * 3600)),
            ),
            (
                "From user Wed Dec  2 05:53:22 PST 1992",
                (1992, 12, 2, 5, 53, 22, Offset(-28800)),
            ),
            (
                "From user Wed Dec  2 05:53 -0700 1992",
                (1992, 12, 2, 5, 53, 0, Offset(-25200)),
            ),
            (
                "From user Wed Dec  2 05:53:22 -0700 1992",
                (1992, 12, 2, 5, 53, 22, Offset(-25200)),
            ),
            (
                "From user Wed Dec  2 05:53 1992 PST",
                (1992, 12, 2, 5, 53, 0, Offset(-28800)),
            ),
            (
                "From user Wed Dec  2 05:53:22 1992 PST",
                (1992, 12, 2, 5, 53, 22, Offset(-28800)),
            ),
            (
                "From user Wed Dec  2 05:53 1992 -0700",
                (1992, 12, 2, 5, 53, 0, Offset(-25200)),
            ),
            (
                "From user Wed Dec  2 05:53:22 1992 +0530",
                (1992, 12, 2, 5, 53, 22, Offset(19800)),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(date(line), Some(want), "{line}");
            let remote = format!("{line} remote from gateway");
            assert_eq!(date(&remote), Some(want), "{remote}");
            let crlf = format!("{line}\r");
            assert_eq!(date(&crlf), Some(want), "{crlf:?}");
        }
    }

    #[test]
    fn senders_of_every_shape() {
        let want = Some((2023, 11, 1, 11, 33, 16, Zone::Local));
        for line in [
            "From - Wed Nov 01 11:33:16 2023",
            "From  Wed Nov  1 11:33:16 2023",
            "From MAILER-DAEMON  Wed Nov  1 11:33:16 2023",
            "From \"a b\"@example.org Wed Nov  1 11:33:16 2023",
            "From foo at example.org  Wed Nov  1 11:33:16 2023",
            "From with several unquoted spaces Wed Nov  1 11:33:16 2023",
        ] {
            assert_eq!(date(line), want, "{line}");
        }
    }

    #[test]
    fn not_from_lines() {
        for line in [
            "From ",
            "From the desk of the editor: hello",
            "From - Sat Apr 12 2025 15:59:28",
            "From nobody Sun, 11 Nov 2007 06:58:35 +0200",
            "from user Wed Dec  2 05:53:22 1992",
            ">From user Wed Dec  2 05:53:22 1992",
            "From user Wed Dec 2 05:53:22 1992",
            "From user Wed Foo  2 05:53:22 1992",
            "From user Wed Dec  2 25:53:22 1992",
            "From user Wed Dec  2 05:53:22 92",
            "From user Wed Dec 32 05:53:22 1992",
            "From user Wed Dec  2 05:53:22 1992 CEST",
            "From Wed Dec  2 05:53:22 1992",
            "Fromuser Wed Dec  2 05:53:22 1992",
        ] {
            assert_eq!(date(line), None, "{line}");
        }
    }

    #[test]
    fn unknown_zone_names_are_local() {
        assert_eq!(
            date("From x Wed Dec  2 05:53 XYZ 1992").map(|d| d.6),
            Some(Zone::Local)
        );
    }

    #[test]
    fn never_panics_on_short_or_odd_lines() {
        for len in 0..64 {
            for fill in [b' ', b':', b'+', b'1', b'F'] {
                let mut line = b"From ".to_vec();
                line.resize(len.max(5), fill);
                let _ = parse(&line);
            }
        }
    }
}
