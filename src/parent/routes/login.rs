//! Admin login: the envelope form and the bare OAuth2 token form.

use crate::parent::AppState;
use crate::parent::client_addr::ClientAddr;
use crate::parent::error::{ApiError, ApiResult};
use crate::parent::ops;
use crate::protocol::Envelope;
use crate::protocol::wire::LoginForm;
use axum::Json;
use axum::extract::{Form, State};
use serde_json::{Value, json};

fn form(
    f: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> ApiResult<LoginForm> {
    f.map(|Form(f)| f).map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large()
        } else {
            ApiError::bad_request("login expects a form body with 'username' and 'password'")
        }
    })
}

pub(super) async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    f: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> ApiResult<Json<Envelope<Value>>> {
    let (token, expires_in) = ops::login(&state, form(f)?, client.throttle_key()).await?;
    let data = json!({ "access_token": token, "token_type": "bearer", "expires_in": expires_in });
    Ok(Json(Envelope::ok("success", data)))
}

pub(super) async fn token(
    State(state): State<AppState>,
    client: ClientAddr,
    f: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> ApiResult<Json<Value>> {
    let (token, expires_in) = ops::login(&state, form(f)?, client.throttle_key()).await?;
    Ok(Json(
        json!({ "access_token": token, "token_type": "bearer", "expires_in": expires_in }),
    ))
}
