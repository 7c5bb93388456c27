//! Authentication and roles: one extractor per role, so no handler can forget its role.
//! Admins carry an HS256 JWT, nodes `AK-SK key:secret`. Authentication reads and never writes.

use super::AppState;
use super::error::ApiError;
use crate::protocol::credentials::{AuthHeader, parse_authorization, secret_matches};
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use chrono::{NaiveDateTime, TimeDelta};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    /// The admin's username.
    pub username: String,
}

/// An authenticated child node.
#[derive(Debug, Clone)]
pub struct NodeAuth {
    /// The node's id.
    pub node_id: String,
}

/// Either role, for the routes both may read.
#[derive(Debug, Clone)]
pub enum AnyAuth {
    /// An admin.
    Admin(AdminAuth),
    /// A node.
    Node(NodeAuth),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
}

/// JWT signing and checking with the parent's secret.
#[derive(Clone)]
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime: TimeDelta,
}

impl Jwt {
    /// Keys from `secret`; tokens live `minutes`.
    pub fn new(secret: &str, minutes: u64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            lifetime: TimeDelta::minutes(i64::try_from(minutes).unwrap_or(i64::MAX / 120_000)),
        }
    }

    /// Token lifetime in seconds (`expires_in`).
    pub fn lifetime_seconds(&self) -> i64 {
        self.lifetime.num_seconds()
    }

    /// Issues a token for `username`.
    ///
    /// # Errors
    /// Only if signing fails, which HS256 with a byte key does not.
    pub fn issue(&self, username: &str, now: NaiveDateTime) -> Result<String, ApiError> {
        let claims = Claims {
            sub: username.to_string(),
            exp: (now + self.lifetime).and_utc().timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::internal(&e))
    }

    /// The username of a valid, unexpired HS256 token.
    fn verify(&self, token: &str, now: NaiveDateTime) -> Option<String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp".to_string(), "sub".to_string()].into();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        (data.claims.exp > now.and_utc().timestamp()).then_some(data.claims.sub)
    }
}

enum Principal {
    Admin(AdminAuth),
    Node(NodeAuth),
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_authorization)
        .ok_or_else(ApiError::unauthorized)?;
    match header {
        AuthHeader::Bearer(token) => {
            let username = state
                .jwt
                .verify(token.expose(), state.clock.now())
                .ok_or_else(ApiError::unauthorized)?;
            let user = state.store.find_user(&username).await?;
            match user {
                Some(u) if u.is_active => {
                    super::audit::note_admin(&username);
                    Ok(Principal::Admin(AdminAuth { username }))
                }
                _ => Err(ApiError::unauthorized()),
            }
        }
        AuthHeader::AkSk { key, secret } => {
            let cred = state.store.find_node_credential(&key).await?;
            match cred {
                Some(c)
                    if c.node_type == 1
                        && c.is_active
                        && !c.secret_hash.is_empty()
                        && secret_matches(secret.expose(), &c.secret_hash) =>
                {
                    tracing::Span::current().record("node.id", c.node_id.as_str());
                    Ok(Principal::Node(NodeAuth { node_id: c.node_id }))
                }
                _ => Err(ApiError::unauthorized()),
            }
        }
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state).await? {
            Principal::Admin(a) => Ok(a),
            Principal::Node(_) => Err(ApiError::forbidden("admin credentials required")),
        }
    }
}

impl FromRequestParts<AppState> for NodeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state).await? {
            Principal::Node(n) => Ok(n),
            Principal::Admin(_) => Err(ApiError::forbidden("node credentials (AK-SK) required")),
        }
    }
}

impl FromRequestParts<AppState> for AnyAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(match authenticate(parts, state).await? {
            Principal::Admin(a) => AnyAuth::Admin(a),
            Principal::Node(n) => AnyAuth::Node(n),
        })
    }
}

pub use super::lockout::{Attempt, Lockout, MAX_ADDRESS_FAILURES, MAX_FAILURES, TABLE_CAPACITY};
