//! Fakes of the outside world, as library code shared by tests, `cascade demo` and benchmarks:
//! a WeChat MP platform speaking the real list API (UPSTREAMS §4) and WeRead's web login
//! (LOGINS.md §3). Never used by the parent or child themselves.

pub mod feeds;
pub mod wechat;
pub mod weread;
