//! QR logins a child runs for its parent (issue 12 §3(b), §4): a `login` command in a
//! heartbeat answer, or an expired login with `auto_login` on, starts one flow per kind. The
//! flow's steps (the QR text to scan, scanned, the WeRead code asked for, the outcome) go to
//! the parent in order; the parent answers whether the flow is still wanted (an admin may
//! cancel it) and hands over the OTP code an admin typed. The login is saved in the child's
//! store like a terminal login, and the parent learns it at the next heartbeat (sent at once).
//!
//! Only the QR text and the account name leave the child; cookies and tokens never do.

use super::Shared;
use crate::logins::mp_qr::{MpEvent, MpQrClient, MpQrOptions};
use crate::logins::weread::{self, OtpAsk, Progress};
use crate::logins::{LoginKind, LoginSecrets, LoginState, qr_term, save_scanned};
use crate::protocol::time::to_wire;
use crate::telemetry::{untrusted, untrusted_error};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often a flow waiting for an OTP code asks the parent for it.
const OTP_POLL: Duration = Duration::from_secs(2);

/// How long a flow waits for an OTP code.
const OTP_WAIT: Duration = Duration::from_secs(300);

/// The flows this child runs, and what it has started already.
#[derive(Default)]
pub(super) struct Flows {
    running: JoinSet<()>,
    /// Flow ids taken (a command repeats in every heartbeat until the first step lands).
    seen: HashSet<String>,
    /// Expired logins an automatic flow was started for (once per login and expiry).
    auto_started: HashSet<String>,
}

impl Flows {
    /// Starts the `login` commands of a heartbeat answer that are new.
    pub(super) fn take_commands(
        &mut self,
        shared: &Arc<Shared>,
        data: &Value,
        shutdown: &CancellationToken,
    ) {
        while self.running.try_join_next().is_some() {}
        for command in data["commands"].as_array().into_iter().flatten() {
            let (Some(id), Some("login")) = (command["id"].as_str(), command["type"].as_str())
            else {
                continue;
            };
            let Some(kind) = command["kind"].as_str().and_then(LoginKind::parse) else {
                continue;
            };
            if !self.seen.insert(id.to_string()) {
                continue;
            }
            tracing::info!(flow.id = %untrusted(id), kind = kind.as_str(), "the parent asks for a QR login");
            self.running.spawn(run(
                shared.clone(),
                id.to_string(),
                kind,
                shutdown.child_token(),
            ));
        }
    }

    /// With `auto_login` on: for each kind with a login that expired since the last look,
    /// asks the parent to open one flow and runs it.
    pub(super) async fn auto_login(&mut self, shared: &Arc<Shared>, shutdown: &CancellationToken) {
        if !shared.config.cascade.auto_login || !shared.client.has(super::COMMANDS) {
            return;
        }
        let logins = shared.logins.all();
        // A login that is no longer expired (scanned again) may start a flow next time.
        self.auto_started.retain(|id| {
            logins
                .iter()
                .any(|l| &l.id == id && l.state == LoginState::Expired)
        });
        let mut kinds: Vec<LoginKind> = Vec::new();
        for l in &logins {
            if l.state == LoginState::Expired && self.auto_started.insert(l.id.clone()) {
                tracing::warn!(login = %l.id, kind = l.kind.as_str(), "login expired; starting a QR login (auto_login)");
                if !kinds.contains(&l.kind) {
                    kinds.push(l.kind);
                }
            }
        }
        for kind in kinds {
            match shared.client.start_login_flow(kind.as_str()).await {
                Ok(flow) => {
                    let Some(id) = flow["id"].as_str() else {
                        continue;
                    };
                    if self.seen.insert(id.to_string()) {
                        self.running.spawn(run(
                            shared.clone(),
                            id.to_string(),
                            kind,
                            shutdown.child_token(),
                        ));
                    }
                }
                Err(e) => {
                    tracing::warn!(kind = kind.as_str(), error = %untrusted_error(&e), "could not start an automatic QR login; trying again at the next heartbeat");
                    // Its expired logins count as not started yet.
                    self.auto_started
                        .retain(|id| logins.iter().any(|l| &l.id == id && l.kind != kind));
                }
            }
        }
    }
}

/// A message to the step poster: a step, or a request to say when all before it were sent.
enum Msg {
    Step(Value),
    Flush(oneshot::Sender<()>),
}

/// What a finished scan gives.
struct Scanned {
    account_name: String,
    secrets: LoginSecrets,
    expires_at: DateTime<Utc>,
}

/// Runs one flow to its end and reports it.
async fn run(shared: Arc<Shared>, flow_id: String, kind: LoginKind, cancel: CancellationToken) {
    let (tx, rx) = mpsc::unbounded_channel::<Msg>();
    let poster = tokio::spawn(post_steps(
        shared.clone(),
        flow_id.clone(),
        rx,
        cancel.clone(),
    ));
    let outcome = match kind {
        LoginKind::Mp => mp(&shared, &tx, &cancel).await,
        LoginKind::Weread => weread(&shared, &flow_id, &tx, &cancel).await,
    };
    let last = match outcome {
        Ok(scanned) => {
            let saved = save_scanned(
                &shared.logins,
                kind,
                &scanned.account_name,
                &scanned.account_name,
                scanned.secrets,
                scanned.expires_at,
                Utc::now(),
            );
            match saved {
                Ok(login) => {
                    tracing::info!(login = %login.id, kind = kind.as_str(), "logged in by QR for the parent");
                    json!({"state": "confirmed", "login_id": login.id, "account_name": login.name,
                           "expires_at": to_wire(scanned.expires_at.naive_utc())})
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not save the scanned login");
                    json!({"state": "failed", "error": format!("the node could not save the login: {e}")})
                }
            }
        }
        Err(error) => {
            tracing::warn!(flow.id = %flow_id, kind = kind.as_str(), error = %untrusted(&error), "QR login ended without a login");
            json!({"state": "failed", "error": error})
        }
    };
    let _ = tx.send(Msg::Step(last));
    drop(tx);
    let _ = poster.await;
    // The parent learns the new login now, not a heartbeat later.
    shared.beat_now.notify_one();
}

/// Posts the steps in order; cancels the flow when the parent says it is no longer open.
async fn post_steps(
    shared: Arc<Shared>,
    flow_id: String,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    cancel: CancellationToken,
) {
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Flush(done) => {
                let _ = done.send(());
            }
            Msg::Step(step) => match shared.client.login_flow_step(&flow_id, &step).await {
                Ok(flow) if flow["open"] == json!(false) && !cancel.is_cancelled() => {
                    if step["state"] != "confirmed" && step["state"] != "failed" {
                        tracing::info!(flow.id = %flow_id, "the parent ended the QR login; stopping it");
                        cancel.cancel();
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(flow.id = %flow_id, error = %untrusted_error(&e), "could not report a QR login step");
                }
            },
        }
    }
}

/// Waits until every step queued before now reached the parent.
async fn flush(tx: &mpsc::UnboundedSender<Msg>) {
    let (done, wait) = oneshot::channel();
    if tx.send(Msg::Flush(done)).is_ok() {
        let _ = wait.await;
    }
}

async fn mp(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Msg>,
    cancel: &CancellationToken,
) -> Result<Scanned, String> {
    let c = &shared.config.cascade;
    let client = MpQrClient::new(&c.wechat_base_url, MpQrOptions::from_config(c))
        .map_err(|e| e.to_string())?;
    let mut number = 0_u32;
    // Ends the flow when the parent cancels it or a QR image cannot be read.
    let stop = cancel.child_token();
    let mut undecodable = false;
    let mut on_event = |event: MpEvent| match event {
        MpEvent::Qr(image) => match qr_term::decode_image(&image) {
            Ok(text) => {
                number += 1;
                let _ = tx.send(Msg::Step(
                    json!({"state": "pending_scan", "qr_text": text, "qr_number": number}),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the MP QR image could not be decoded");
                undecodable = true;
                stop.cancel();
            }
        },
        MpEvent::Scanned => {
            let _ = tx.send(Msg::Step(json!({"state": "scanned"})));
        }
        MpEvent::Refreshed(_) | MpEvent::Confirmed => {}
    };
    let login = client.login(&stop, &mut on_event).await;
    if undecodable {
        return Err(
            "the MP QR image could not be decoded; run `cascade child login` on the node".into(),
        );
    }
    let login = login.map_err(|e| e.to_string())?;
    Ok(Scanned {
        account_name: login.account_name.clone(),
        secrets: LoginSecrets {
            token: Some(login.token.clone()),
            cookies: login.cookies.clone(),
        },
        expires_at: login.expires_at.and_utc(),
    })
}

async fn weread(
    shared: &Shared,
    flow_id: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    cancel: &CancellationToken,
) -> Result<Scanned, String> {
    let progress = |p: &Progress| {
        let step = match p {
            Progress::Qr {
                text,
                number,
                expires_at,
            } => json!({"state": "pending_scan", "qr_text": text, "qr_number": number,
                        "qr_expires_at": to_wire(expires_at.naive_utc())}),
            Progress::Scanned => json!({"state": "scanned"}),
            _ => return,
        };
        let _ = tx.send(Msg::Step(step));
    };
    let otp = |ask: OtpAsk| async move {
        flush(tx).await;
        ask_otp(shared, flow_id, ask, cancel).await
    };
    let login = tokio::select! {
        l = weread::login(&shared.config.cascade, &progress, otp) => l.map_err(|e| e.to_string())?,
        () = cancel.cancelled() => return Err("cancelled".into()),
    };
    Ok(Scanned {
        account_name: login.account_name.clone(),
        secrets: LoginSecrets {
            token: None,
            cookies: login.cookies.pairs().to_vec(),
        },
        expires_at: login.rt_expires_at,
    })
}

/// Tells the parent a code is needed and waits for the one an admin types.
async fn ask_otp(
    shared: &Shared,
    flow_id: &str,
    ask: OtpAsk,
    cancel: &CancellationToken,
) -> Option<String> {
    let why = match ask {
        OtpAsk::First => None,
        OtpAsk::WrongCode => Some("the code did not match; type the code again"),
        OtpAsk::CodeExpired => Some("the code expired; type the new code"),
    };
    let step = json!({"state": "need_otp", "error": why});
    let deadline = tokio::time::Instant::now() + OTP_WAIT;
    while tokio::time::Instant::now() < deadline {
        match shared.client.login_flow_step(flow_id, &step).await {
            Ok(flow) => {
                if let Some(code) = flow["otp"].as_str() {
                    return Some(code.to_string());
                }
                if flow["open"] == json!(false) {
                    return None;
                }
            }
            Err(e) => {
                tracing::warn!(error = %untrusted_error(&e), "could not ask the parent for the code");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = tokio::time::sleep(OTP_POLL) => {}
        }
    }
    None
}
