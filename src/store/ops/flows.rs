//! QR login flows (issue 12 §3(b)): the parent's record of a login a node runs for it. See
//! [`crate::store::flows`] for the states and the row types.

use crate::store::db::{Tx, args};
use crate::store::flows::{SELECT_FLOW, flow_from_row, flow_not_found, flow_state_is_final};
use crate::store::{Error, FlowProgress, LoginFlow, NewLoginFlow, Result, Store};
use chrono::NaiveDateTime;

impl Store {
    /// Opens a QR login flow on a node, or returns the open one of that kind (`false`):
    /// flows without a step since `stale_before` end as timed out first, and closed flows
    /// older than `prune_before` are removed.
    pub async fn create_login_flow(
        &self,
        new: NewLoginFlow,
        now: NaiveDateTime,
    ) -> Result<(LoginFlow, bool)> {
        self.db
            .write(move |tx| Box::pin(async move { create_login_flow(tx, &new, now).await }))
            .await
    }

    /// One login flow.
    pub async fn get_login_flow(&self, id: &str) -> Result<LoginFlow> {
        let id = id.to_string();
        self.db
            .read(move |tx| Box::pin(async move { flow_on(tx, &id).await }))
            .await
    }

    /// The newest login flows, of one node when given.
    pub async fn list_login_flows(
        &self,
        node_id: Option<String>,
        limit: i64,
    ) -> Result<Vec<LoginFlow>> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let rows = tx
                        .rows(
                            &format!(
                                "{SELECT_FLOW} WHERE CAST($1 AS TEXT) IS NULL OR f.node_id = $1
                                  ORDER BY f.created_at DESC, f.id LIMIT CAST($2 AS BIGINT)"
                            ),
                            args![node_id, limit],
                        )
                        .await?;
                    rows.iter().map(flow_from_row).collect()
                })
            })
            .await
    }

    /// Login flows a node was asked to start and has not reported on.
    pub async fn login_commands(&self, node_id: &str) -> Result<Vec<LoginFlow>> {
        let node_id = node_id.to_string();
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let rows = tx
                        .rows(
                            &format!(
                                "{SELECT_FLOW} WHERE f.node_id = $1 AND f.is_open <> {{false}}
                                   AND f.state = 'requested'
                                  ORDER BY f.created_at"
                            ),
                            args![node_id],
                        )
                        .await?;
                    rows.iter().map(flow_from_row).collect()
                })
            })
            .await
    }

    /// Applies a node's step to its own open flow and returns the flow as it is now, with
    /// any OTP code an admin typed (an OTP code waiting for it is handed out once). A flow
    /// that already ended is returned unchanged (the node stops); another node's flow is not
    /// found.
    pub async fn progress_login_flow(
        &self,
        node_id: &str,
        id: &str,
        step: FlowProgress,
        now: NaiveDateTime,
    ) -> Result<LoginFlow> {
        let (node_id, id) = (node_id.to_string(), id.to_string());
        self.db
            .write(move |tx| {
                Box::pin(async move { progress_login_flow(tx, &node_id, &id, &step, now).await })
            })
            .await
    }

    /// Cancels an open login flow: it ends as `cancelled` (the node stops at its next step).
    pub async fn cancel_login_flow(&self, id: &str, now: NaiveDateTime) -> Result<LoginFlow> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.exec(
                        "UPDATE cascade_login_flows
                            SET state = 'cancelled', is_open = {false}, qr_text = NULL,
                                otp_code = NULL, error = 'cancelled by an admin', updated_at = $2
                          WHERE id = $1 AND is_open <> {false}",
                        args![&id, now],
                    )
                    .await?;
                    flow_on(tx, &id).await
                })
            })
            .await
    }

    /// Keeps the OTP code typed for a flow that asks for one; `Conflict` when the flow does
    /// not wait for a code.
    pub async fn set_login_flow_otp(
        &self,
        id: &str,
        code: &str,
        now: NaiveDateTime,
    ) -> Result<LoginFlow> {
        let (id, code) = (id.to_string(), code.to_string());
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let done = tx
                        .exec(
                            "UPDATE cascade_login_flows SET otp_code = $2, updated_at = $3
                              WHERE id = $1 AND is_open <> {false} AND state = 'need_otp'",
                            args![&id, code, now],
                        )
                        .await?;
                    let flow = flow_on(tx, &id).await?;
                    if done == 0 {
                        return Err(Error::Conflict(format!(
                            "the login flow is {}, not waiting for a code",
                            flow.state
                        )));
                    }
                    Ok(flow)
                })
            })
            .await
    }
}

/// Reads a flow inside the caller's transaction.
async fn flow_on(tx: &mut Tx, id: &str) -> Result<LoginFlow> {
    let row = tx
        .opt(&format!("{SELECT_FLOW} WHERE f.id = $1"), args![id])
        .await?
        .ok_or_else(flow_not_found)?;
    flow_from_row(&row)
}

async fn create_login_flow(
    tx: &mut Tx,
    new: &NewLoginFlow,
    now: NaiveDateTime,
) -> Result<(LoginFlow, bool)> {
    tx.exec(
        "UPDATE cascade_login_flows
            SET is_open = {false}, state = 'failed', qr_text = NULL, otp_code = NULL,
                error = 'timed out: the node reported no step of this login', updated_at = $3
          WHERE node_id = $1 AND kind = $2 AND is_open <> {false} AND updated_at < $4",
        args![&new.node_id, &new.kind, now, new.stale_before],
    )
    .await?;
    tx.exec(
        "DELETE FROM cascade_login_flows
          WHERE node_id = $1 AND is_open = {false} AND updated_at < $2",
        args![&new.node_id, new.prune_before],
    )
    .await?;
    // The partial unique index (one open flow per node and kind) makes a second request
    // join the first.
    tx.exec(
        "INSERT INTO cascade_login_flows
                (id, node_id, kind, origin, state, is_open, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'requested', {true}, $5, $5)
         ON CONFLICT DO NOTHING",
        args![&new.id, &new.node_id, &new.kind, &new.origin, now],
    )
    .await?;
    let row = tx
        .opt(
            &format!(
                "{SELECT_FLOW} WHERE f.node_id = $1 AND f.kind = $2 AND f.is_open <> {{false}}"
            ),
            args![&new.node_id, &new.kind],
        )
        .await?
        .ok_or_else(|| Error::Conflict("the login flow ended meanwhile".into()))?;
    let flow = flow_from_row(&row)?;
    let created = flow.id == new.id;
    Ok((flow, created))
}

async fn progress_login_flow(
    tx: &mut Tx,
    node_id: &str,
    id: &str,
    step: &FlowProgress,
    now: NaiveDateTime,
) -> Result<LoginFlow> {
    let current = flow_on(tx, id).await?;
    if current.node_id != node_id {
        return Err(flow_not_found());
    }
    if !current.open {
        return Ok(current);
    }
    let open = !flow_state_is_final(&step.state);
    tx.exec(
        "UPDATE cascade_login_flows
            SET state = $3, is_open = $4,
                qr_text = CASE WHEN $3 = 'pending_scan' THEN COALESCE($5, qr_text) END,
                qr_number = COALESCE($6, qr_number),
                qr_expires_at = COALESCE($7, qr_expires_at),
                otp_code = CASE WHEN $4 THEN otp_code END,
                login_id = COALESCE($8, login_id),
                account_name = COALESCE($9, account_name),
                login_expires_at = COALESCE($10, login_expires_at),
                error = COALESCE($11, error),
                updated_at = $12
          WHERE id = $1 AND node_id = $2 AND is_open <> {false}",
        args![
            id,
            node_id,
            &step.state,
            open,
            &step.qr_text,
            step.qr_number,
            step.qr_expires_at,
            &step.login_id,
            &step.account_name,
            step.login_expires_at,
            &step.error,
            now,
        ],
    )
    .await?;
    let flow = flow_on(tx, id).await?;
    if let Some(code) = &flow.otp_code {
        // Only the code handed out: one typed meanwhile waits for the next step.
        tx.exec(
            "UPDATE cascade_login_flows SET otp_code = NULL WHERE id = $1 AND otp_code = $2",
            args![id, code],
        )
        .await?;
    }
    Ok(flow)
}
