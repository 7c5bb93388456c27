//! WeChat sources on PostgreSQL: the shared methods of [`crate::store::sources`].

use super::PgStore;
use crate::store::flows::same;
use crate::store::sources::source_methods;

impl PgStore {
    source_methods!(pool, pool, same);
}
