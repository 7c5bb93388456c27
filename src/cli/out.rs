//! Standard output of the commands. `println!` panics when the reader has gone away
//! (`cascade feed list | head -1`); these writers turn a closed pipe into [`StdoutClosed`],
//! which ends the command quietly with status 0, as cargo and ripgrep do.

use std::fmt;
use std::io::{self, Write};

/// Standard output's reader closed the pipe: nobody reads what is left to print.
#[derive(Debug, thiserror::Error)]
#[error("standard output closed")]
pub struct StdoutClosed;

/// Writes `args` to standard output and flushes it.
///
/// # Errors
/// [`StdoutClosed`] on a closed pipe; other write failures as they are.
pub fn write(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => anyhow::Error::new(StdoutClosed),
            _ => anyhow::Error::new(e).context("while writing to standard output"),
        })
}

/// Whether `error` is (or was caused by) a closed standard output.
pub fn is_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<StdoutClosed>())
}

/// `print!` that returns [`StdoutClosed`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*))
    };
}

/// `println!` that returns [`StdoutClosed`] instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};
