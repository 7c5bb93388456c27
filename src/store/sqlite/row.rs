//! Lenient column readers: adopted WeRSS rows may hold NULLs, numbers as text or datetimes
//! without a fraction, so every value is decoded by hand rather than by declared type.

use crate::protocol::time;
use crate::store::Result;
use chrono::NaiveDateTime;
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub(super) trait RowExt {
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;

    fn text(&self, col: &str) -> Result<String> {
        Ok(self.opt_text(col)?.unwrap_or_default())
    }
    fn int(&self, col: &str) -> Result<i64> {
        Ok(self.opt_int(col)?.unwrap_or(0))
    }
    fn flag(&self, col: &str) -> Result<bool> {
        Ok(self.int(col)? != 0)
    }
    fn time(&self, col: &str) -> Result<Option<NaiveDateTime>> {
        Ok(self.opt_text(col)?.as_deref().and_then(time::parse))
    }
    /// A JSON text column; missing or unparsable text reads as `null`.
    fn json(&self, col: &str) -> Result<Value> {
        Ok(self
            .opt_text(col)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null))
    }
    /// A JSON list of strings; anything else reads as `None`.
    fn string_list(&self, col: &str) -> Result<Option<Vec<String>>> {
        Ok(match self.json(col)? {
            Value::Array(items) => Some(
                items
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
    }
}

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
}
