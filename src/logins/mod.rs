//! Logins of a child: the upstream sessions it crawls with, and the flows that obtain and keep
//! them (LOGINS.md).

pub mod weread;
