//! The `mboxfs` command: see `mboxfs --help`.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    mboxfs::run(mboxfs::cli::Cli::parse())
}
