//! A minimal IMAP client for the tests that talk to Dovecot line by line.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

/// A connection to 127.0.0.1 that keeps every line the server sends.
pub struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    n: usize,
}

impl Imap {
    /// Connects, and reads the greeting (which must be `* OK`).
    pub fn connect(port: u16) -> Imap {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut c = Imap {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            n: 0,
        };
        let greeting = c.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        c
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        assert!(!l.is_empty(), "connection closed");
        l.trim_end_matches(['\r', '\n']).to_string()
    }

    /// Sends a command (with an optional literal); returns (untagged lines, tagged answer
    /// without its tag and Dovecot's timing).
    pub fn cmd(&mut self, text: &str, literal: Option<&[u8]>) -> (Vec<String>, String) {
        self.n += 1;
        let tag = format!("t{}", self.n);
        let mut untagged = Vec::new();
        match literal {
            None => self
                .writer
                .write_all(format!("{tag} {text}\r\n").as_bytes())
                .unwrap(),
            Some(bytes) => {
                self.writer
                    .write_all(format!("{tag} {text} {{{}}}\r\n", bytes.len()).as_bytes())
                    .unwrap();
                let l = self.line();
                if let Some(answer) = l.strip_prefix(&format!("{tag} ")) {
                    return (untagged, strip_timing(answer));
                }
                assert!(l.starts_with('+'), "{l}");
                self.writer.write_all(bytes).unwrap();
                self.writer.write_all(b"\r\n").unwrap();
            }
        }
        loop {
            let l = self.line();
            if let Some(answer) = l.strip_prefix(&format!("{tag} ")) {
                return (untagged, strip_timing(answer));
            }
            untagged.push(l);
        }
    }
}

/// `NO [NOPERM] Permission denied (0.001 + 0.000 secs).` -> `NO [NOPERM] Permission denied`.
fn strip_timing(answer: &str) -> String {
    match answer.rfind(" (") {
        Some(i) if answer.ends_with("secs).") => answer[..i].to_string(),
        _ => answer.to_string(),
    }
}
