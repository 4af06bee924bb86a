//! Turning a From_ line date into INTERNALDATE (seconds since the epoch).
//!
//! c-client wrote From_ lines with `ctime()`: local time with no zone. Such dates are read in the
//! UW server's time zone (`--timezone`, default the host's). A numeric zone, or a zone name
//! c-client knew, wins.
//!
//! Deliberate difference: c-client applied the UTC offset in force on the day it opened the
//! mailbox (today's, so the INTERNALDATE of a winter message moved when summer came); mboxfs
//! applies the offset in force on the message's date, with the zone's DST rules, which is what
//! the date meant and stays the same on every run.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Unit};

use crate::fromline::{MboxDate, Zone};

/// Loads a zone by IANA name (`UTC`, `Europe/Berlin`), or the host's zone when `name` is `None`.
pub fn load(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::system()),
        Some(n) => TimeZone::get(n).map_err(|e| format!("unknown time zone {n:?}: {e}")),
    }
}

/// The INTERNALDATE of a From_ line date. Days past the end of a month roll over into the next,
/// as c-client's date arithmetic did; a leap second counts as the next second.
pub fn resolve(date: &MboxDate, local: &TimeZone) -> Option<i64> {
    let first = Date::new(date.year as i16, date.month as i8, 1).ok()?;
    let day = first.checked_add((i64::from(date.day) - 1).days()).ok()?;
    let leap = i64::from(date.second == 60);
    let second = date.second - leap as u8;
    let time = Time::new(date.hour as i8, date.minute as i8, second as i8, 0).ok()?;
    // Seconds of the wall-clock reading taken as UTC; jiff's Timestamp stops short of
    // 9999-12-31, so this is plain day arithmetic.
    let days = day
        .since((Unit::Day, Date::constant(1970, 1, 1)))
        .ok()?
        .get_days();
    let wall = i64::from(days) * 86400
        + i64::from(date.hour) * 3600
        + i64::from(date.minute) * 60
        + i64::from(second)
        + leap;
    let offset = match date.zone {
        Zone::Offset(secs) => i64::from(secs),
        Zone::Local => match local
            .to_ambiguous_timestamp(DateTime::from_parts(day, time))
            .compatible()
        {
            Ok(ts) => return Some(ts.as_second() + leap),
            // At the edges of jiff's range: the zone's offset at that edge.
            Err(_) => {
                let edge = if wall < 0 {
                    Timestamp::MIN
                } else {
                    Timestamp::MAX
                };
                i64::from(local.to_offset(edge).seconds())
            }
        },
    };
    Some(wall - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fromline::parse;

    fn at(line: &str, tz: &str) -> Option<i64> {
        resolve(&parse(line.as_bytes()).unwrap(), &load(Some(tz)).unwrap())
    }

    #[test]
    fn zones() {
        let utc = at("From x Wed Dec  2 05:53:22 1992", "UTC").unwrap();
        assert_eq!(utc, 723275602);
        assert_eq!(
            at("From x Wed Dec  2 05:53:22 1992", "America/Los_Angeles"),
            Some(utc + 8 * 3600)
        );
        assert_eq!(
            at("From x Wed Dec  2 05:53:22 1992 -0700", "Asia/Tokyo"),
            Some(utc + 7 * 3600)
        );
        assert_eq!(
            at("From x Wed Dec  2 05:53:22 PST 1992", "UTC"),
            Some(utc + 8 * 3600)
        );
        // DST: summer in Berlin is UTC+2.
        let summer = at("From x Thu Jul  2 12:00:00 1992", "UTC").unwrap();
        assert_eq!(
            at("From x Thu Jul  2 12:00:00 1992", "Europe/Berlin"),
            Some(summer - 2 * 3600)
        );
    }

    #[test]
    fn extremes_and_rollover() {
        let date = |year| MboxDate {
            year,
            month: 12,
            day: 31,
            hour: 23,
            minute: 59,
            second: 59,
            zone: Zone::Local,
            parsed: true,
        };
        let utc = load(Some("UTC")).unwrap();
        assert!(resolve(&date(1), &utc).unwrap() < -62_000_000_000);
        assert!(resolve(&date(9999), &utc).unwrap() > 253_000_000_000);
        // c-client's range: 1970 to 2097.
        assert_eq!(at("From x Thu Jan  1 00:00:00 1970", "UTC"), Some(0));
        assert_eq!(
            at("From x Wed Dec 31 23:59:59 2097", "UTC"),
            Some(4_039_372_799)
        );
        let mar3 = at("From x Tue Mar  3 00:00:00 1992", "UTC").unwrap();
        assert_eq!(
            at("From x Mon Feb 31 00:00:00 1992", "UTC"),
            Some(mar3 - 86400)
        );
        let leap = at("From x Wed Dec 31 23:59:60 2008", "UTC").unwrap();
        assert_eq!(leap, at("From x Thu Jan  1 00:00:00 2009", "UTC").unwrap());
    }
}
