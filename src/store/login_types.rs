//! Domain types of the logins nodes report: what a heartbeat says of each, their budgets,
//! and the rows `GET {P}/logins` and the expiry reminders read. Never a login's secrets.

use chrono::NaiveDateTime;

/// A login as a node reported it in a heartbeat: never its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedLogin {
    /// Id on its node.
    pub login_id: String,
    /// `mp` or `weread`.
    pub kind: String,
    /// Account name.
    pub name: String,
    /// `valid`, `expiring`, `expired`, `cooling` or `pending_scan`.
    pub state: String,
    /// Session end, when known (UTC).
    pub expires_at: Option<NaiveDateTime>,
    /// End of its cooldown (UTC).
    pub cooldown_until: Option<NaiveDateTime>,
    /// Last success (UTC).
    pub last_ok_at: Option<NaiveDateTime>,
    /// Last error text.
    pub last_error: Option<String>,
    /// What its budget has left, when its kind has caps.
    pub budget: Option<LoginBudget>,
}

/// What a login's budget has left (issue 13 §7), as its node reported it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct LoginBudget {
    /// Calls left in the current hour (`null`: no hourly cap).
    pub hour_left: Option<i64>,
    /// Calls left in the current 24 hours (`null`: no daily cap).
    pub day_left: Option<i64>,
    /// While no call is left: when the next one frees (UTC).
    #[serde(serialize_with = "crate::protocol::time::ser_opt")]
    #[schemars(with = "Option<crate::protocol::time::Wire>")]
    pub resets_at: Option<NaiveDateTime>,
}

impl LoginBudget {
    /// The stored form (JSON text).
    pub(crate) fn to_json(&self) -> String {
        serde_json::json!({"hour_left": self.hour_left, "day_left": self.day_left,
            "resets_at": self.resets_at.map(crate::protocol::time::to_wire)})
        .to_string()
    }

    /// Reads the stored form; `None` for anything else.
    pub(crate) fn from_json(text: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        v.is_object().then(|| Self {
            hour_left: v["hour_left"].as_i64(),
            day_left: v["day_left"].as_i64(),
            resets_at: v["resets_at"]
                .as_str()
                .and_then(crate::protocol::time::parse),
        })
    }
}

/// A login of a node, as `GET {P}/logins` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct NodeLogin {
    /// The node.
    pub node_id: String,
    /// Its name.
    pub node_name: String,
    /// Id on the node.
    pub login_id: String,
    /// `mp` or `weread`.
    pub kind: String,
    /// Account name.
    pub name: String,
    /// `valid`, `expiring`, `expired`, `cooling` or `pending_scan`.
    pub state: String,
    /// Session end (UTC), when known.
    #[serde(serialize_with = "crate::protocol::time::ser_opt")]
    #[schemars(with = "Option<crate::protocol::time::Wire>")]
    pub expires_at: Option<NaiveDateTime>,
    /// End of its cooldown (UTC).
    #[serde(serialize_with = "crate::protocol::time::ser_opt")]
    #[schemars(with = "Option<crate::protocol::time::Wire>")]
    pub cooldown_until: Option<NaiveDateTime>,
    /// Last success (UTC).
    #[serde(serialize_with = "crate::protocol::time::ser_opt")]
    #[schemars(with = "Option<crate::protocol::time::Wire>")]
    pub last_ok_at: Option<NaiveDateTime>,
    /// Last error text.
    pub last_error: Option<String>,
    /// What its budget has left (absent when its kind has no caps, or from older children).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<LoginBudget>,
}

/// A reported login with its expiry-reminder columns, for the parent's reminders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginReminder {
    /// The login as `GET {P}/logins` lists it.
    pub login: NodeLogin,
    /// Highest reminder sent: 0 none, 1 the 24 h one, 2 the 6 h one, 3 the expiry one.
    pub stage: i64,
    /// The `expires_at` that reminder was for.
    pub stage_expires_at: Option<NaiveDateTime>,
}
