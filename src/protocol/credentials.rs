//! Node credentials: `CN…`/`CS…` generation, SHA-256 hashing, constant-time checks and the
//! `Authorization: AK-SK <key>:<secret>` header form. Secrets never appear in `Debug` output.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A value that must never be printed: its `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the few places that must send or hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// 32 URL-safe characters from 32 random bytes.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let mut s = URL_SAFE_NO_PAD.encode(bytes);
    s.truncate(32);
    s
}

/// A fresh `(api_key, api_secret)` pair: `CN` / `CS` + 32 URL-safe characters.
pub fn generate_pair() -> (String, Secret) {
    (
        format!("CN{}", random_token()),
        Secret(format!("CS{}", random_token())),
    )
}

/// Lowercase hex SHA-256, the stored form of a node secret (as WeRSS stores it).
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Whether `secret` hashes to `stored_hash`, compared in constant time.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    let computed = sha256_hex(secret);
    let stored = stored_hash.trim().to_ascii_lowercase();
    computed.as_bytes().ct_eq(stored.as_bytes()).into()
}

/// Constant-time equality of two strings.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// `CNU6tK...N0dx`: first 6, `...`, last 4.
pub fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 10 {
        return "***".to_string();
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}...{tail}")
}

/// The credentials carried by an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthHeader {
    /// `Bearer <jwt>`.
    Bearer(Secret),
    /// `AK-SK <key>:<secret>`.
    AkSk {
        /// The api key, `CN…`.
        key: String,
        /// The secret as sent.
        secret: Secret,
    },
}

/// Parses an `Authorization` value; `None` for a missing part, unknown scheme or no colon.
pub fn parse_authorization(value: &str) -> Option<AuthHeader> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = rest.trim();
        return (!token.is_empty()).then(|| AuthHeader::Bearer(Secret::new(token)));
    }
    if scheme == "AK-SK" {
        let (key, secret) = rest.split_once(':')?;
        if key.is_empty() || secret.is_empty() {
            return None;
        }
        return Some(AuthHeader::AkSk {
            key: key.to_string(),
            secret: Secret::new(secret),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pairs_have_the_werss_shape() {
        let (key, secret) = generate_pair();
        assert_eq!(key.len(), 34);
        assert!(key.starts_with("CN"));
        assert_eq!(secret.expose().len(), 34);
        assert!(secret.expose().starts_with("CS"));
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        assert!(key[2..].chars().all(ok) && secret.expose()[2..].chars().all(ok));
        assert_ne!(generate_pair().0, key);
        assert_eq!(format!("{secret:?}"), "***");
    }

    #[test]
    fn secret_check_compares_hashes_case_insensitively() {
        let hash = sha256_hex("CSabc");
        assert!(secret_matches("CSabc", &hash));
        assert!(secret_matches("CSabc", &hash.to_uppercase()));
        assert!(!secret_matches("CSabd", &hash));
    }

    #[test]
    fn authorization_header_forms() {
        assert_eq!(
            parse_authorization("AK-SK CNkey:CS:sec"),
            Some(AuthHeader::AkSk {
                key: "CNkey".into(),
                secret: Secret::new("CS:sec")
            })
        );
        assert!(parse_authorization("AK-SK CNkey").is_none());
        assert!(parse_authorization("AK-SK :x").is_none());
        assert!(parse_authorization("AK-SK x:").is_none());
        assert!(parse_authorization("Basic abc").is_none());
        assert!(matches!(
            parse_authorization("Bearer abc.def"),
            Some(AuthHeader::Bearer(_))
        ));
        assert_eq!(
            mask_key("CNU6tK-M1PlAaLMgfJltxT9bi0bUvpN0dx"),
            "CNU6tK...N0dx"
        );
    }
}
