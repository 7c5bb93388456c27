//! [`RowExt`] for PostgreSQL rows: values are read by their column type, so an adopted WeRSS
//! database (INTEGER, BOOLEAN, TIMESTAMP, or text where we expect numbers) reads the same.

use crate::protocol::time;
use crate::store::Result;
use crate::store::rows::RowExt;
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Row, TypeInfo, ValueRef};

/// The column's type name, or `None` for NULL.
fn kind(row: &PgRow, col: &str) -> Result<Option<String>> {
    let raw = row.try_get_raw(col)?;
    if raw.is_null() {
        return Ok(None);
    }
    Ok(Some(raw.type_info().name().to_string()))
}

fn number(row: &PgRow, col: &str, kind: &str) -> Result<Option<i64>> {
    Ok(match kind {
        "INT2" => Some(i64::from(row.try_get::<i16, _>(col)?)),
        "INT4" => Some(i64::from(row.try_get::<i32, _>(col)?)),
        "INT8" => Some(row.try_get::<i64, _>(col)?),
        "BOOL" => Some(i64::from(row.try_get::<bool, _>(col)?)),
        #[allow(clippy::cast_possible_truncation)]
        "FLOAT8" => Some(row.try_get::<f64, _>(col)? as i64),
        _ => None,
    })
}

impl RowExt for PgRow {
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        let Some(kind) = kind(self, col)? else {
            return Ok(None);
        };
        if let Some(n) = number(self, col, &kind)? {
            return Ok(Some(n.to_string()));
        }
        Ok(self.try_get_unchecked::<String, _>(col).ok())
    }

    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        let Some(kind) = kind(self, col)? else {
            return Ok(None);
        };
        if let Some(n) = number(self, col, &kind)? {
            return Ok(Some(n));
        }
        Ok(self
            .try_get_unchecked::<String, _>(col)
            .ok()
            .and_then(|s| s.trim().parse().ok()))
    }

    fn flag(&self, col: &str) -> Result<bool> {
        Ok(self.int(col)? != 0)
    }

    fn time(&self, col: &str) -> Result<Option<NaiveDateTime>> {
        let Some(kind) = kind(self, col)? else {
            return Ok(None);
        };
        Ok(match kind.as_str() {
            "TIMESTAMP" => Some(self.try_get::<NaiveDateTime, _>(col)?),
            "TIMESTAMPTZ" => Some(self.try_get::<DateTime<Utc>, _>(col)?.naive_utc()),
            _ => self.opt_text(col)?.as_deref().and_then(time::parse),
        })
    }
}
