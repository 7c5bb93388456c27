//! WeChat sources on SQLite: the shared methods of [`crate::store::sources`], binding times
//! as text.

use super::SqliteStore;
use crate::protocol::time::to_db;
use crate::store::sources::source_methods;

impl SqliteStore {
    source_methods!(write, read, to_db);
}
