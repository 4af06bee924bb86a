//! The scanner and the index against UW-IMAP's c-client itself, on thousands of small mbox texts
//! made from the hard cases: From_ lines in odd places and with odd dates, blank lines, CR and
//! CRLF, status headers in any order, case and spelling, continuation lines, X-UID sequences,
//! X-IMAP/X-IMAPbase, keywords, Content-Length, a missing final newline.
//!
//! Each text is read by uwdump (c-client 2007f) and by mboxfs (in process), and every message is
//! compared: bytes as IMAP serves them, flags, recent, keywords, INTERNALDATE, UID, and the
//! folder's UIDVALIDITY and UIDNEXT, and c-client's warnings against mboxfs's notes. Only the
//! deliberate differences are allowed (`common::uw::Deliberate`), and each must show at least
//! once. On a mismatch the (shrunk) input is printed escaped, with both readings.
//!
//! The generator is seeded: the same texts on every run (`MBOXFS_DIFF_SEED`, `MBOXFS_DIFF_CASES`
//! change that).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use common::uw::{self, Deliberate, UwReading};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

/// One choice among byte strings.
fn pick(options: &[&'static [u8]]) -> BoxedStrategy<Vec<u8>> {
    prop::sample::select(options.to_vec())
        .prop_map(<[u8]>::to_vec)
        .boxed()
}

/// The date part of a From_ line: c-client's layouts, with fields it can and cannot read.
fn date() -> BoxedStrategy<Vec<u8>> {
    let weekday = pick(&[b"Wed", b"Wed", b"Wed", b"xyz", b"1:2"]);
    let month = pick(&[
        b"Dec", b"Dec", b"Dec", b"Jan", b"Foo", b"dec", b"FEB", b"JB.",
    ]);
    let day = pick(&[
        b" 2", b" 2", b"31", b"00", b"32", b"+2", b"-2", b"x1", b"2x", b" 9",
    ]);
    let time = pick(&[
        b"05:53:22",
        b"05:53:22",
        b"05:53",
        b"23:59:60",
        b"23:59:61",
        b"24:00:00",
        b"1a:0b:cc",
        b"05:5x:22",
        b" 5: 3: 2",
        b"+5:+3:+2",
        b"00:00:00",
    ]);
    let zone = pick(&[
        b"", b"", b"", b"", b"", b"PST", b"pst", b"-0700", b"+0530", b"+9999", b"EE4", b"ACB",
        b"XYZ", b"+07x0", b"BST", b"CEST",
    ]);
    let year = pick(&[
        b"1992", b"1992", b"1992", b"2003", b"1969", b"1970", b"2097", b"2098", b"2106", b"0000",
        b"0048", b"0049", b" 992", b"19a2",
    ]);
    let remote = pick(&[b"", b"", b"", b"", b"", b"", b" remote from gw"]);
    (weekday, month, day, time, zone, any::<bool>(), year, remote)
        .prop_map(|(w, m, d, t, z, after, y, r)| {
            let sp = || b" ".to_vec();
            let (zb, za) = match (z.is_empty(), after) {
                (true, _) => (Vec::new(), Vec::new()),
                (false, false) => ([sp(), z].concat(), Vec::new()),
                (false, true) => (Vec::new(), [sp(), z].concat()),
            };
            [w, sp(), m, sp(), d, sp(), t, zb, sp(), y, za, r].concat()
        })
        .boxed()
}

/// A line that starts with `From ` (a From_ line or not), with its line end.
fn from_line() -> BoxedStrategy<Vec<u8>> {
    let sender = pick(&[b"a", b"a", b"MAILER-DAEMON", b"", b"x y", b"u@h.example"]);
    let good =
        (sender, date()).prop_map(|(s, d)| [b"From ".to_vec(), s, b" ".to_vec(), d].concat());
    let bad = pick(&[
        b"From the desk of me",
        b"From ",
        b"From a Wed Dec 2 05:53 1992",
        b"From a Sun, 11 Nov 2007 06:58:35 +0200",
        b"From a Wed Dec  2 05:53:22 1992 extra",
        b"From x\0 Wed Dec  2 05:53:22 1992",
        b"From Dec  2 05:53 PST 1992",
    ]);
    let end = pick(&[b"\n", b"\n", b"\n", b"\n", b"\n", b"\r\n", b"\r\r\n", b"\r"]);
    (prop_oneof![9 => good, 1 => bad], end)
        .prop_map(|(l, e)| [l, e].concat())
        .boxed()
}

/// A line end, mostly LF.
fn eol() -> BoxedStrategy<Vec<u8>> {
    pick(&[b"\n", b"\n", b"\n", b"\n", b"\n", b"\n", b"\r\n"])
}

fn status_letters() -> BoxedStrategy<Vec<u8>> {
    pick(&[
        b"R", b"RO", b"O", b"", b"DFAT", b"RODFAT", b"ro", b"R\0O", b"R\rO", b" x O",
    ])
}

fn keyword_list() -> BoxedStrategy<Vec<u8>> {
    let name = prop_oneof![
        40 => pick(&[
            b"a",
            b"B",
            b"$Label1",
            b"Junk",
            b"A",
            b"b",
            b"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
            b"a\tb",
            b"(x)",
        ]),
        // c-client loops forever on a bare CR here, and crashes on a NUL in a folder header.
        1 => pick(&[b"x\ry", b"n\0m"]),
    ];
    let sep = pick(&[b" ", b" ", b" ", b"  ", b"\t"]);
    prop::collection::vec((sep, name), 0..4)
        .prop_map(|v| v.into_iter().flat_map(|(s, n)| [s, n].concat()).collect())
        .boxed()
}

/// `X-IMAP`/`X-IMAPbase` values.
fn folder_value() -> BoxedStrategy<Vec<u8>> {
    let uidvalidity = pick(&[
        b"5",
        b"5",
        b"5",
        b"5",
        b"1104919200",
        b"1104919200",
        b"0",
        b"",
        b"\t5",
        b"0005",
        b"99999999999",
    ]);
    let uidlast = pick(&[
        b"10",
        b"10",
        b"10",
        b"10",
        b"3",
        b"3",
        b"0",
        b"",
        b"0000000012",
        b"10abc",
        b"4294967295",
    ]);
    (uidvalidity, uidlast, keyword_list())
        .prop_map(|(v, l, k)| [b" ".to_vec(), v, b" ".to_vec(), l, k].concat())
        .boxed()
}

fn uid_value() -> BoxedStrategy<Vec<u8>> {
    pick(&[
        b"1",
        b"2",
        b"3",
        b"4",
        b"5",
        b"8",
        b"11",
        b"13",
        b"50",
        b"1",
        b"2",
        b"3",
        b"4",
        b"5",
        b"8",
        b"11",
        b"13",
        b"50",
        b"0",
        b"abc",
        b" 7",
        b"\t7",
        b"3x",
        b"",
        b"99999999999",
    ])
}

/// A header line, with its line end.
fn header_line() -> BoxedStrategy<Vec<u8>> {
    let named = |name: &'static [u8], value: BoxedStrategy<Vec<u8>>| {
        (value, eol()).prop_map(move |(v, e)| [name.to_vec(), v, e].concat())
    };
    prop_oneof![
        6 => pick(&[b"Subject: s", b"From: x@y", b"To: z", b"Sender: q", b"X-Foo: 1", b"Stat: 2"])
            .prop_flat_map(|l| eol().prop_map(move |e| [l.clone(), e].concat())),
        3 => named(b"Status: ", status_letters()),
        2 => named(b"X-Status: ", status_letters()),
        1 => named(b"Status:", status_letters()),
        2 => (pick(&[
            b"status: ", b"STATUS: ", b"Status : ", b"Status ", b"X-status: ", b"x-uid: ",
            b"X-IMAPBASE: 5 10", b"x-keywords: ", b"X-STATUS: ", b"Sta\rtus: ", b"X-U\rID: ",
            b"Status\r: ", b"Sta\0tus: ", b"X-UID\0: ", b"Content-length: ",
        ]), status_letters(), eol())
            .prop_map(|(n, v, e)| [n, v, e].concat()),
        3 => named(b"X-Keywords:", keyword_list()),
        3 => named(b"X-UID: ", uid_value()),
        1 => named(b"X-IMAPbase:", folder_value()),
        1 => named(b"X-IMAP:", folder_value()),
        1 => named(b"Content-Length: ", pick(&[b"0", b"3", b"10", b"100", b"x"])),
        2 => (pick(&[b" cont", b"\tmore", b" X-UID: 3", b" O", b"\r cont"]), eol())
            .prop_map(|(l, e)| [l, e].concat()),
        1 => from_line(),
        1 => (pick(&[b"S: x\ry", b"Subject: a\r", b"\rx: y", b"Sx\0y: 1", b">From q", b": odd",
                    b"X-", b"Status", b"X-UID", b"\0", b"\tStatus: R"]), eol())
            .prop_map(|(l, e)| [l, e].concat()),
    ]
    .boxed()
}

/// What ends a header: a blank line, or something that only looks like one.
fn header_end() -> BoxedStrategy<Vec<u8>> {
    pick(&[
        b"\n", b"\n", b"\n", b"\n", b"\n", b"\n", b"\r\n", b"", b" \n", b"\r\r\n",
    ])
}

/// A body line, with its line end.
fn body_line() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => (pick(&[b"body", b"", b"x y", b">From x", b"From the desk", b"line\r", b"x\ry",
                    b"\0z", b"Status: R", b" "]), eol())
            .prop_map(|(l, e)| [l, e].concat()),
        1 => from_line(),
    ]
    .boxed()
}

fn message() -> BoxedStrategy<Vec<u8>> {
    (
        from_line(),
        prop::collection::vec(header_line(), 0..6),
        header_end(),
        prop::collection::vec(body_line(), 0..4),
        pick(&[b"", b"\n", b"\n", b"\n", b"\r\n", b"\n\n"]),
    )
        .prop_map(|(f, h, e, b, s)| [f, h.concat(), e, b.concat(), s].concat())
        .boxed()
}

fn mbox() -> BoxedStrategy<Vec<u8>> {
    // The first From_ line decides whether the file is an mbox: mostly a good one.
    let first_from = prop_oneof![
        8 => (date(), pick(&[b"\n", b"\n", b"\r\n"]))
            .prop_map(|(d, e)| [b"From a ".to_vec(), d, e].concat()),
        1 => from_line(),
    ];
    let folder = prop_oneof![
        1 => Just(Vec::new()),
        1 => (pick(&[b"X-IMAPbase:", b"X-IMAP:"]), folder_value())
            .prop_map(|(n, v)| [n, v, b"\n".to_vec()].concat()),
    ];
    (
        prop_oneof![
            12 => Just(Vec::new()),
            1 => pick(&[b"\n", b"\r\n", b"\n \n", b" ", b"\n\r"]),
        ],
        first_from,
        folder,
        prop::collection::vec(message(), 1..5),
        0..10u8,
    )
        .prop_map(|(lead, first_from, folder, msgs, end)| {
            let mut data = lead;
            let mut msgs = msgs.into_iter();
            let first = msgs.next().unwrap();
            let line = first
                .iter()
                .position(|&b| b == b'\n')
                .map_or(first.len(), |i| i + 1);
            data.extend_from_slice(&first_from);
            data.extend_from_slice(&folder);
            data.extend_from_slice(&first[line..]);
            for m in msgs {
                data.extend(m);
            }
            match end {
                // No final newline.
                0 if data.last() == Some(&b'\n') => {
                    data.pop();
                }
                1 => data.extend_from_slice(b"\n"),
                2 => {
                    // A CRLF file.
                    data = uw::crlf(&data);
                }
                _ => {}
            }
            data
        })
        .boxed()
}

/// How often each deliberate difference showed, and other counts.
#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    messages: usize,
    refused: usize,
    deliberate: BTreeMap<Deliberate, usize>,
    hangs_skipped: usize,
    hangs_run: usize,
}

/// Reads one text with c-client and with mboxfs, and compares.
fn check_one(data: &[u8], tally: &Mutex<Tally>, work: &Path) -> Result<(), TestCaseError> {
    let mf = uw::mf_read(data);
    // c-client loops forever on some inputs; mboxfs says so. Check that on a few of them, and
    // spare the time of the others.
    let predicted_hang = mf.as_ref().is_ok_and(|m| {
        m.quirks & mboxfs::scan::quirk::HANGS != 0
            || m.notes.iter().any(|n| n.contains("loops forever"))
    });
    let timeout = {
        let mut t = tally.lock().unwrap();
        if predicted_hang {
            if t.hangs_run >= 3 {
                t.hangs_skipped += 1;
                return Ok(());
            }
            t.hangs_run += 1;
            2
        } else {
            20
        }
    };
    let reading = uw::uw_read(data, work, Duration::from_secs(timeout));
    let c = uw::compare(data, &reading, &mf);
    if !c.problems.is_empty() {
        return Err(TestCaseError::fail(format!(
            "input: b\"{}\"\n{}\nc-client: {reading:?}\nmboxfs: {mf:?}",
            uw::escaped(data),
            c.problems.join("\n")
        )));
    }
    let mut t = tally.lock().unwrap();
    t.cases += 1;
    t.messages += c.messages;
    if let UwReading::Refused(_) = reading {
        t.refused += 1;
        if std::env::var_os("MBOXFS_DIFF_SHOW_REFUSED").is_some() && t.refused < 40 {
            eprintln!(
                "refused: b\"{}\"",
                uw::escaped(&data[..data.len().min(120)])
            );
        }
    }
    for d in c.deliberate {
        *t.deliberate.entry(d).or_default() += 1;
    }
    Ok(())
}

#[test]
fn scanner_and_index_agree_with_c_client() {
    let started = std::time::Instant::now();
    uw::uwdump();
    let work = tempfile::Builder::new()
        .prefix("mboxfs-diff")
        .tempdir()
        .unwrap();
    let cases: u32 = std::env::var("MBOXFS_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("MBOXFS_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_c11e);
    let tally = Mutex::new(Tally::default());
    // Two runners side by side (the machine's two cores), each with its own seed.
    const RUNNERS: u64 = 2;
    let results: Vec<Result<(), TestError<Vec<u8>>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..RUNNERS)
            .map(|k| {
                let (tally, work) = (&tally, work.path());
                scope.spawn(move || {
                    let config = Config {
                        cases: cases.div_ceil(RUNNERS as u32),
                        rng_seed: RngSeed::Fixed(seed.wrapping_add(k)),
                        failure_persistence: None,
                        max_shrink_iters: 2000,
                        ..Config::default()
                    };
                    TestRunner::new(config).run(&mbox(), |data| check_one(&data, tally, work))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let t = tally.into_inner().unwrap();
    eprintln!(
        "differential: {} cases, {} messages compared, {} files c-client refuses, deliberate \
         differences {:?}, {} predicted c-client hangs checked and {} skipped, in {:.1} s",
        t.cases,
        t.messages,
        t.refused,
        t.deliberate,
        t.hangs_run,
        t.hangs_skipped,
        started.elapsed().as_secs_f64()
    );
    for result in results {
        match result {
            Ok(()) => {}
            Err(TestError::Fail(why, data)) => panic!(
                "mboxfs and c-client differ (shrunk input below):\n{why}\nshrunk input: b\"{}\"",
                uw::escaped(&data)
            ),
            Err(e) => panic!("{e}"),
        }
    }
    // The generator reaches the hard cases.
    assert!(t.messages > cases as usize, "{t:?}");
    assert!(t.refused > 10, "{t:?}");
    for d in [
        Deliberate::PastEof,
        Deliberate::NulInName,
        Deliberate::WrongSize,
        Deliberate::CclientFails,
    ] {
        assert!(
            t.deliberate.get(&d).copied().unwrap_or(0) > 0,
            "{d:?} never showed: {t:?}"
        );
    }
}
