//! The fake's authenticated endpoints: `userInfo` and `wr_skey` renewal (the MP data
//! endpoints are in `mp.rs`).

use super::*;

/// Adds the authenticated routes to the fake's router.
pub(super) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router
        .route("/api/userInfo", get(user_info))
        .route("/web/login/renewal", post(renewal))
}

/// The session a request's cookies name, if its `wr_skey` is valid now.
pub(super) enum Auth {
    NoLogin,
    Stale,
    Ok(String),
}

pub(super) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Auth {
    let c = cookies(headers);
    let (Some(vid), Some(skey)) = (c.get("wr_vid"), c.get("wr_skey")) else {
        return Auth::NoLogin;
    };
    let now = Instant::now();
    let inner = shared.lock();
    let Some(s) = inner.sessions.get(vid) else {
        return Auth::NoLogin;
    };
    let current = *skey == s.skey && !s.skey_stale;
    let in_grace = s
        .old_skeys
        .iter()
        .any(|(k, until)| k == skey && now < *until);
    if current || in_grace {
        Auth::Ok(s.name.clone())
    } else {
        Auth::Stale
    }
}

#[derive(Deserialize)]
struct UserQuery {
    #[serde(rename = "userVid")]
    user_vid: Option<String>,
}

async fn user_info(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<UserQuery>,
) -> Response {
    match authenticate(&shared, &headers) {
        Auth::NoLogin => error(-2010, "用户不存在"),
        Auth::Stale => error(-2012, "登录超时"),
        Auth::Ok(name) => {
            Json(json!({"userVid": q.user_vid.unwrap_or_default(), "name": name, "gender": 0}))
                .into_response()
        }
    }
}

async fn renewal(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let c = cookies(&headers);
    let (Some(vid), Some(_), Some(rt)) = (c.get("wr_vid"), c.get("wr_skey"), c.get("wr_rt")) else {
        return error(-2013, "鉴权失败");
    };
    let ql = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("ql").and_then(Value::as_bool));
    let mut guard = shared.lock();
    let inner = &mut *guard;
    if inner.strict_ql {
        let cookie_ql = c.get("wr_ql").map(|v| v == "1");
        if ql.is_none() || cookie_ql != ql {
            return error(-2013, "鉴权失败");
        }
    }
    let grace = inner.grace;
    let fault = inner.renew_faults.pop_front();
    let Some(s) = inner.sessions.get_mut(vid) else {
        return error(-2013, "鉴权失败");
    };
    if percent_decode(rt) != s.rt {
        return error(-2013, "鉴权失败");
    }
    if s.rt_expired {
        let mut resp = error(-12013, "微信登录授权已过期");
        resp.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static("wr_skey=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        return resp;
    }
    let mut resp = Json(json!({"succ": 1})).into_response();
    match fault {
        Some(RenewFault::NoSetCookie) => return resp,
        Some(RenewFault::ClearingCookie) => {
            resp.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_static("wr_skey=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
            );
            return resp;
        }
        None => {}
    }
    let new = random_skey();
    let old = std::mem::replace(&mut s.skey, new.clone());
    // An expired key stays expired; a live one keeps working for the grace period.
    if !s.skey_stale {
        s.old_skeys.push((old, Instant::now() + grace));
    }
    s.skey_stale = false;
    inner.renewals += 1;
    for line in [
        format!("wr_skey={new}; Path=/; Max-Age=5400"),
        format!("wr_vid={vid}; Path=/; Max-Age=604800"),
    ] {
        if let Ok(v) = HeaderValue::from_str(&line) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}
