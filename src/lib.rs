//! werss-cascade: a WeRSS-compatible cascade task dispatch system.
//!
//! Data flows one way: `cli` → `config` → `parent` (and, later, `child`).
//!
//! * [`protocol`] — wire types and rules shared by every role (envelope, ids, AK-SK, times).
//!   No I/O.
//! * [`store`] — persistence: migrations and one `Store` API over SQLite. Knows nothing of HTTP.
//! * [`parent`] — the axum server: admin and node APIs, auth extractors, operations.
//! * [`config`] — WeRSS `config.yaml` layout with `${VAR}` interpolation and `CASCADE_*` env.
//! * [`clock`] — injected time, so leases and lockouts can be tested without sleeping.
#![forbid(unsafe_code)]

pub mod bench;
pub mod child;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod fetch;
pub mod logins;
pub mod parent;
pub mod protocol;
pub mod store;
pub mod telemetry;
pub mod testkit;
