//! Runs the real `cascade` binary and waits for its "parent listening" line (no sleeps).

use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `cascade parent` process.
pub struct ParentProcess {
    pub child: Child,
    pub base: String,
    /// Every stderr line read up to readiness.
    pub stderr: Vec<String>,
    /// Reads the stderr lines after readiness until the process closes it.
    rest: tokio::task::JoinHandle<Vec<String>>,
}

/// A command for the binary with a clean environment (no stray `CASCADE_*` or WeRSS vars).
pub fn cascade_cmd(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cascade"));
    cmd.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    cmd.kill_on_drop(true);
    cmd
}

impl ParentProcess {
    /// Starts `cmd` (a `parent` command) and reads stderr until it listens.
    pub async fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("binary starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let base = loop {
            let line = lines.next_line().await.expect("stderr readable");
            let Some(line) = line else {
                let status = child.wait().await.expect("exit status");
                panic!(
                    "parent exited ({status}) before listening:\n{}",
                    seen.join("\n")
                );
            };
            if line.contains("parent listening")
                && let Some(addr) = line.split("address=").nth(1)
            {
                let addr = addr
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                seen.push(line);
                break format!("http://{addr}");
            }
            seen.push(line);
        };
        let rest = tokio::spawn(async move {
            let mut rest = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                rest.push(line);
            }
            rest
        });
        Self {
            child,
            base,
            stderr: seen,
            rest,
        }
    }

    /// Sends SIGTERM; returns whether it exited with status 0 and every stderr line it wrote.
    pub async fn terminate_with_log(mut self) -> (bool, Vec<String>) {
        let rest = std::mem::replace(&mut self.rest, tokio::spawn(async { Vec::new() }));
        let mut log = self.stderr.clone();
        let ok = self.terminate().await;
        log.extend(rest.await.expect("stderr reader"));
        (ok, log)
    }

    /// Sends SIGTERM and returns whether the process exited with status 0.
    pub async fn terminate(mut self) -> bool {
        let pid = self.child.id().expect("running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(sent.success());
        self.child.wait().await.expect("exit status").success()
    }
}

/// Logs in over HTTP and returns the token.
pub async fn login(
    client: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/api/v1/auth/login"))
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .expect("login sent")
}
