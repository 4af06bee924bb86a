//! The mbox From_ line: which lines start a message, and the INTERNALDATE they carry, exactly as
//! UW-IMAP's c-client (2007f, the `unix` driver) decides.
//!
//! c-client's `VALID()` macro reads the line from its end, because the sender part may contain
//! unquoted spaces, and it checks *punctuation only*: where the spaces and colons stand. It
//! accepts these layouts, each optionally followed by ` remote from <host>`:
//!
//! ```text
//! From user Wed Dec  2 05:53 1992            From user Wed Dec  2 05:53:22 1992
//! From user Wed Dec  2 05:53 PST 1992        From user Wed Dec  2 05:53:22 PST 1992
//! From user Wed Dec  2 05:53 -0700 1992      From user Wed Dec  2 05:53:22 -0700 1992
//! From user Wed Dec  2 05:53 1992 PST        From user Wed Dec  2 05:53:22 1992 PST
//! From user Wed Dec  2 05:53 1992 -0700      From user Wed Dec  2 05:53:22 1992 -0700
//! ```
//!
//! where every field may hold any bytes but a NUL: `From x Wed Foo  2 24:1a:cc 1992` starts a
//! message. The line must end with a line feed, and be at least 27 bytes long (a final CR not
//! counted).
//!
//! The date is then read the way `unix_parse()` does it: the fields are copied into an IMAP date
//! string (`dd-mmm-yyyy hh:mm:ss zzz`) and given to `mail_parse_date()`, with its quirks (two- and
//! three-digit years, `strtoul` fields, zone names compared by a 15-bit code, years 1970 to 2097
//! only). When that fails, the fields it had set stay, and the rest is 0: a month c-client does
//! not know gives 1-Jan-1970 00:00:00 UTC, hour 24 gives the day at 00:00:00 UTC. c-client then
//! logged "Unable to parse internal date"; [`MboxDate::parsed`] is false.
//!
//! One deliberate difference: a date without a zone (or with a zone name c-client did not know)
//! is local time; c-client used the UTC offset in force on the day it opened the mailbox, mboxfs
//! uses the one in force on the message's date (see `tz.rs`).

/// The zone of a From_ line date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// No zone, or a name c-client did not know: the date is the server's local time.
    Local,
    /// Seconds east of UTC, from a numeric zone or a zone name in c-client's table.
    Offset(i32),
}

/// The date of a From_ line, as c-client read it (not yet resolved against a time zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MboxDate {
    /// 1970 to 2097 (c-client keeps the year in 7 bits from 1970).
    pub year: u16,
    /// 1 to 12.
    pub month: u8,
    /// 1 to 31, whatever the month (a day past the month's end rolls over).
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    /// 0 to 60.
    pub second: u8,
    pub zone: Zone,
    /// c-client could read the date. When false, the fields are what it had read before it gave
    /// up (the rest 1970-01-01 00:00:00), in UTC.
    pub parsed: bool,
}

/// c-client's `MAILTMPLEN`: the first From_ line of a file must end within the first
/// `MAILTMPLEN - 1` bytes, or c-client does not recognise the file as an mbox.
pub const MAILTMPLEN: usize = 1024;

/// Where `VALID()` found the date: `x` is the end of the date (after a final CR and a
/// ` remote from ...` are taken off), `ti` the offset from `x` of the space before the time, `zn`
/// the offset of the space before the zone (0: no zone).
#[derive(Clone, Copy, Debug)]
struct Layout {
    x: usize,
    ti: isize,
    zn: isize,
}

/// Whether `line` (from `From ` to, without, its line feed) is a From_ line: c-client's
/// `VALID()`. The caller checks that a line feed followed it.
pub fn is_from_line(line: &[u8]) -> bool {
    valid(line, true).is_some()
}

/// Parses one line (without its `\n`; a trailing `\r` is allowed) as a From_ line: `None` when
/// the line does not start a message, else its date as c-client read it.
pub fn parse(line: &[u8]) -> Option<MboxDate> {
    let layout = valid(line, true)?;
    let date = date_string(line, layout);
    Some(mail_parse_date(&date))
}

/// [`parse`] as c-client's `mmdf` driver does it: its `VALID()` takes no final CR off, so a
/// From_ line ending with CRLF is (almost always) not one.
pub fn parse_mmdf(line: &[u8]) -> Option<MboxDate> {
    let layout = valid(line, false)?;
    let date = date_string(line, layout);
    Some(mail_parse_date(&date))
}

/// The date string c-client builds from a From_ line (for notes).
pub fn date_text(line: &[u8]) -> Option<String> {
    let layout = valid(line, true)?;
    Some(String::from_utf8_lossy(&date_string(line, layout)).into_owned())
}

/// [`date_text`] for c-client's `mmdf` driver (see [`parse_mmdf`]).
pub fn date_text_mmdf(line: &[u8]) -> Option<String> {
    let layout = valid(line, false)?;
    Some(String::from_utf8_lossy(&date_string(line, layout)).into_owned())
}

fn sign(b: u8) -> bool {
    b == b'+' || b == b'-'
}

/// The byte at `i` from `x` (negative: before it); 0 outside the line. (`VALID()` may look a
/// few bytes before a short line; such lines can never be From_ lines, because `From` itself
/// would stand where spaces are required, so what it finds there never matters.)
fn at(line: &[u8], x: usize, i: isize) -> u8 {
    let p = x as isize + i;
    if p >= 0 && (p as usize) < line.len() {
        line[p as usize]
    } else {
        0
    }
}

fn valid(line: &[u8], final_cr: bool) -> Option<Layout> {
    if !line.starts_with(b"From ") || memchr::memchr(0, line).is_some() {
        return None;
    }
    let mut x = line.len();
    if final_cr && line[x - 1] == b'\r' {
        x -= 1;
    }
    if x >= 41 {
        // The rightmost space (there is one: after `From`), and ` remote from` before it.
        let sp = memchr::memrchr(b' ', &line[..x]).unwrap_or(4);
        if sp >= 12 && &line[sp - 12..sp] == b" remote from" {
            x = sp - 12;
        }
    }
    if x < 27 {
        return None;
    }
    let c = |i: isize| at(line, x, i);
    let (mut ti, zn): (isize, isize) = if c(-5) == b' ' {
        if c(-8) == b':' {
            (-5, 0)
        } else if c(-9) == b' ' {
            (-9, -9)
        } else if c(-11) == b' ' && sign(c(-10)) {
            (-11, -11)
        } else {
            return None;
        }
    } else if c(-4) == b' ' {
        if c(-9) == b' ' {
            (-9, -4)
        } else {
            return None;
        }
    } else if c(-6) == b' ' {
        if c(-11) == b' ' && sign(c(-5)) {
            (-11, -6)
        } else {
            return None;
        }
    } else {
        return None;
    };
    if c(ti - 3) != b':' {
        return None;
    }
    ti -= if c(ti - 6) == b':' { 9 } else { 6 };
    if c(ti) != b' ' || c(ti - 3) != b' ' || c(ti - 7) != b' ' || c(ti - 11) != b' ' {
        return None;
    }
    Some(Layout { x, ti, zn })
}

/// `dd-mmm-yyyy hh:mm:ss zzz` (or `... hh:mm:ss +zzzz`), from the From_ line's fields, the way
/// `unix_parse()` copies them (no zone: `LCL`).
fn date_string(line: &[u8], Layout { x, ti, zn }: Layout) -> Vec<u8> {
    let t = |i: isize| at(line, x, i);
    let mut d = [0u8; 26];
    d[0] = t(ti - 2);
    d[1] = t(ti - 1);
    d[2] = b'-';
    d[3] = t(ti - 6);
    d[4] = t(ti - 5);
    d[5] = t(ti - 4);
    d[6] = b'-';
    d[11] = b' ';
    d[12] = t(ti + 1);
    d[13] = t(ti + 2);
    d[14] = b':';
    d[15] = t(ti + 4);
    d[16] = t(ti + 5);
    d[17] = b':';
    d[20] = b'-';
    let mut ti = ti + 6;
    if t(ti) == b':' {
        d[18] = t(ti + 1);
        d[19] = t(ti + 2);
        ti += 3;
    } else {
        d[18] = b'0';
        d[19] = b'0';
    }
    if zn == ti {
        ti += if sign(t(zn + 1)) { 6 } else { 4 };
    }
    for k in 0..4 {
        d[7 + k] = t(ti + 1 + k as isize);
    }
    let zone = |k: isize| {
        if zn != 0 {
            t(zn + 1 + k)
        } else {
            b"LCL"[k as usize]
        }
    };
    d[21] = zone(0);
    d[22] = zone(1);
    d[23] = zone(2);
    if sign(d[21]) {
        d[24] = zone(3);
        d[25] = zone(4);
        d[20] = b' ';
        d.to_vec()
    } else {
        d[..24].to_vec()
    }
}

/// C's `strtoul(s + at, &end, 10)`: leading white space, a sign, digits (saturating at
/// `ULONG_MAX`, a minus sign negating modulo 2^64). Returns the value and `end`.
pub(crate) fn strtoul(s: &[u8], at: usize) -> (u64, usize) {
    let g = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut p = at;
    while matches!(g(p), b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        p += 1;
    }
    let negative = g(p) == b'-';
    if sign(g(p)) {
        p += 1;
    }
    if !g(p).is_ascii_digit() {
        return (0, at);
    }
    let mut v: u64 = 0;
    let mut overflow = false;
    while g(p).is_ascii_digit() {
        match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(g(p) - b'0')))
        {
            Some(n) => v = n,
            None => overflow = true,
        }
        p += 1;
    }
    if overflow {
        v = u64::MAX;
    } else if negative {
        v = v.wrapping_neg();
    }
    (v, p)
}

/// c-client's compressed form of a zone name: `(a-'A')*1024 + (b-'A')*32 + (c-'A')`, bytes as
/// signed chars (so that some non-letters name known zones: `EE4` is `EDT`).
fn code(a: u8, b: u8, c: Option<u8>) -> i32 {
    let s = |b: u8| i32::from(b as i8) - i32::from(b'A');
    s(a) * 1024 + s(b) * 32 + c.map_or(0, s)
}

/// The zones of `mail_parse_date()` as Debian builds c-client (no `STRICT_RFC822_TIMEZONES`, no
/// British, Newfoundland, Nome, Bering or Samoa names), in minutes east of UTC.
fn named_zone(ms: i32) -> Option<i32> {
    let c3 = |n: &[u8; 3]| code(n[0], n[1], Some(n[2]));
    let hours: i32 = match ms {
        _ if ms == code(b'U', b'T', None) || ms == c3(b"UTC") || ms == c3(b"GMT") => 0,
        0x5a /* Z */ => 0,
        _ if ms == c3(b"MET") => 1,
        _ if ms == c3(b"EET") => 2,
        _ if ms == c3(b"JST") => 9,
        _ if ms == c3(b"ADT") => -3,
        _ if ms == c3(b"AST") || ms == c3(b"EDT") => -4,
        _ if ms == c3(b"EST") || ms == c3(b"CDT") => -5,
        _ if ms == c3(b"CST") || ms == c3(b"MDT") => -6,
        _ if ms == c3(b"MST") || ms == c3(b"PDT") => -7,
        _ if ms == c3(b"PST") || ms == c3(b"YDT") => -8,
        _ if ms == c3(b"YST") => -9,
        _ if ms == c3(b"HST") => -10,
        // Military zones: A-I +1..+9, K-M +10..+12, N-Y -1..-12.
        0x41..=0x49 => ms - 0x40,
        0x4b..=0x4d => ms - 0x41,
        0x4e..=0x59 => -(ms - 0x4d),
        _ => return None,
    };
    Some(hours * 60)
}

/// c-client's `mail_parse_date()` on the date string of a From_ line (or of an mbx message).
pub(crate) fn mail_parse_date(src: &[u8]) -> MboxDate {
    let s = src.to_ascii_uppercase();
    let g = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut out = MboxDate {
        year: 1970,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        zone: Zone::Offset(0),
        parsed: false,
    };
    if s.is_empty() {
        return out;
    }
    let mut p = 0;
    if g(0).is_ascii_alphabetic()
        && g(1).is_ascii_alphabetic()
        && g(2).is_ascii_alphabetic()
        && g(3) == b','
        && g(4) == b' '
    {
        p = 5;
    }
    while g(p) == b' ' {
        p += 1;
    }
    let (mut m, np) = strtoul(&s, p);
    p = np;
    if m == 0 {
        return out;
    }
    let (d, mut y);
    match g(p) {
        b'/' => {
            // mm/dd/yy (never the case in a From_ line's date string).
            p += 1;
            if !g(p).is_ascii_digit() {
                return out;
            }
            let (dd, np) = strtoul(&s, p);
            p = np;
            if dd == 0 || g(p) != b'/' || !g(p + 1).is_ascii_digit() {
                return out;
            }
            let (yy, np) = strtoul(&s, p + 1);
            p = np;
            if g(p) != 0 {
                return out;
            }
            d = dd;
            y = yy;
        }
        b' ' | b'-' => {
            if g(p) == b' ' {
                while g(p + 1) == b' ' {
                    p += 1;
                }
            }
            d = m;
            if s.len().saturating_sub(p) < 5 {
                return out;
            }
            let ms = code(g(p + 1), g(p + 2), Some(g(p + 3)));
            m = match MONTHS
                .iter()
                .position(|n| code(n[0], n[1], Some(n[2])) == ms)
            {
                Some(i) => i as u64 + 1,
                None => return out,
            };
            if g(p + 4) == g(p) {
                p += 5;
            } else {
                let delimiter = g(p);
                p += 4;
                while g(p).is_ascii_alphabetic() {
                    p += 1;
                }
                if delimiter != g(p) {
                    return out;
                }
                p += 1;
            }
            while g(p) == b' ' {
                p += 1;
            }
            if !g(p).is_ascii_digit() {
                return out;
            }
            let (yy, np) = strtoul(&s, p);
            p = np;
            if g(p) != 0 && g(p) != b' ' {
                return out;
            }
            y = yy;
        }
        _ => return out,
    }
    if d > 31 || m > 12 {
        return out;
    }
    if y < 49 {
        y += 2000;
    } else if y < 999 {
        y += 1900;
    }
    if !(1970..=2097).contains(&y) {
        return out;
    }
    (out.day, out.month, out.year) = (d as u8, m as u8, y as u16);
    let mut ms: i32 = 0;
    if g(p) != 0 {
        let (h, np) = strtoul(&s, p + 1);
        p = np;
        if g(p) != b':' {
            return out;
        }
        let (mi, np) = strtoul(&s, p + 1);
        p = np;
        let sec = if g(p) == b':' {
            let (v, np) = strtoul(&s, p + 1);
            p = np;
            v
        } else {
            0
        };
        if h > 23 || mi > 59 || sec > 60 {
            return out;
        }
        (out.hour, out.minute, out.second) = (h as u8, mi as u8, sec as u8);
        let mut symbolic = g(p) == b'-';
        if g(p) == b' ' {
            while g(p + 1) == b' ' {
                p += 1;
            }
            if !g(p + 1).is_ascii_alphabetic() {
                p += 1;
                let west = g(p) == b'-';
                if west || g(p) == b'+' {
                    p += 1;
                }
                let dig = |i: usize| g(p + i).is_ascii_digit();
                let mut minutes = 0;
                if dig(0) && dig(1) && dig(2) && g(p + 2) < b'6' && dig(3) {
                    let n = |i: usize| i32::from(g(p + i) - b'0');
                    minutes = (n(0) * 10 + n(1)) * 60 + n(2) * 10 + n(3);
                }
                out.zone = Zone::Offset(if west { -minutes } else { minutes } * 60);
                out.parsed = true;
                return out;
            }
            symbolic = true;
        }
        if symbolic {
            p += 1;
            let first = g(p);
            if first == 0 {
                ms = i32::from(b'Z');
            } else {
                p += 1;
                if g(p) == 0 {
                    ms = i32::from(first as i8);
                } else {
                    let second = g(p);
                    p += 1;
                    let third = (g(p) != 0).then(|| g(p));
                    if third.is_some() {
                        p += 1;
                    }
                    ms = if g(p) != 0 {
                        0
                    } else {
                        code(first, second, third)
                    };
                }
            }
        }
    }
    out.zone = match named_zone(ms) {
        Some(minutes) => Zone::Offset(minutes * 60),
        None => Zone::Local,
    };
    out.parsed = true;
    out
}

const MONTHS: [&[u8; 3]; 12] = [
    b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC",
];

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = (u16, u8, u8, u8, u8, u8, Zone, bool);

    fn date(line: &str) -> Option<Fields> {
        parse(line.as_bytes()).map(|d| {
            (
                d.year, d.month, d.day, d.hour, d.minute, d.second, d.zone, d.parsed,
            )
        })
    }

    #[test]
    fn c_client_layouts() {
        use Zone::*;
        let cases = [
            ("From user Wed Dec  2 05:53 1992", (5, 53, 0, Local)),
            ("From user Wed Dec  2 05:53:22 1992", (5, 53, 22, Local)),
            (
                "From user Wed Dec  2 05:53 PST 1992",
                (5, 53, 0, Offset(-8 * 3600)),
            ),
            (
                "From user Wed Dec  2 05:53:22 PST 1992",
                (5, 53, 22, Offset(-28800)),
            ),
            (
                "From user Wed Dec  2 05:53 -0700 1992",
                (5, 53, 0, Offset(-25200)),
            ),
            (
                "From user Wed Dec  2 05:53:22 -0700 1992",
                (5, 53, 22, Offset(-25200)),
            ),
            (
                "From user Wed Dec  2 05:53 1992 PST",
                (5, 53, 0, Offset(-28800)),
            ),
            (
                "From user Wed Dec  2 05:53:22 1992 PST",
                (5, 53, 22, Offset(-28800)),
            ),
            (
                "From user Wed Dec  2 05:53 1992 -0700",
                (5, 53, 0, Offset(-25200)),
            ),
            (
                "From user Wed Dec  2 05:53:22 1992 +0530",
                (5, 53, 22, Offset(19800)),
            ),
        ];
        for (line, (h, m, s, z)) in cases {
            let want = Some((1992, 12, 2, h, m, s, z, true));
            assert_eq!(date(line), want, "{line}");
            let remote = format!("{line} remote from gateway");
            assert_eq!(date(&remote), want, "{remote}");
            let crlf = format!("{line}\r");
            assert_eq!(date(&crlf), want, "{crlf:?}");
        }
    }

    #[test]
    fn senders_of_every_shape() {
        let want = Some((2023, 11, 1, 11, 33, 16, Zone::Local, true));
        for line in [
            "From - Wed Nov 01 11:33:16 2023",
            "From  Wed Nov  1 11:33:16 2023",
            "From Wed Nov  1 11:33:16 2023",
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
            "From user Wed Dec  2 05:53:22 92",
            "From user Wed Dec  2 05:53:22 1992 CEST",
            "From user Wed Dec  2 05:53:22 1992 extra",
            "Fromuser Wed Dec  2 05:53:22 1992",
            "From x\0 Wed Dec  2 05:53:22 1992",
            "From Dec  2 05:53 PST 1992",
        ] {
            assert_eq!(date(line), None, "{line}");
        }
    }

    /// `VALID()` checks punctuation only; the date is then read as c-client reads it (each case
    /// checked with uwdump).
    #[test]
    fn punctuation_only_and_dates_c_client_cannot_read() {
        use Zone::*;
        let cases: [(&str, Fields); 14] = [
            // Month unknown: nothing read, 1-Jan-1970 UTC.
            (
                "From u Wed Foo  2 05:53:22 1992",
                (1970, 1, 1, 0, 0, 0, Offset(0), false),
            ),
            // Hour 24, or letters in the time: the day, at 00:00 UTC.
            (
                "From u Wed Dec  2 24:53:22 1992",
                (1992, 12, 2, 0, 0, 0, Offset(0), false),
            ),
            (
                "From u Wed Dec  2 1a:0b:cc 1992",
                (1992, 12, 2, 0, 0, 0, Offset(0), false),
            ),
            // Minutes `5x`: 05:05:00, the seconds lost, local time.
            (
                "From u Wed Dec  2 05:5x:22 1992",
                (1992, 12, 2, 5, 5, 0, Local, true),
            ),
            // Years outside 1970..=2097; two- and three-digit years.
            (
                "From u Wed Dec  2 05:53:22 1969",
                (1970, 1, 1, 0, 0, 0, Offset(0), false),
            ),
            (
                "From u Wed Dec  2 05:53:22 2106",
                (1970, 1, 1, 0, 0, 0, Offset(0), false),
            ),
            (
                "From u Wed Dec 31 23:59:59 2097",
                (2097, 12, 31, 23, 59, 59, Local, true),
            ),
            (
                "From u Wed Dec  2 05:53:22 0048",
                (2048, 12, 2, 5, 53, 22, Local, true),
            ),
            (
                "From u Wed Dec  2 05:53:22 0000",
                (2000, 12, 2, 5, 53, 22, Local, true),
            ),
            // strtoul fields: signs and spaces.
            (
                "From u Wed Dec +2 +5:+3:+2 1992",
                (1992, 12, 2, 5, 3, 2, Local, true),
            ),
            (
                "From u Wed Dec -2 05:53:22 1992",
                (1970, 1, 1, 0, 0, 0, Offset(0), false),
            ),
            // Zone names by code: EE4 is EDT, ACB the military A; unknown names are local;
            // an invalid numeric zone is UTC.
            (
                "From u Wed Dec  2 05:53:22 EE4 1992",
                (1992, 12, 2, 5, 53, 22, Offset(-4 * 3600), true),
            ),
            (
                "From u Wed Dec  2 05:53:22 ACB 1992",
                (1992, 12, 2, 5, 53, 22, Offset(3600), true),
            ),
            (
                "From u Wed Dec  2 05:53:22 +0760 1992",
                (1992, 12, 2, 5, 53, 22, Offset(0), true),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(date(line), Some(want), "{line}");
        }
        assert_eq!(
            date("From u Wed Dec  2 05:53:22 BST 1992").map(|d| d.6),
            Some(Local)
        );
        assert_eq!(
            date_text(b"From u Wed Foo  2 05:53:22 1992").as_deref(),
            Some(" 2-Foo-1992 05:53:22-LCL")
        );
    }

    #[test]
    fn never_panics_on_short_or_odd_lines() {
        for len in 0..64 {
            for fill in [b' ', b':', b'+', b'1', b'F', b'\r', 0xff] {
                let mut line = b"From ".to_vec();
                line.resize(len.max(5), fill);
                let _ = parse(&line);
                let _ = date_text(&line);
            }
        }
        for s in [
            &b""[..],
            b"-",
            b" ",
            b"1-",
            b"1-JAN",
            b"1 JANUARY 1990 1:2:3 -",
        ] {
            let _ = mail_parse_date(s);
        }
    }
}
