//! Wire rules shared by parent and child: the WeRSS envelope, time formats, identifiers,
//! AK-SK credentials and request/response shapes. Pure: no I/O, no database, no HTTP server.

pub mod credentials;
pub mod cron;
pub mod ids;
pub mod time;
pub mod wire;
pub mod xml;

use serde::{Deserialize, Serialize};

/// Server identification sent in heartbeat responses and node records.
pub const SERVER_VERSION: &str = concat!("werss-cascade/", env!("CARGO_PKG_VERSION"));

/// The WeRSS response envelope `{"code", "message", "data"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope<T> {
    /// 0 on success, else the HTTP status (or 40101 for a failed login).
    pub code: i64,
    /// WeRSS's message for the endpoint, or a human-readable error.
    pub message: String,
    /// The payload, `null` when there is none.
    pub data: T,
}

impl<T> Envelope<T> {
    /// A success envelope with WeRSS's message for the endpoint.
    pub fn ok(message: impl Into<String>, data: T) -> Self {
        Self {
            code: 0,
            message: message.into(),
            data,
        }
    }
}
