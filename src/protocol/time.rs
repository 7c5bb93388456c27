//! Timestamps on the wire and in the database: naive UTC with microseconds.

use chrono::{NaiveDateTime, Timelike};
use serde::Serializer;

const WIRE: &str = "%Y-%m-%dT%H:%M:%S%.6f";
const DB: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// Drops sub-microsecond precision so stored and compared values agree.
pub fn truncate_micros(t: NaiveDateTime) -> NaiveDateTime {
    let nanos = t.nanosecond();
    t.with_nanosecond(nanos - nanos % 1000).unwrap_or(t)
}

/// `2026-11-22T14:42:30.126043`, always six fraction digits.
pub fn to_wire(t: NaiveDateTime) -> String {
    t.format(WIRE).to_string()
}

/// `2026-11-22 14:42:30.126043`, the SQLite column format (sorts as text).
pub fn to_db(t: NaiveDateTime) -> String {
    t.format(DB).to_string()
}

/// Parses the wire or database form, with or without a fraction (Python drops `.000000`).
pub fn parse(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    let s = s.strip_suffix('Z').unwrap_or(s);
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

/// Serde helper: `Option<NaiveDateTime>` as wire text or `null`.
pub fn ser_opt<S: Serializer>(t: &Option<NaiveDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&to_wire(*t)),
        None => s.serialize_none(),
    }
}

/// Serde helper: `NaiveDateTime` as wire text.
pub fn ser<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&to_wire(*t))
}

/// The JSON Schema of a time written by [`ser`] or [`ser_opt`], for the fields that use them:
/// `#[schemars(with = "time::Wire")]` (or `Option<time::Wire>`).
pub struct Wire;

/// How [`Wire`] describes a time.
pub const WIRE_DESCRIPTION: &str =
    "UTC without a zone, six fraction digits: 2026-11-22T14:42:30.126043";

impl schemars::JsonSchema for Wire {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WireTime".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": WIRE_DESCRIPTION,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_has_six_fraction_digits_and_parses_back() {
        let t = parse("2026-11-22T14:42:30").expect("no fraction parses");
        assert_eq!(to_wire(t), "2026-11-22T14:42:30.000000");
        let t = parse("2026-11-22 14:42:30.126043").expect("db form parses");
        assert_eq!(to_wire(t), "2026-11-22T14:42:30.126043");
        assert_eq!(to_db(t), "2026-11-22 14:42:30.126043");
        assert!(parse("yesterday").is_none());
    }
}
