//! Logins: how a child gets a WeChat-side session by scanning a QR code (LOGINS.md).

pub mod mp_qr;
pub mod qr_term;
