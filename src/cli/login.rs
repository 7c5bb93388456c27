//! `cascade child login`: a QR scan login in the terminal. Draws the QR code with Unicode
//! blocks, prints the progress, and ends with `logged in: <kind> <account>, expires <time>`
//! (exit 0) or a clear error (exit 1).

use super::LoginKind;
use super::out::outln;
use crate::config::Config;
use crate::logins::mp_qr::{MpEvent, MpQrClient, MpQrOptions};
use crate::logins::qr_term;
use anyhow::Context;
use chrono::TimeZone;
use tokio_util::sync::CancellationToken;

/// Runs one login of `kind` against the configured base URL.
///
/// # Errors
/// The flow failed (expired, refused, cancelled, deadline) or the login cannot be saved.
pub async fn run(
    config: &Config,
    kind: LoginKind,
    name: Option<String>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    match kind {
        LoginKind::Mp => mp(config, name, shutdown).await,
        LoginKind::Weread => weread(config, name, shutdown).await,
    }
}

async fn mp(
    config: &Config,
    name: Option<String>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let options = MpQrOptions::from_config(&config.cascade);
    let max_refreshes = options.max_refreshes;
    let client = MpQrClient::new(&config.cascade.wechat_base_url, options)?;
    let mut on_event = |event: MpEvent| {
        // Progress is best effort: a closed stdout must not stop the login.
        let _ = show(&event, max_refreshes);
    };
    let login = client
        .login(shutdown, &mut on_event)
        .await
        .context("MP login failed")?;
    let label = label(name, &login.account_name);
    save_login(
        config,
        crate::logins::LoginKind::Mp,
        &label,
        &login.account_name,
        crate::logins::LoginSecrets {
            token: Some(login.token.clone()),
            cookies: login.cookies.clone(),
        },
        login.expires_at.and_utc(),
    )?;
    logged_in("mp", &login.account_name, login.expires_at)
}

/// Prints one step of the flow.
fn show(event: &MpEvent, max_refreshes: u32) -> anyhow::Result<()> {
    match event {
        MpEvent::Qr(image) => match qr_term::render_image(image) {
            Ok(drawing) => outln!(
                "Scan this QR code with WeChat (an administrator of the account), then confirm \
                 on the phone:\n{drawing}"
            ),
            Err(e) => {
                let ext = match qr_term::sniff(image) {
                    Some(qr_term::ImageKind::Jpeg) => "jpg",
                    _ => "png",
                };
                let path = std::env::temp_dir().join(format!("cascade-mp-login-qr.{ext}"));
                std::fs::write(&path, image)
                    .with_context(|| format!("while saving the QR image to {}", path.display()))?;
                outln!(
                    "The QR code cannot be drawn here ({e}); open {} and scan it with WeChat.",
                    path.display()
                )
            }
        },
        MpEvent::Scanned => outln!("scanned: confirm the login on the phone"),
        MpEvent::Refreshed(n) => {
            outln!("the QR code expired; showing a new one ({n} of at most {max_refreshes})")
        }
        MpEvent::Confirmed => outln!("confirmed on the phone; setting up the session"),
    }
}

/// Saves a login in the child's store (`<data_dir>/logins.json`) as `<kind>-<label>`: logging
/// in again under the same label replaces it, so a running child picks it up at its next
/// heartbeat without any editing.
fn save_login(
    config: &Config,
    kind: crate::logins::LoginKind,
    label: &str,
    account_name: &str,
    secrets: crate::logins::LoginSecrets,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let dir = std::path::Path::new(&config.cascade.data_dir);
    let store = crate::logins::LoginStore::open(dir)
        .with_context(|| format!("while opening the login store in {}", dir.display()))?;
    crate::logins::save_scanned(
        &store,
        kind,
        label,
        account_name,
        secrets,
        expires_at,
        chrono::Utc::now(),
    )
    .with_context(|| format!("while saving the login in {}", dir.display()))?;
    Ok(())
}

/// The label of a new login: `--name`, else the account name.
fn label(name: Option<String>, account_name: &str) -> String {
    name.map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| account_name.to_string())
}

/// `logged in: <kind> <account>, expires <local time with offset>`.
fn logged_in(kind: &str, account: &str, expires_at: chrono::NaiveDateTime) -> anyhow::Result<()> {
    let expires = chrono::Local
        .from_utc_datetime(&expires_at)
        .format("%Y-%m-%d %H:%M:%S %:z");
    outln!("logged in: {kind} {account}, expires {expires}")
}

async fn weread(
    config: &Config,
    name: Option<String>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    use crate::logins::weread::{self, OtpAsk, Progress};
    let progress = |p: &Progress| {
        // Progress is best effort: a closed stdout must not stop the login.
        let _ = match p {
            Progress::Qr { text, number, .. } => outln!(
                "Scan this QR code with WeChat (code {number}), then confirm on the phone:\n{}",
                qr_term::render_text(text).unwrap_or_else(|_| text.clone())
            ),
            Progress::Scanned => outln!("scanned: confirm the login on the phone"),
            Progress::QrExpired { number } => outln!("QR code {number} expired"),
            _ => Ok(()),
        };
    };
    let otp = |ask: OtpAsk| async move {
        let prompt = match ask {
            OtpAsk::First => "enter the 4-digit code shown on the phone: ",
            OtpAsk::WrongCode => "that code did not match; enter the code again: ",
            OtpAsk::CodeExpired => "that code expired; enter the new code: ",
        };
        eprint!("{prompt}");
        let mut line = String::new();
        let read = tokio::task::spawn_blocking(move || {
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await;
        match read {
            Ok(Ok(l)) if !l.trim().is_empty() => Some(l.trim().to_string()),
            _ => None,
        }
    };
    let login = tokio::select! {
        l = weread::login(&config.cascade, &progress, otp) => l.context("WeRead login failed")?,
        () = shutdown.cancelled() => anyhow::bail!("WeRead login failed: interrupted"),
    };
    let label = label(name, &login.account_name);
    save_login(
        config,
        crate::logins::LoginKind::Weread,
        &label,
        &login.account_name,
        crate::logins::LoginSecrets {
            token: None,
            cookies: login.cookies.pairs().to_vec(),
        },
        login.rt_expires_at,
    )?;
    logged_in(
        "weread",
        &login.account_name,
        login.rt_expires_at.naive_utc(),
    )
}
