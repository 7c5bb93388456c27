//! Database URLs in the forms WeRSS (SQLAlchemy) writes them, and ours.

use super::{Error, Result};
use std::path::PathBuf;

/// Where a database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// An SQLite file, or `None` for an in-memory database.
    Sqlite(Option<PathBuf>),
    /// A PostgreSQL URL in the form sqlx expects (`postgres://…`).
    Postgres(String),
}

/// Parses `sqlite:///rel.db`, `sqlite:////abs.db`, `sqlite://rel.db`, `sqlite::memory:`,
/// `postgresql://`, `postgres://` and `postgresql+<driver>://`.
///
/// # Errors
/// Any other scheme (MySQL, Oracle, …) or an empty path.
pub fn parse_db_url(url: &str) -> Result<DbUrl> {
    let url = url.trim();
    if url == "sqlite::memory:" || url == "sqlite://:memory:" || url == "sqlite://" {
        return Ok(DbUrl::Sqlite(None));
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = if let Some(abs) = rest.strip_prefix("////") {
            format!("/{abs}")
        } else if let Some(rel) = rest.strip_prefix("///") {
            rel.to_string()
        } else {
            rest.trim_start_matches("//").to_string()
        };
        let path = path.split('?').next().unwrap_or_default().to_string();
        if path.is_empty() {
            return Err(Error::Unsupported(format!(
                "database URL '{url}' names no file"
            )));
        }
        return Ok(DbUrl::Sqlite(Some(PathBuf::from(path))));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::Unsupported(format!("'{url}' is not a database URL")))?;
    let base = scheme.split('+').next().unwrap_or_default();
    match base {
        "postgresql" | "postgres" => Ok(DbUrl::Postgres(format!("postgres://{rest}"))),
        other => Err(Error::Unsupported(format!(
            "database '{other}' is not supported: use sqlite:// or postgresql://"
        ))),
    }
}

/// The URL with any `user:password@` replaced by `***@`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// A PostgreSQL URL with its database replaced by `name` (query parameters kept).
pub fn with_database(server: &str, name: &str) -> String {
    let (base, query) = server.split_once('?').unwrap_or((server, ""));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..path_start]);
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_swapped_in_the_url() {
        assert_eq!(
            with_database("postgres://u@h:5/base?sslmode=disable", "t_1"),
            "postgres://u@h:5/t_1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:5", "t_1"),
            "postgres://u@h:5/t_1"
        );
    }

    #[test]
    fn sqlalchemy_forms_are_understood() {
        let file = |p: &str| DbUrl::Sqlite(Some(PathBuf::from(p)));
        assert_eq!(
            parse_db_url("sqlite:///data/db.db").ok(),
            Some(file("data/db.db"))
        );
        assert_eq!(
            parse_db_url("sqlite:////var/db.db").ok(),
            Some(file("/var/db.db"))
        );
        assert_eq!(
            parse_db_url("sqlite://data/cascade.db").ok(),
            Some(file("data/cascade.db"))
        );
        assert_eq!(
            parse_db_url("sqlite::memory:").ok(),
            Some(DbUrl::Sqlite(None))
        );
        assert_eq!(
            parse_db_url("postgresql+psycopg2://u:p@h/db").ok(),
            Some(DbUrl::Postgres("postgres://u:p@h/db".into()))
        );
        assert!(parse_db_url("mysql+pymysql://u@h/db").is_err());
        assert!(parse_db_url("nonsense").is_err());
    }

    #[test]
    fn credentials_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgresql://u:pw@db:5432/x"),
            "postgresql://***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite:///data/db.db"), "sqlite:///data/db.db");
        assert_eq!(redact_url("sqlite:///dir/a@b.db"), "sqlite:///dir/a@b.db");
    }
}
