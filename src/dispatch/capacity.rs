//! Capacity from measurements (issue 15, `node_capacity: auto`): each node's completions are
//! counted in ten-minute windows (the current one and the one before), and placement gives
//! a node as many feeds as it finished in `horizon` at its measured rate, within its static
//! capacity. A slow or throttled node finishes fewer and gets less; a fast one more.

/// Seconds of one counting window.
pub const WINDOW: i64 = 600;

/// Reads the `node_capacity` setting: `true` for `auto`, `false` for `static` (case and
/// spaces ignored).
///
/// # Errors
/// Any other value.
pub fn is_auto(setting: &str) -> Result<bool, String> {
    match setting.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(true),
        "" | "static" => Ok(false),
        other => Err(format!(
            "node_capacity must be static or auto, not '{other}'"
        )),
    }
}

/// What a node's completions counted (stored on its row).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeRate {
    /// When the current window began (epoch seconds); `None`: nothing finished yet.
    pub window_at: Option<i64>,
    /// Feeds finished in the current window.
    pub done: i64,
    /// Feeds finished in the window before it.
    pub prev: i64,
}

impl NodeRate {
    /// Feeds a second over the last one or two windows at `now` (epoch seconds); `None`
    /// when nothing was measured in the last two windows.
    pub fn per_second(&self, now: i64) -> Option<f64> {
        let start = self.window_at?;
        let elapsed = (now - start).max(0);
        #[allow(clippy::cast_precision_loss)]
        let rate = if elapsed < WINDOW {
            // The window before and the current one so far.
            (self.prev + self.done) as f64 / (WINDOW + elapsed.max(1)) as f64
        } else if elapsed < 2 * WINDOW {
            self.done as f64 / elapsed as f64
        } else {
            return None;
        };
        Some(rate)
    }
}

/// A node's capacity under `node_capacity: auto`: what it finishes in `horizon` seconds at
/// its measured rate, at most `ceiling` (its static capacity). A node that is finishing work
/// may always hold one feed more than it holds, so one whose feeds each take longer than
/// `horizon` can still grow to what it can run at once. With no recent measurement a node
/// that holds work gets 1 (it finished nothing for two windows); an idle one keeps its
/// ceiling, so a new node is not starved of the work that measures it.
pub fn auto_capacity(rate: Option<f64>, held: i64, ceiling: i64, horizon: i64) -> i64 {
    let ceiling = ceiling.max(0);
    match rate {
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        Some(r) => {
            let by_rate = (r * horizon.max(1) as f64).ceil() as i64;
            let growing = if r > 0.0 { held.saturating_add(1) } else { 1 };
            by_rate.max(growing).clamp(1, ceiling.max(1))
        }
        None if held > 0 => 1.min(ceiling),
        None => ceiling,
    }
    .min(ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_covers_the_last_two_windows_then_expires() {
        let r = NodeRate {
            window_at: Some(1_000),
            done: 30,
            prev: 60,
        };
        // 90 feeds over 600 + 300 s.
        assert_eq!(r.per_second(1_300), Some(0.1));
        // The window ended without a new completion: 30 over 900 s.
        let late = r.per_second(1_900).expect("measured");
        assert!((late - 30.0 / 900.0).abs() < 1e-9);
        assert_eq!(r.per_second(2_200), None);
        assert_eq!(NodeRate::default().per_second(5), None);
    }

    #[test]
    fn the_setting_reads_static_and_auto_only() {
        assert_eq!(is_auto(" Auto "), Ok(true));
        assert_eq!(is_auto("static"), Ok(false));
        assert!(is_auto("fast").is_err());
    }

    #[test]
    fn capacity_follows_the_rate_within_the_ceiling() {
        // 0.1 feeds/s over 300 s: 30, capped at 20; a slow node gets 2, a stalled one 1.
        assert_eq!(auto_capacity(Some(0.1), 0, 20, 300), 20);
        assert_eq!(auto_capacity(Some(0.005), 0, 20, 300), 2);
        // Slower than the horizon yet finishing: one more than it holds.
        assert_eq!(auto_capacity(Some(0.001), 3, 20, 300), 4);
        assert_eq!(
            auto_capacity(Some(0.001), 20, 20, 300),
            20,
            "never past the ceiling"
        );
        assert_eq!(auto_capacity(Some(0.0), 3, 20, 300), 1);
        assert_eq!(auto_capacity(None, 4, 20, 300), 1);
        assert_eq!(
            auto_capacity(None, 0, 20, 300),
            20,
            "unmeasured and idle: its ceiling"
        );
        assert_eq!(
            auto_capacity(Some(1.0), 0, 0, 300),
            0,
            "a zero ceiling stays zero"
        );
    }
}
