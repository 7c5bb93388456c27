//! The fake's QR login: `getLoginUid` and the long-polled `getLoginInfo`.

use super::*;

/// Adds the QR login routes to the fake's router.
pub(super) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router
        .route("/api/auth/getLoginUid", get(login_uid))
        .route("/api/auth/getLoginInfo", get(login_info))
}

async fn login_uid(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let uid = format!("fake-{}", uuid::Uuid::new_v4().simple());
    shared.lock().flows.push(Flow {
        uid: uid.clone(),
        phase: Phase::WaitingScan,
        otp: None,
        timeout_next: false,
        otp_expire_next: false,
    });
    Json(json!({ "uid": uid }))
}

enum Answer {
    Final(Response),
    Wait(&'static str),
}

fn logic(code: &str) -> Response {
    Json(json!({ "logicCode": code })).into_response()
}

fn answer(shared: &Shared, uid: &str, otp: Option<&str>) -> Answer {
    let mut guard = shared.lock();
    let inner = &mut *guard;
    let Some(flow) = inner.flows.iter_mut().find(|f| f.uid == uid) else {
        return Answer::Final(error(-2003, "uid invalid"));
    };
    if flow.timeout_next {
        flow.timeout_next = false;
        return Answer::Final(logic("LOGIN_TIMEOUT"));
    }
    match flow.phase {
        Phase::WaitingScan => return Answer::Wait("WAITING_SCAN"),
        Phase::WaitingConfirm => return Answer::Wait("WAITING_CONFIRM"),
        Phase::Cancelled => return Answer::Final(logic("LOGIN_CANCEL")),
        Phase::Done => return Answer::Final(error(-2003, "uid used")),
        Phase::NeedOtp => match otp.filter(|c| !c.is_empty()) {
            None => return Answer::Final(logic("NEED_OTP")),
            Some(_) if flow.otp_expire_next => {
                flow.otp_expire_next = false;
                flow.otp = Some(otp_code());
                return Answer::Final(logic("OTP_EXPIRED"));
            }
            Some(code) if Some(code) != flow.otp.as_deref() => {
                return Answer::Final(logic("OTP_NOT_MATCH"));
            }
            Some(_) => {}
        },
        Phase::Confirmed => {}
    }
    flow.phase = Phase::Done;
    let vid = inner.next_vid;
    inner.next_vid += 1;
    let skey = random_skey();
    let rt = format!("rt/{}+{}==", vid, random_skey());
    inner.sessions.insert(
        vid.to_string(),
        Session {
            name: inner.nickname.clone(),
            skey: skey.clone(),
            skey_stale: false,
            old_skeys: Vec::new(),
            rt: rt.clone(),
            rt_expired: false,
        },
    );
    let body =
        json!({"succeed": true, "webLoginVid": vid, "accessToken": skey, "refreshToken": rt});
    let body = if inner.under_data {
        json!({ "data": body })
    } else {
        body
    };
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("wr_gid={vid}; Path=/; Max-Age=604800")) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Answer::Final(resp)
}

async fn login_info(State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let q = q.unwrap_or_default();
    let mut uid = None;
    let mut otp = None;
    for kv in q.split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "uid" => uid = Some(percent_decode(v)),
            "otp" => otp = Some(percent_decode(v)),
            _ => {}
        }
    }
    let (Some(uid), Some(otp)) = (uid, otp) else {
        return error(-2003, "uid and otp are required");
    };
    let (hold, fault) = {
        let mut inner = shared.lock();
        (inner.hold, inner.poll_faults.pop_front())
    };
    if let Some(status) = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        return (status, axum::response::Html("<html>Bad Gateway</html>")).into_response();
    }
    let deadline = Instant::now() + hold;
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match answer(&shared, &uid, Some(otp.as_str())) {
            Answer::Final(resp) => return resp,
            Answer::Wait(code) => {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return logic(code);
                }
            }
        }
    }
}
