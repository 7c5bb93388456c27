//! Lenient readers for config values: WeRSS's coercion leaves numbers as strings or strings as
//! numbers depending on how a value was written, so each field accepts either form.

use crate::protocol::credentials::Secret;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::net::IpAddr;

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

pub(super) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = Value::deserialize(d)?;
    scalar_text(&v).ok_or_else(|| serde::de::Error::custom("expected a string"))
}

pub(super) fn lenient_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    lenient_string(d).map(Secret::new)
}

pub(super) fn optional_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let s = lenient_string(d)?;
    Ok((!s.trim().is_empty()).then(|| Secret::new(s)))
}

pub(super) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| serde::de::Error::custom(format!("expected a non-negative integer, got {v}")))
}

pub(super) fn lenient_u16<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let n = lenient_u64(d)?;
    u16::try_from(n).map_err(|_| serde::de::Error::custom(format!("port {n} is out of range")))
}

pub(super) fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        Value::String(s) if s.trim().is_empty() => Some(false),
        _ => None,
    }
    .ok_or_else(|| serde::de::Error::custom(format!("expected true or false, got {v}")))
}

pub(super) fn lenient_ip<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let s = lenient_string(d)?;
    s.trim()
        .parse()
        .map_err(|_| serde::de::Error::custom(format!("'{s}' is not an IP address")))
}

pub(super) fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    let items: Vec<String> = match v {
        Value::Array(items) => items.iter().filter_map(scalar_text).collect(),
        other => scalar_text(&other)
            .ok_or_else(|| serde::de::Error::custom("expected a list or a comma-separated string"))?
            .split(',')
            .map(str::to_string)
            .collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect())
}

pub(super) fn optional_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => return Ok(None),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        _ => {}
    }
    lenient_u64(v).map(Some).map_err(serde::de::Error::custom)
}

/// A number per login kind: a mapping `{weread: 6, mp: 60}` or a string `weread:6,mp:60`
/// (`=` also separates); unknown kinds and bare numbers are refused with what to write.
pub(super) fn per_kind<'de, D: Deserializer<'de>>(d: D) -> Result<super::PerKind, D::Error> {
    let v = Value::deserialize(d)?;
    let pairs: Vec<(String, Value)> = match v {
        Value::Null => Vec::new(),
        Value::Object(map) => map.into_iter().collect(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.split_once([':', '='])
                    .map(|(k, n)| (k.trim().to_string(), Value::String(n.trim().to_string())))
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "'{p}' is not kind:number (e.g. weread:6,mp:60)"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected a number per login kind, e.g. {{weread: 6, mp: 60}}, got {other}"
            )));
        }
    };
    let mut out = super::PerKind::default();
    for (kind, n) in pairs {
        let n = lenient_u64(n).map_err(|e: serde_json::Error| {
            serde::de::Error::custom(format!("{}: {e}", kind.trim()))
        })?;
        match kind.trim().to_ascii_lowercase().as_str() {
            "mp" => out.mp = Some(n),
            "weread" => out.weread = Some(n),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown login kind '{other}' (mp, weread)"
                )));
            }
        }
    }
    Ok(out)
}
