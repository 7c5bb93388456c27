//! An allocation's status as a type: the values the state machine writes, and any other
//! value an adopted WeRSS row holds, kept as read.

/// An allocation's state (PROTOCOL §4.1): `pending` → `claimed` → `executing` → `completed`
/// or `failed`, and back to `pending` on a retryable failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocStatus {
    /// Waiting to be claimed.
    Pending,
    /// Claimed under a lease, not yet started.
    Claimed,
    /// Being crawled under a lease.
    Executing,
    /// Done.
    Completed,
    /// Given up.
    Failed,
    /// A value this version does not write (an adopted row), kept as read.
    Other(String),
}

impl AllocStatus {
    /// The status a stored value names.
    pub fn parse(value: &str) -> Self {
        match value {
            "pending" => Self::Pending,
            "claimed" => Self::Claimed,
            "executing" => Self::Executing,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            other => Self::Other(other.to_string()),
        }
    }

    /// The stored (and wire) value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "pending",
            Self::Claimed => "claimed",
            Self::Executing => "executing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Other(s) => s,
        }
    }

    /// Whether a node holds the allocation under a lease.
    pub fn is_held(&self) -> bool {
        matches!(self, Self::Claimed | Self::Executing)
    }
}

impl std::fmt::Display for AllocStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for AllocStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::AllocStatus;
    use crate::store::STATUSES;

    #[test]
    fn statuses_read_back_as_written_and_unknown_ones_are_kept() {
        for &s in STATUSES {
            let status = AllocStatus::parse(s);
            assert_eq!(status.as_str(), s);
            assert_eq!(serde_json::json!(status), serde_json::json!(s));
        }
        assert_eq!(
            AllocStatus::parse("timeout"),
            AllocStatus::Other("timeout".into())
        );
        let held: Vec<bool> = ["pending", "claimed", "executing", "completed", "x"]
            .map(|s| AllocStatus::parse(s).is_held())
            .to_vec();
        assert_eq!(held, [false, true, true, false, false]);
    }
}
