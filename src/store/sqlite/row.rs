//! [`RowExt`] for SQLite rows: every value is read by its stored class, not its declared type.

use crate::protocol::time;
use crate::store::Result;
use crate::store::rows::RowExt;
use chrono::NaiveDateTime;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

impl RowExt for SqliteRow {
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        use sqlx::ValueRef;
        let raw = self.try_get_raw(col)?;
        if raw.is_null() {
            return Ok(None);
        }
        if let Ok(s) = self.try_get_unchecked::<String, _>(col) {
            return Ok(Some(s));
        }
        Ok(self
            .try_get_unchecked::<i64, _>(col)
            .ok()
            .map(|n| n.to_string()))
    }

    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        use sqlx::ValueRef;
        let raw = self.try_get_raw(col)?;
        if raw.is_null() {
            return Ok(None);
        }
        match self.try_get_unchecked::<i64, _>(col) {
            Ok(n) => Ok(Some(n)),
            Err(_) => Ok(self
                .try_get_unchecked::<String, _>(col)
                .ok()
                .and_then(|s| s.trim().parse().ok())),
        }
    }

    fn flag(&self, col: &str) -> Result<bool> {
        Ok(self.int(col)? != 0)
    }

    fn time(&self, col: &str) -> Result<Option<NaiveDateTime>> {
        Ok(self.opt_text(col)?.as_deref().and_then(time::parse))
    }
}
