//! Integration tests: real parents on 127.0.0.1:0 with a temporary SQLite file, driven over
//! HTTP. One binary, one module per area.

mod adopt;
mod alerts;
mod auth;
mod blocked;
mod budgets;
mod catalog;
mod child;
mod claims;
mod cli;
mod compat;
mod dashboard;
mod dedup;
mod engine;
mod errors;
mod fetch;
mod full_text;
mod helpers;
mod invariants;
mod lifecycle;
mod login_flows;
mod logins;
mod metrics;
mod mp_login;
mod node_api;
mod nodes;
mod openapi;
mod operator;
mod outputs;
mod parents;
mod server;
mod sources;
mod subscribe;
mod webhooks;
mod weread;
