//! Node commands other than QR logins (issue 13 §6): today `search`, an MP `searchbiz` a node
//! runs for an admin. A command is `pending` until a heartbeat hands it to its node, `sent`
//! until the node answers (`answered`) or its time is up (`expired`). Any parent of a shared
//! database delivers it and takes its answer: the admin request that waits for it reads the
//! row. Like [`crate::store::flows`], the SQL is written once in [`node_command_methods!`].

use super::rows::RowExt;
use super::{Error, Result};
use chrono::NaiveDateTime;

/// A command as the parent keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCommand {
    /// Its id (a UUID).
    pub id: String,
    /// The node that runs it.
    pub node_id: String,
    /// What it asks (`search`).
    pub command: String,
    /// Its arguments (JSON text).
    pub payload: String,
    /// `pending`, `sent`, `answered` or `expired`.
    pub state: String,
    /// The node's answer (JSON text), once answered.
    pub answer: Option<String>,
    /// Why the node could not do it.
    pub error: Option<String>,
    /// Created (UTC).
    pub created_at: NaiveDateTime,
    /// After this the command is neither delivered nor answered.
    pub expires_at: NaiveDateTime,
}

/// What recording a command needs.
#[derive(Debug, Clone)]
pub struct NewNodeCommand {
    /// A new id (UUID).
    pub id: String,
    /// The node.
    pub node_id: String,
    /// `search`.
    pub command: String,
    /// Its arguments (JSON text).
    pub payload: String,
    /// When it is no longer wanted.
    pub expires_at: NaiveDateTime,
    /// Commands that ended before this are removed.
    pub prune_before: NaiveDateTime,
}

/// Reads a command row.
pub(crate) fn command_from_row(r: &impl RowExt) -> Result<NodeCommand> {
    Ok(NodeCommand {
        id: r.text("id")?,
        node_id: r.text("node_id")?,
        command: r.text("command")?,
        payload: r.text("payload")?,
        state: r.text("state")?,
        answer: r.opt_text("answer")?,
        error: r.opt_text("error")?,
        created_at: r.time("created_at")?.unwrap_or_default(),
        expires_at: r.time("expires_at")?.unwrap_or_default(),
    })
}

/// The error of a command that is not there (or belongs to another node).
pub(crate) fn command_not_found() -> Error {
    Error::NotFound("command")
}

/// The node-command methods of a backend: `$write` and `$read` name its pools, `$t` turns a
/// `NaiveDateTime` into what it binds.
macro_rules! node_command_methods {
    ($write:ident, $read:ident, $t:path) => {
        /// Records a command; commands that expired before `prune_before` are removed.
        pub(crate) async fn create_node_command(
            &self,
            new: crate::store::NewNodeCommand,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<()> {
            sqlx::query("DELETE FROM cascade_node_commands WHERE expires_at < $1")
                .bind($t(new.prune_before))
                .execute(&self.$write)
                .await?;
            sqlx::query(
                "INSERT INTO cascade_node_commands
                        (id, node_id, command, payload, state, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
            )
            .bind(&new.id)
            .bind(&new.node_id)
            .bind(&new.command)
            .bind(&new.payload)
            .bind($t(now))
            .bind($t(new.expires_at))
            .execute(&self.$write)
            .await?;
            Ok(())
        }

        /// One command.
        pub(crate) async fn get_node_command(
            &self,
            id: &str,
        ) -> crate::store::Result<crate::store::NodeCommand> {
            use crate::store::commands::{command_from_row, command_not_found};
            let row = sqlx::query("SELECT * FROM cascade_node_commands WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.$write)
                .await?
                .ok_or_else(command_not_found)?;
            command_from_row(&row)
        }

        /// The unanswered, unexpired commands of a node, oldest first; the `pending` ones
        /// become `sent` (a held claim no longer answers early for them). A `sent` command is
        /// handed out again until answered: the node runs each id once.
        pub(crate) async fn deliver_node_commands(
            &self,
            node_id: &str,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<Vec<crate::store::NodeCommand>> {
            use crate::store::commands::command_from_row;
            sqlx::query(
                "UPDATE cascade_node_commands SET state = 'sent'
                  WHERE node_id = $1 AND state = 'pending' AND expires_at > $2",
            )
            .bind(node_id)
            .bind($t(now))
            .execute(&self.$write)
            .await?;
            let rows = sqlx::query(
                "SELECT * FROM cascade_node_commands
                  WHERE node_id = $1 AND state = 'sent' AND expires_at > $2
                  ORDER BY created_at, id",
            )
            .bind(node_id)
            .bind($t(now))
            .fetch_all(&self.$write)
            .await?;
            rows.iter().map(command_from_row).collect()
        }

        /// Whether a command waits for a node and no heartbeat has handed it out yet.
        pub(crate) async fn node_command_pending(
            &self,
            node_id: &str,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<bool> {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM cascade_node_commands
                  WHERE node_id = $1 AND state = 'pending' AND expires_at > $2",
            )
            .bind(node_id)
            .bind($t(now))
            .fetch_one(&self.$write)
            .await?;
            Ok(n > 0)
        }

        /// Keeps a node's answer (or its error) to its own command. Another node's command
        /// is not found; one answered already or past its time is a conflict.
        pub(crate) async fn answer_node_command(
            &self,
            node_id: &str,
            id: &str,
            answer: Option<String>,
            error: Option<String>,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<crate::store::NodeCommand> {
            use crate::store::commands::command_not_found;
            let current = self.get_node_command(id).await?;
            if current.node_id != node_id {
                return Err(command_not_found());
            }
            let done = sqlx::query(
                "UPDATE cascade_node_commands
                    SET state = 'answered', answer = $3, error = $4, answered_at = $5
                  WHERE id = $1 AND node_id = $2 AND state IN ('pending', 'sent')
                    AND expires_at > $5",
            )
            .bind(id)
            .bind(node_id)
            .bind(&answer)
            .bind(&error)
            .bind($t(now))
            .execute(&self.$write)
            .await?;
            if done.rows_affected() == 0 {
                let why = if current.state == "answered" {
                    "the command was answered already"
                } else {
                    "the command expired: nobody waits for its answer any more"
                };
                return Err(crate::store::Error::Conflict(why.into()));
            }
            self.get_node_command(id).await
        }

        /// Ends a command nobody waits for any more (its requester timed out).
        pub(crate) async fn expire_node_command(
            &self,
            id: &str,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<()> {
            sqlx::query(
                "UPDATE cascade_node_commands SET state = 'expired', expires_at = $2
                  WHERE id = $1 AND state IN ('pending', 'sent')",
            )
            .bind(id)
            .bind($t(now))
            .execute(&self.$write)
            .await?;
            Ok(())
        }

        /// Active nodes that heartbeat since `online_since`, take commands and report an
        /// `mp` login that is valid (or about to expire): the ones that can search, those
        /// with the fewest unanswered commands first.
        pub(crate) async fn search_nodes(
            &self,
            online_since: chrono::NaiveDateTime,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<Vec<String>> {
            let ids: Vec<(String,)> = sqlx::query_as(
                "SELECT n.id FROM we_cascade_nodes n
                  WHERE n.is_active AND n.last_heartbeat_at >= $1
                    AND n.features LIKE '%\"commands\"%'
                    AND EXISTS (SELECT 1 FROM cascade_node_logins l
                                 WHERE l.node_id = n.id AND l.kind = 'mp'
                                   AND l.state IN ('valid', 'expiring'))
                  ORDER BY (SELECT COUNT(*) FROM cascade_node_commands c
                             WHERE c.node_id = n.id AND c.state IN ('pending', 'sent')
                               AND c.expires_at > $2),
                           n.last_heartbeat_at DESC, n.id",
            )
            .bind($t(online_since))
            .bind($t(now))
            .fetch_all(&self.$read)
            .await?;
            Ok(ids.into_iter().map(|(id,)| id).collect())
        }
    };
}

pub(crate) use node_command_methods;
