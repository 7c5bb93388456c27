use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

/// A file in the layout of WeRSS's example `config.yaml` (with its odd spots: a default with a
/// leading space, dotted variable names, capitalised booleans, uneven indentation).
const WERSS_LAYOUT: &str = include_str!("../../tests/fixtures/werss-config.yaml");

#[test]
fn interpolation_uses_env_then_default_then_empty() {
    let env = env_of(&[("A", "x"), ("EMPTY", "")]);
    assert_eq!(interpolate("${A}-${B}-${B:-d}", &env), "x--d");
    assert_eq!(interpolate("${EMPTY:-fallback}", &env), "fallback");
    assert_eq!(interpolate("pre ${A:-z} post", &env), "pre x post");
    assert_eq!(interpolate("unterminated ${A", &env), "unterminated ${A");
    assert_eq!(interpolate("${CACHE.DIR:-./c}", &env), "./c");
}

#[test]
fn coercion_follows_werss() {
    assert_eq!(coerce("True".into()), Value::Bool(true));
    assert_eq!(coerce("FALSE".into()), Value::Bool(false));
    assert_eq!(coerce("8001".into()), Value::from(8001));
    assert_eq!(coerce("1.5".into()), Value::from(1.5));
    assert_eq!(coerce("1.".into()), Value::String("1.".into()));
    assert_eq!(coerce(" 10".into()), Value::String(" 10".into()));
    assert_eq!(coerce("-3".into()), Value::String("-3".into()));
    assert_eq!(coerce("CNabc".into()), Value::String("CNabc".into()));
}

#[test]
fn werss_layout_file_loads_with_defaults() {
    let c = from_yaml_str(WERSS_LAYOUT, "config.yaml", &env_of(&[])).expect("loads");
    assert_eq!(c.db, "sqlite:///data/db.db");
    assert_eq!(c.port, 8001);
    assert_eq!(c.token_expire_minutes, 60);
    assert_eq!(c.secret.as_ref().map(Secret::expose), Some("we-mp-rss"));
    assert!(!c.cascade.enabled);
    assert_eq!(c.cascade.node_type, "parent");
    assert_eq!(c.cascade.lease_seconds, 300);
    assert_eq!(c.cascade.fetchers, vec!["wechat"]);
}

#[test]
fn env_overrides_file_and_cascade_keys() {
    let env = env_of(&[
        ("PORT", "9000"),
        ("CASCADE_LEASE_SECONDS", "42"),
        ("CASCADE_HEARTBEAT_INTERVAL", "7"),
        ("CASCADE_FETCHERS", "wechat, RSS"),
        ("CASCADE_PARENT_API_URL", " 'parent.example:8001/' "),
    ]);
    let c = from_yaml_str(WERSS_LAYOUT, "config.yaml", &env).expect("loads");
    assert_eq!(c.port, 9000, "${{PORT}} in the file reads the env");
    assert_eq!(
        c.cascade.lease_seconds, 42,
        "CASCADE_<KEY> works without a file reference"
    );
    assert_eq!(c.cascade.heartbeat_interval, 7);
    assert_eq!(c.cascade.fetchers, vec!["wechat", "rss"]);
    assert_eq!(c.cascade.parent_api_url, "http://parent.example:8001");
}

#[test]
fn absent_top_level_keys_fall_back_to_werss_env() {
    let env = env_of(&[
        ("DB", "sqlite:///x.db"),
        ("SECRET_KEY", "s3"),
        ("PORT", "7000"),
    ]);
    let c = from_yaml_str("port: 8100\n", "t", &env).expect("loads");
    assert_eq!(c.port, 8100, "a key in the file beats the WeRSS variable");
    assert_eq!(c.db, "sqlite:///x.db");
    assert_eq!(c.secret.as_ref().map(Secret::expose), Some("s3"));
}

#[test]
fn empty_env_values_count_as_unset_and_huge_durations_are_clamped() {
    let env = env_of(&[
        ("PORT", ""),
        ("CASCADE_LEASE_SECONDS", ""),
        ("CASCADE_OFFLINE_AFTER", "99999999999999"),
    ]);
    let c = from_yaml_str("token_expire_minutes: 99999999999999\n", "t", &env).expect("loads");
    assert_eq!(c.port, 8001);
    assert_eq!(c.cascade.lease_seconds, 300);
    assert_eq!(c.cascade.offline_after, MAX_SECONDS);
    assert_eq!(c.token_expire_minutes, MAX_SECONDS / 60);
}

#[test]
fn empty_file_gives_zero_config_defaults() {
    let c = from_yaml_str("", "t", &env_of(&[])).expect("loads");
    assert_eq!(c.db, "sqlite://data/cascade.db");
    assert_eq!(c.port, 8001);
    assert_eq!(c.bind.to_string(), "127.0.0.1");
    assert!(c.secret.is_none());
    assert_eq!(c.token_expire_minutes, 4320);
}

#[test]
fn wrong_kinds_name_the_key() {
    let err =
        from_yaml_str("cascade:\n  lease_seconds: soon\n", "t", &env_of(&[])).expect_err("rejects");
    let text = err.to_string();
    assert!(text.contains("cascade.lease_seconds"), "{text}");
    let err = from_yaml_str("port: 70000\n", "t", &env_of(&[])).expect_err("rejects");
    assert!(err.to_string().contains("port"), "{err}");
    let err = from_yaml_str("a: [\n", "t", &env_of(&[])).expect_err("rejects");
    assert!(matches!(err, Error::Yaml { .. }));
}

#[test]
fn weread_login_timeout_means_is_retry_or_expired() {
    let c = from_yaml_str("", "t", &env_of(&[])).expect("loads");
    assert_eq!(c.cascade.weread_login_timeout_means, "retry");
    assert_eq!(c.cascade.weread_base_url, "https://weread.qq.com");
    assert_eq!(c.cascade.weread_renew_every, 3600);
    let env = env_of(&[("CASCADE_WEREAD_LOGIN_TIMEOUT_MEANS", "expired")]);
    let c = from_yaml_str("", "t", &env).expect("loads");
    assert_eq!(c.cascade.weread_login_timeout_means, "expired");
    let err = from_yaml_str(
        "cascade:\n  weread_login_timeout_means: maybe\n",
        "t",
        &env_of(&[]),
    )
    .expect_err("rejects");
    let text = err.to_string();
    assert!(
        text.contains("cascade.weread_login_timeout_means") && text.contains("'maybe'"),
        "{text}"
    );
}

#[test]
fn secret_is_never_printed_in_debug() {
    let c = from_yaml_str("secret: hunter2\n", "t", &env_of(&[])).expect("loads");
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn warnings_name_contradictions_and_published_credentials() {
    let no_env = env_of(&[]);
    let load = |yaml: &str| from_yaml_str(yaml, "t", &no_env).expect("config");
    let (key, secret) = WERSS_SAMPLE_CREDENTIALS;
    let child = load(
        "cascade:\n  enabled: True\n  node_type: child\n  api_key: CNown\n  api_secret: CSown\n",
    );
    assert!(child.warnings(Role::Child, &no_env).is_empty());
    assert!(child.warnings(Role::Parent, &no_env)[0].contains("runs as a parent"));
    assert!(
        Config::default().warnings(Role::Parent, &no_env).is_empty(),
        "zero config"
    );
    let sample = load(&format!(
        "cascade:\n  enabled: False\n  node_type: Parent\n  api_key: {key}\n  api_secret: {secret}\n"
    ));
    let w = sample.warnings(Role::Child, &no_env);
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].contains("'parent', but this process runs as a child"));
    assert!(w[1].contains("enabled is false"));
    assert!(w[2].contains("sample pair") && !w[2].contains(secret));
    assert!(sample.warnings(Role::Parent, &no_env).is_empty());
    let odd = load("cascade:\n  node_type: master\n");
    assert!(odd.warnings(Role::Parent, &no_env)[0].contains("neither"));
    let only_old = env_of(&[("CASCADE_PARENT_URL", "http://p:8001")]);
    assert!(
        child.warnings(Role::Child, &only_old)[0]
            .contains("CASCADE_PARENT_URL is set but never read")
    );
    let both = env_of(&[
        ("CASCADE_PARENT_URL", "http://p:8001"),
        ("CASCADE_PARENT_API_URL", "http://p:8001"),
    ]);
    assert!(child.warnings(Role::Child, &both).is_empty());
}

#[test]
fn budgets_are_given_per_login_kind_and_the_weread_gap_has_two_names() {
    use crate::logins::budget::Budgets;
    let c = from_yaml_str("", "t", &env_of(&[])).expect("loads");
    let b = Budgets::from_config(&c.cascade);
    assert_eq!((b.weread.per_hour, b.weread.per_day), (6, 25));
    assert!(b.mp.unlimited());
    assert_eq!(c.cascade.weread_gap(), std::time::Duration::from_secs(10));

    let yaml = "cascade:\n  budget_per_hour: {mp: 60}\n  budget_per_day:\n    weread: 40\n    mp: 500\n  weread_page_gap_ms: 2000\n";
    let c = from_yaml_str(yaml, "t", &env_of(&[])).expect("loads");
    let b = Budgets::from_config(&c.cascade);
    assert_eq!((b.mp.per_hour, b.mp.per_day), (60, 500));
    assert_eq!(
        (b.weread.per_hour, b.weread.per_day),
        (6, 40),
        "a kind left out keeps its default"
    );
    assert_eq!(
        c.cascade.weread_gap(),
        std::time::Duration::from_secs(2),
        "the old name still sets the gap"
    );

    let env = env_of(&[
        ("CASCADE_BUDGET_PER_HOUR", "weread:3, mp=0"),
        ("CASCADE_WEREAD_GAP_MS", "15000"),
    ]);
    let c = from_yaml_str(yaml, "t", &env).expect("loads");
    let b = Budgets::from_config(&c.cascade);
    assert_eq!((b.weread.per_hour, b.mp.per_hour), (3, 0));
    assert_eq!(
        c.cascade.weread_gap(),
        std::time::Duration::from_secs(15),
        "weread_gap_ms wins"
    );

    for bad in [
        "budget_per_hour: 6",
        "budget_per_hour: {books: 6}",
        "budget_per_day: 'weread'",
    ] {
        let err =
            from_yaml_str(&format!("cascade:\n  {bad}\n"), "t", &env_of(&[])).expect_err("rejects");
        assert!(err.to_string().contains("cascade.budget_per_"), "{err}");
    }
}

/// The keys a row of docs/CONFIGURATION.md documents: its first cell's `key`s (a row may
/// name two, as `api_key`, `api_secret`).
fn documented_keys(doc: &str) -> std::collections::HashSet<String> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .flat_map(|cell| cell.split(", "))
        .filter_map(|k| k.strip_prefix('`')?.strip_suffix('`'))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_setting_is_in_the_configuration_reference() {
    let doc = include_str!("../../docs/CONFIGURATION.md");
    let documented = documented_keys(doc);
    let missing: Vec<&str> = CASCADE_KEYS
        .iter()
        .chain(TOP_LEVEL_ENV.iter().map(|(k, _)| k))
        .copied()
        .filter(|k| !documented.contains(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/CONFIGURATION.md: {missing:?}"
    );
    // The reader sees through a row's pair of keys, and a key a row does not name is missed.
    let sample = "| `api_key`, `api_secret` | — | x |\n| `port` | `PORT` | `8001` | y |";
    let keys = documented_keys(sample);
    assert!(keys.contains("api_secret") && keys.contains("port") && !keys.contains("PORT"));
}
