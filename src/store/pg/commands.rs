//! Node commands on PostgreSQL: the shared methods of [`crate::store::commands`].

use super::PgStore;
use crate::store::commands::node_command_methods;
use crate::store::flows::same;

impl PgStore {
    node_command_methods!(pool, pool, same);
}
