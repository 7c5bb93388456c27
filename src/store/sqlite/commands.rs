//! Node commands on SQLite: the shared methods of [`crate::store::commands`], binding times
//! as text.

use super::SqliteStore;
use crate::protocol::time::to_db;
use crate::store::commands::node_command_methods;

impl SqliteStore {
    node_command_methods!(write, read, to_db);
}
