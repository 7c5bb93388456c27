//! QR login flows on PostgreSQL: the shared methods of [`crate::store::flows`].

use super::PgStore;
use crate::store::flows::{login_flow_methods, same};

impl PgStore {
    login_flow_methods!(pool, pool, same);
}
