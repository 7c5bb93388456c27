//! Aligned plain-text tables for the operator commands.

use super::colour::{self, visible_width};
use super::out::{out, outln};
use serde_json::Value;
use std::fmt;

/// Rows under a header, each column as wide as its widest cell.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    footer: Option<String>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
            footer: None,
        }
    }

    /// Adds a row (missing cells print empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A line printed under the rows.
    pub fn footer(&mut self, line: String) {
        self.footer = Some(line);
    }

    /// A node as `node show` prints it: its numeric codes as words (`status` 1 → `online`,
    /// `node_type` 1 → `child`).
    pub fn node_in_words(node: &Value) -> Value {
        let mut n = node.clone();
        let word = |v: &Value, words: &[&str]| {
            v.as_u64()
                .and_then(|i| words.get(usize::try_from(i).ok()?))
                .map_or_else(|| v.clone(), |w| Value::from(*w))
        };
        n["status"] = word(&n["status"], &["offline", "online", "deactivated"]);
        n["node_type"] = word(&n["node_type"], &["parent record", "child"]);
        n
    }

    /// A two-column table of an object's fields (nested values as JSON).
    pub fn pairs(object: &Value) -> Self {
        let mut t = Self::new(&["FIELD", "VALUE"]);
        for (k, v) in object.as_object().into_iter().flatten() {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            t.row(vec![k.clone(), value]);
        }
        t
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| visible_width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(visible_width(cell));
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let mut out = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                if i + 1 == columns {
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(width - visible_width(cell) + 2));
                }
            }
            writeln!(f, "{}", out.trim_end())
        };
        line(f, &self.header)?;
        for row in &self.rows {
            line(f, row)?;
        }
        if let Some(footer) = &self.footer {
            writeln!(f, "{footer}")?;
        }
        Ok(())
    }
}

/// A cell's text: `-` for null or empty, strings bare, the rest as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The API's JSON with `--json`, else the table `table` makes of it.
///
/// # Errors
/// Standard output closed or unwritable.
pub fn print(json: bool, data: &Value, table: impl FnOnce(&Value) -> Table) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(data).unwrap_or_default())
    } else {
        out!("{}", table(data))
    }
}

/// Nodes as a table: state, load/capacity, session, cooldown, last heartbeat.
pub fn node_table(list: &Value) -> Table {
    let mut t = Table::new(&[
        "ID",
        "NAME",
        "STATE",
        "LOAD",
        "SESSION",
        "COOLING UNTIL",
        "LAST HEARTBEAT",
    ]);
    let now = crate::protocol::time::to_wire(chrono::Utc::now().naive_utc());
    for n in list.as_array().into_iter().flatten() {
        // Wire times sort as text.
        let cooling = n["cooldown_until"]
            .as_str()
            .is_some_and(|t| t > now.as_str());
        let state = if n["is_active"] == false {
            "disabled"
        } else if n["online"] != true {
            "offline"
        } else if cooling {
            "cooling"
        } else {
            "online"
        };
        t.row(vec![
            text(&n["id"]),
            text(&n["name"]),
            colour::state(state),
            format!("{}/{}", text(&n["held_feeds"]), text(&n["capacity"])),
            text(&n["session_state"]),
            text(&n["cooldown_until"]),
            text(&n["last_heartbeat_at"]),
        ]);
    }
    t
}

/// Logins the nodes report, as a table (times in UTC).
pub fn login_table(list: &Value) -> Table {
    let mut t = Table::new(&[
        "NODE",
        "LOGIN",
        "KIND",
        "NAME",
        "STATE",
        "EXPIRES (UTC)",
        "COOLING UNTIL",
        "LAST OK",
        "LAST ERROR",
    ]);
    for l in list.as_array().into_iter().flatten() {
        t.row(vec![
            text(&l["node_name"]),
            text(&l["login_id"]),
            text(&l["kind"]),
            text(&l["name"]),
            colour::state(&text(&l["state"])),
            text(&l["expires_at"]),
            text(&l["cooldown_until"]),
            text(&l["last_ok_at"]),
            text(&l["last_error"]),
        ]);
    }
    t
}

/// A node's new credentials, and the `cascade:` section of its child config (WeRSS layout),
/// for a person to copy; `parent` is the address children use to reach the parent.
///
/// # Errors
/// Standard output closed or unwritable.
pub fn credentials(data: &Value, parent: &str) -> anyhow::Result<()> {
    let (key, secret) = (text(&data["api_key"]), text(&data["api_secret"]));
    outln!("node_id:    {}", text(&data["node_id"]))?;
    outln!("api_key:    {key}")?;
    outln!("api_secret: {secret}")?;
    outln!("(the secret is shown only now)\n")?;
    outln!("# the child's config.yaml (`cascade child --config config.yaml`)")?;
    outln!("cascade:")?;
    outln!("  enabled: true")?;
    outln!("  node_type: child")?;
    outln!("  parent_api_url: {parent}")?;
    outln!("  api_key: {key}")?;
    outln!("  api_secret: {secret}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_the_cell_widths() {
        let mut t = Table::new(&["ID", "NAME"]);
        t.row(vec!["1".into(), "short".into()]);
        t.row(vec!["12345".into(), "公众号".into()]);
        assert_eq!(t.to_string(), "ID     NAME\n1      short\n12345  公众号\n");
    }
}
