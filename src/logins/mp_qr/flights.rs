//! Running mp QR login flows, one per login id: [`MpFlights`] and [`MpFlow`].

use super::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};

/// The result slot of a running flow.
type Outcome = Option<Result<MpLogin, MpLoginError>>;

/// A running flow: its events, its current QR code, its outcome.
#[derive(Clone)]
pub struct MpFlow {
    events: broadcast::Sender<MpEvent>,
    qr: watch::Receiver<Option<Vec<u8>>>,
    done: watch::Receiver<Outcome>,
    cancel: CancellationToken,
}

impl MpFlow {
    /// Events from now on (a late subscriber reads [`MpFlow::current_qr`] first).
    pub fn subscribe(&self) -> broadcast::Receiver<MpEvent> {
        self.events.subscribe()
    }

    /// The QR code shown now, if any.
    pub fn current_qr(&self) -> Option<Vec<u8>> {
        self.qr.borrow().clone()
    }

    /// Stops the flow (it ends with [`MpLoginError::Cancelled`]).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits for the outcome.
    ///
    /// # Errors
    /// The flow's error.
    pub async fn wait(&self) -> Result<MpLogin, MpLoginError> {
        let mut done = self.done.clone();
        let outcome = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| MpLoginError::Cancelled)?;
        outcome.clone().unwrap_or(Err(MpLoginError::Cancelled))
    }
}

/// The running QR flows of a child, at most one per login id.
#[derive(Clone, Default)]
pub struct MpFlights {
    running: Arc<Mutex<HashMap<String, MpFlow>>>,
}

impl MpFlights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, MpFlow>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The flow running for `login_id`, if any.
    pub fn running(&self, login_id: &str) -> Option<MpFlow> {
        self.lock().get(login_id).cloned()
    }

    /// Starts a flow for `login_id` on `client`; `on_done` sees its outcome (save the login
    /// there) before waiters do.
    ///
    /// # Errors
    /// [`MpLoginError::AlreadyRunning`] while a flow for `login_id` runs (join it with
    /// [`MpFlights::running`]).
    pub fn start(
        &self,
        login_id: &str,
        client: MpQrClient,
        on_done: impl FnOnce(&Result<MpLogin, MpLoginError>) + Send + 'static,
    ) -> Result<MpFlow, MpLoginError> {
        let mut running = self.lock();
        if running.contains_key(login_id) {
            return Err(MpLoginError::AlreadyRunning(login_id.to_string()));
        }
        let (events, _) = broadcast::channel(16);
        let (qr_tx, qr) = watch::channel(None);
        let (done_tx, done) = watch::channel(None);
        let flow = MpFlow {
            events: events.clone(),
            qr,
            done,
            cancel: CancellationToken::new(),
        };
        running.insert(login_id.to_string(), flow.clone());
        drop(running);
        let leave = Leave {
            flights: self.clone(),
            id: login_id.to_string(),
        };
        let cancel = flow.cancel.clone();
        tokio::spawn(async move {
            let mut on_event = |e: MpEvent| {
                if let MpEvent::Qr(image) = &e {
                    qr_tx.send_replace(Some(image.clone()));
                }
                let _ = events.send(e);
            };
            let outcome = client.login(&cancel, &mut on_event).await;
            on_done(&outcome);
            drop(leave);
            done_tx.send_replace(Some(outcome));
        });
        Ok(flow)
    }
}

/// Removes a flow from its [`MpFlights`] when dropped, also if the flow's task panics.
struct Leave {
    flights: MpFlights,
    id: String,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.flights.lock().remove(&self.id);
    }
}
