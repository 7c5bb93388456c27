#![forbid(unsafe_code)]
//! The `cascade` binary: parse arguments and hand over to the library.

use clap::Parser;
use std::process::ExitCode;
use werss_cascade::cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse_from(cli::normalize_args(std::env::args_os()));
    cli::run(args)
}
