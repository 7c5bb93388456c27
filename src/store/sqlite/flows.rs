//! QR login flows on SQLite: the shared methods of [`crate::store::flows`], binding times
//! as text.

use super::SqliteStore;
use crate::protocol::time::to_db;
use crate::store::flows::login_flow_methods;

impl SqliteStore {
    login_flow_methods!(write, read, to_db);
}
