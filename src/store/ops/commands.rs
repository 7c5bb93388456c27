//! Node commands other than QR logins (issue 13 §6). See [`crate::store::commands`] for the
//! states and the row types.

use crate::store::commands::{command_from_row, command_not_found};
use crate::store::db::{Tx, args};
use crate::store::{Error, NewNodeCommand, NodeCommand, Result, Store};
use chrono::NaiveDateTime;

impl Store {
    /// Records a node command (see [`crate::store::commands`]); commands that expired before
    /// `prune_before` are removed.
    pub async fn create_node_command(&self, new: NewNodeCommand, now: NaiveDateTime) -> Result<()> {
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.exec(
                        "DELETE FROM cascade_node_commands WHERE expires_at < $1",
                        args![new.prune_before],
                    )
                    .await?;
                    tx.exec(
                        "INSERT INTO cascade_node_commands
                                (id, node_id, command, payload, state, created_at, expires_at)
                         VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
                        args![
                            &new.id,
                            &new.node_id,
                            &new.command,
                            &new.payload,
                            now,
                            new.expires_at,
                        ],
                    )
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// One node command.
    pub async fn get_node_command(&self, id: &str) -> Result<NodeCommand> {
        let id = id.to_string();
        self.db
            .read(move |tx| Box::pin(async move { command_on(tx, &id).await }))
            .await
    }

    /// Hands a node its unanswered, unexpired commands, oldest first; the `pending` ones
    /// become `sent` (a held claim no longer answers early for them). A `sent` command is
    /// handed out again until answered: the node runs each id once.
    pub async fn deliver_node_commands(
        &self,
        node_id: &str,
        now: NaiveDateTime,
    ) -> Result<Vec<NodeCommand>> {
        let node_id = node_id.to_string();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.exec(
                        "UPDATE cascade_node_commands SET state = 'sent'
                          WHERE node_id = $1 AND state = 'pending' AND expires_at > $2",
                        args![&node_id, now],
                    )
                    .await?;
                    let rows = tx
                        .rows(
                            "SELECT * FROM cascade_node_commands
                              WHERE node_id = $1 AND state = 'sent' AND expires_at > $2
                              ORDER BY created_at, id",
                            args![&node_id, now],
                        )
                        .await?;
                    rows.iter().map(command_from_row).collect()
                })
            })
            .await
    }

    /// Whether a command waits for a node, not yet handed out by a heartbeat.
    pub async fn node_command_pending(&self, node_id: &str, now: NaiveDateTime) -> Result<bool> {
        let node_id = node_id.to_string();
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let n = tx
                        .int(
                            "SELECT COUNT(*) FROM cascade_node_commands
                              WHERE node_id = $1 AND state = 'pending' AND expires_at > $2",
                            args![node_id, now],
                        )
                        .await?;
                    Ok(n.unwrap_or(0) > 0)
                })
            })
            .await
    }

    /// A node's answer (or its error) to its own command. Another node's command is not
    /// found; one answered already or past its time is a conflict.
    pub async fn answer_node_command(
        &self,
        node_id: &str,
        id: &str,
        answer: Option<String>,
        error: Option<String>,
        now: NaiveDateTime,
    ) -> Result<NodeCommand> {
        let (node_id, id) = (node_id.to_string(), id.to_string());
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let current = command_on(tx, &id).await?;
                    if current.node_id != node_id {
                        return Err(command_not_found());
                    }
                    let done = tx
                        .exec(
                            "UPDATE cascade_node_commands
                                SET state = 'answered', answer = $3, error = $4, answered_at = $5
                              WHERE id = $1 AND node_id = $2 AND state IN ('pending', 'sent')
                                AND expires_at > $5",
                            args![&id, &node_id, answer, error, now],
                        )
                        .await?;
                    if done == 0 {
                        // Read again: another answer may have landed since `current`.
                        let now_state = command_on(tx, &id).await?.state;
                        let why = if now_state == "answered" {
                            "the command was answered already"
                        } else {
                            "the command expired: nobody waits for its answer any more"
                        };
                        return Err(Error::Conflict(why.into()));
                    }
                    command_on(tx, &id).await
                })
            })
            .await
    }

    /// Ends a command nobody waits for any more (its requester timed out).
    pub async fn expire_node_command(&self, id: &str, now: NaiveDateTime) -> Result<()> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.exec(
                        "UPDATE cascade_node_commands SET state = 'expired', expires_at = $2
                          WHERE id = $1 AND state IN ('pending', 'sent')",
                        args![id, now],
                    )
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// The nodes that can run a search now, best first: active nodes that heartbeat since
    /// `online_since`, take commands and report an `mp` login that is valid (or about to
    /// expire), those with the fewest unanswered commands first.
    pub async fn search_nodes(
        &self,
        online_since: NaiveDateTime,
        now: NaiveDateTime,
    ) -> Result<Vec<String>> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    tx.texts(
                        "SELECT n.id FROM we_cascade_nodes n
                          WHERE n.is_active <> {false} AND n.last_heartbeat_at >= $1
                            AND n.features LIKE '%\"commands\"%'
                            AND EXISTS (SELECT 1 FROM cascade_node_logins l
                                         WHERE l.node_id = n.id AND l.kind = 'mp'
                                           AND l.state IN ('valid', 'expiring'))
                          ORDER BY (SELECT COUNT(*) FROM cascade_node_commands c
                                     WHERE c.node_id = n.id AND c.state IN ('pending', 'sent')
                                       AND c.expires_at > $2),
                                   n.last_heartbeat_at DESC, n.id",
                        args![online_since, now],
                    )
                    .await
                })
            })
            .await
    }
}

/// Reads a command inside the caller's transaction.
async fn command_on(tx: &mut Tx, id: &str) -> Result<NodeCommand> {
    let row = tx
        .opt(
            "SELECT * FROM cascade_node_commands WHERE id = $1",
            args![id],
        )
        .await?
        .ok_or_else(command_not_found)?;
    command_from_row(&row)
}
