//! The store's operations, each written once over a [`Tx`](super::db::Tx) and run on either
//! backend. A public method of [`Store`](super::Store) moves what it needs into a request and
//! hands it to [`Db::write`](super::db::Db::write) or [`Db::read`](super::db::Db::read); the
//! SQL and the logic live in the private `async fn`s beside it.

mod alloc;
mod articles;
pub(crate) mod attempts;
mod beats;
pub(crate) mod bulk;
pub(crate) mod catalog;
mod claim;
mod commands;
pub(crate) mod console;
pub(crate) mod due;
mod flows;
pub(crate) mod lifecycle;
pub(crate) mod migrate;
pub(crate) mod monitor;
pub(crate) mod nodes;
mod recovery;
mod schedule;
mod settings;
mod sources;

pub(crate) use settings::{SyncLogRow, insert_sync_log};
