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
