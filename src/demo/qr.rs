//! The demo's QR login: child 1 logs in to the fake WeChat by the MP QR flow, the demo
//! playing the phone.

use crate::logins::mp_qr::{MpEvent, MpQrClient, MpQrOptions};
use crate::logins::{Login, LoginKind, LoginSecrets, LoginStore, qr_term};
use crate::testkit::wechat::{FakeWechat, ScanAction};
use anyhow::Context;
use chrono::TimeZone;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The account name the fake's QR login reports.
const QR_ACCOUNT: &str = "Demo MP Account";

/// Logs the child `node_name` in by the fake's MP QR flow, the fake playing the phone: draws
/// the QR code, saves the login in the child's store in `data_dir` and returns its token.
pub(super) async fn qr_login(
    fake: &FakeWechat,
    node_name: &str,
    data_dir: &std::path::Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<String> {
    fake.mp_login_settings(|s| {
        s.nickname = QR_ACCOUNT.into();
        // Scanned after 0.7 s, confirmed 0.7 s later.
        s.auto = Some((Duration::from_millis(700), ScanAction::Confirm));
    });
    let options = MpQrOptions {
        poll_interval: Duration::from_millis(200),
        deadline: Duration::from_secs(60),
        ..MpQrOptions::default()
    };
    let client = MpQrClient::new(fake.base_url(), options)?;
    println!("\n{node_name} logs in to WeChat by QR code:");
    let mut on_event = |event: MpEvent| match event {
        MpEvent::Qr(image) => {
            match qr_term::render_image(&image) {
                Ok(drawing) => println!("{drawing}"),
                Err(e) => println!("(the QR code cannot be drawn here: {e})"),
            }
            println!(
                "the demo scans this QR code for you in a moment (a real login needs WeChat on a phone)"
            );
        }
        MpEvent::Scanned => println!("scanned; confirming on the phone"),
        MpEvent::Refreshed(n) => println!("the QR code expired; showing a new one ({n})"),
        MpEvent::Confirmed => println!("confirmed; setting up the session"),
    };
    let login = client
        .login(shutdown, &mut on_event)
        .await
        .context("the demo's QR login failed")?;
    let store = LoginStore::open(data_dir)
        .with_context(|| format!("while opening the login store in {}", data_dir.display()))?;
    let mut saved = Login::new(
        "mp-demo",
        LoginKind::Mp,
        &login.account_name,
        LoginSecrets {
            token: Some(login.token.clone()),
            cookies: login.cookies.clone(),
        },
    );
    saved.expires_at = Some(login.expires_at.and_utc());
    store
        .upsert(saved)
        .with_context(|| format!("while saving the login in {}", data_dir.display()))?;
    println!(
        "logged in: mp {}, expires {}\n",
        login.account_name,
        local_time(login.expires_at)
    );
    Ok(login.token.expose().to_string())
}

/// A UTC time in the local zone, with its offset.
pub(super) fn local_time(utc: chrono::NaiveDateTime) -> String {
    chrono::Local
        .from_utc_datetime(&utc)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}
