//! Admin login: the envelope form and the bare OAuth2 token form.

use crate::parent::AppState;
use crate::parent::client_addr::ClientAddr;
use crate::parent::error::ApiResult;
use crate::parent::extract::Form;
use crate::parent::ops;
use crate::protocol::Envelope;
use crate::protocol::wire::LoginForm;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

pub(super) async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    Form(form): Form<LoginForm>,
) -> ApiResult<Json<Envelope<Value>>> {
    let (token, expires_in) = ops::login(&state, form, client.throttle_key()).await?;
    let data = json!({ "access_token": token, "token_type": "bearer", "expires_in": expires_in });
    Ok(Json(Envelope::ok("success", data)))
}

pub(super) async fn token(
    State(state): State<AppState>,
    client: ClientAddr,
    Form(form): Form<LoginForm>,
) -> ApiResult<Json<Value>> {
    let (token, expires_in) = ops::login(&state, form, client.throttle_key()).await?;
    Ok(Json(
        json!({ "access_token": token, "token_type": "bearer", "expires_in": expires_in }),
    ))
}
