//! Cron expressions as WeRSS writes them: 5 fields (`min hour day month weekday`, 0 or 7 =
//! Sunday) or 6 with seconds first, and `a~b` meaning "a random value in [a, b]", drawn each
//! time the scheduler loads the task.

use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Replaces every `a~b` in `expr` with `pick(a, b)`.
///
/// # Errors
/// A `~` whose sides are not numbers, or `a > b`.
pub fn expand_ranges(expr: &str, pick: &mut dyn FnMut(u32, u32) -> u32) -> Result<String, String> {
    let fields = expr.split_whitespace().map(|field| {
        field
            .split(',')
            .map(|part| match part.split_once('~') {
                None => Ok(part.to_string()),
                Some((a, b)) => {
                    let (a, b) = (a.parse::<u32>(), b.parse::<u32>());
                    match (a, b) {
                        (Ok(a), Ok(b)) if a <= b => Ok(pick(a, b).to_string()),
                        _ => Err(format!("'{part}' is not a valid a~b range")),
                    }
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|parts| parts.join(","))
    });
    Ok(fields.collect::<Result<Vec<_>, _>>()?.join(" "))
}

/// Parses an expression (after `~` expansion) with 5 or 6 fields.
///
/// # Errors
/// A wrong field count or a field croner rejects, as a message for people.
pub fn parse(expr: &str) -> Result<Cron, String> {
    let count = expr.split_whitespace().count();
    if !(5..=6).contains(&count) {
        return Err(format!("cron expression needs 5 or 6 fields, got {count}"));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| format!("invalid cron expression '{expr}': {e}"))
}

/// Checks an expression as stored: `a~b` ranges are checked at both bounds.
///
/// # Errors
/// As [`expand_ranges`] and [`parse`].
pub fn validate(expr: &str) -> Result<(), String> {
    parse(&expand_ranges(expr, &mut |a, _| a)?)?;
    parse(&expand_ranges(expr, &mut |_, b| b)?).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_fields_and_ranges_validate() {
        assert!(validate("*/5 * * * *").is_ok());
        assert!(validate("0 0 3 * * *").is_ok());
        assert!(validate("0 3 * * 7").is_ok());
        assert!(validate("0~10 3 * * *").is_ok());
        assert!(validate("10~0 3 * * *").is_err());
        assert!(
            validate("50~70 * * * *").is_err(),
            "the upper bound is checked too"
        );
        assert!(validate("* * *").is_err());
        assert!(validate("61 * * * *").is_err());
        let picked = expand_ranges("0~10 1~1 * * *", &mut |a, b| b - a).expect("expands");
        assert_eq!(picked, "10 0 * * *");
    }
}
