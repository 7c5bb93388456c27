//! Tests that skip themselves, said once per kind. Without `CASCADE_TEST_PG_URL` the
//! PostgreSQL tests return at once and report `ok`; without Chromium the browser tests do too.
//! The first skip of each kind writes, past the harness's capture, how many tests of this run
//! skip and why. The count is exact: this test binary lists itself (`--list` with this run's
//! filters) and the tests it selected are matched against the tests that skip, found in the
//! sources of `tests/it` (a test whose body reaches `Backend::postgres()` or
//! `Browser::start()` and returns when it gives `None`, directly or through a helper of its
//! file; and the `…::postgres` half of every `on_both!` test).

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::Once;

/// Why tests skip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// `CASCADE_TEST_PG_URL` is not set.
    Postgres,
    /// chromium or chromedriver is missing.
    Browser,
}

impl Skip {
    /// The call whose `None` makes a test return.
    fn marker(self) -> &'static str {
        match self {
            Self::Postgres => "Backend::postgres()",
            Self::Browser => "Browser::start()",
        }
    }

    /// What is skipped, and how to run it.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Self::Postgres => (
                "PostgreSQL",
                "set CASCADE_TEST_PG_URL=postgres://… to run them (CASCADE_REQUIRE_PG=1 makes a skip fail)",
            ),
            Self::Browser => (
                "browser",
                "apt-get install chromium chromium-driver to run them (CASCADE_REQUIRE_BROWSER=1 \
                 makes a skip fail)",
            ),
        }
    }
}

static POSTGRES_NOTE: Once = Once::new();
static BROWSER_NOTE: Once = Once::new();

/// Says, once per kind and run, how many tests of this run skip for `why` (a test calls this
/// as it skips).
pub fn note(why: Skip) {
    let once = match why {
        Skip::Postgres => &POSTGRES_NOTE,
        Skip::Browser => &BROWSER_NOTE,
    };
    once.call_once(|| {
        let (what, how) = why.words();
        let count = skipped_in_this_run(why).map_or_else(|| "some".to_string(), |n| n.to_string());
        // Written past the test harness's capture, so `cargo test` shows it.
        let _ = writeln!(
            std::io::stderr(),
            "note: {count} {what} tests SKIPPED — they report ok but did not run; {how}"
        );
    });
}

/// How many tests this run selected that skip for `why`; `None` when this binary cannot list
/// itself or the sources are gone.
fn skipped_in_this_run(why: Skip) -> Option<usize> {
    let exe = std::env::current_exe().ok()?;
    let listed = std::process::Command::new(exe)
        .args(list_args(std::env::args().skip(1)))
        .arg("--list")
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let sources = read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it"))?;
    let skipping = skipping_tests(&sources, why.marker());
    Some(count_selected(
        &String::from_utf8_lossy(&listed.stdout),
        why,
        &skipping,
    ))
}

/// The arguments of this run that choose tests (filters, `--exact`, `--skip X`, `--ignored`,
/// `--include-ignored`), for `--list`; the rest (threads, output, capture) do not apply.
pub fn list_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    const KEEP: &[&str] = &["--exact", "--ignored", "--include-ignored"];
    const TAKE_VALUE: &[&str] = &[
        "--test-threads",
        "--color",
        "--format",
        "--logfile",
        "--shuffle-seed",
        "-Z",
    ];
    let mut kept = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--skip" {
            kept.push(arg);
            kept.extend(args.next());
        } else if arg.starts_with("--skip=") || KEEP.contains(&arg.as_str()) {
            kept.push(arg);
        } else if TAKE_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            kept.push(arg);
        }
    }
    kept
}

/// The files `tests/it/*.rs`, by module name.
fn read_sources(dir: &Path) -> Option<Vec<(String, String)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem()?.to_string_lossy().to_string();
            files.push((stem, std::fs::read_to_string(&path).ok()?));
        }
    }
    Some(files)
}

/// `(module, fn)` of the functions in `sources` that return when `marker` gives `None`
/// (`let Some(..) = marker else { return }`), directly or through a function of the same
/// file that passes the `None` on (`marker?`).
pub fn skipping_tests(sources: &[(String, String)], marker: &str) -> HashSet<(String, String)> {
    let mut found = HashSet::new();
    for (module, text) in sources {
        let mut markers = vec![marker.to_string()];
        let mut i = 0;
        while let Some(m) = markers.get(i).cloned() {
            i += 1;
            for (at, _) in text.match_indices(&m) {
                let rest = text[at + m.len()..].trim_start();
                let rest = rest.strip_prefix(".await").unwrap_or(rest).trim_start();
                let Some(name) = enclosing_fn(&text[..at]) else {
                    continue;
                };
                if rest.starts_with('?') {
                    let helper = format!("{name}()");
                    if !markers.contains(&helper) {
                        markers.push(helper);
                    }
                } else if rest.starts_with("else") {
                    found.insert((module.clone(), name.to_string()));
                }
            }
        }
    }
    found
}

/// The name of the last `fn` declared in `before`.
fn enclosing_fn(before: &str) -> Option<&str> {
    let mut end = before.len();
    let at = loop {
        let at = before[..end].rfind("fn ")?;
        if at == 0 || before[..at].ends_with(char::is_whitespace) {
            break at;
        }
        end = at;
    };
    let name = &before[at + 3..];
    let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(&name[..end])
}

/// How many of the tests in `list` (the harness's `--list` output, `name: test` lines) skip
/// for `why`: the `…::postgres` half of an `on_both!` test, or a test in `skipping` (matched
/// by its module and its own name, whatever modules lie between).
pub fn count_selected(list: &str, why: Skip, skipping: &HashSet<(String, String)>) -> usize {
    list.lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .filter(|name| {
            let module = name.split("::").next().unwrap_or_default().to_string();
            let own = name.rsplit("::").next().unwrap_or_default().to_string();
            (why == Skip::Postgres && name.ends_with("::postgres"))
                || skipping.contains(&(module, own))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
auth::login_works::postgres: test
auth::login_works::sqlite: test
cli::demo_runs: test
dashboard::logs_in: test
dashboard::plain: test
errors::values_postgres_cannot_store: test
helpers::skips::tests::counts: test
parents::two_parents_hand_out: test

8 tests, 0 benchmarks
";

    fn sources() -> Vec<(String, String)> {
        let parents = "async fn two_parents() -> Option<(A, B)> {\n    let backend = Backend::postgres()?;\n}\n\
            #[tokio::test]\nasync fn two_parents_hand_out() {\n    let Some((a, b)) = two_parents().await else {\n        return;\n    };\n}\n";
        let errors = "#[tokio::test]\nasync fn values_postgres_cannot_store() {\n    let Some(backend) = crate::helpers::db::Backend::postgres() else {\n        return;\n    };\n}\n\
            #[tokio::test]\nasync fn both_backends_in_one() {\n    if let Some(b) =\n        crate::helpers::db::Backend::postgres()\n    {\n    }\n}\n";
        let dashboard = "#[tokio::test]\nasync fn logs_in() {\n    let Some(browser) = Browser::start().await else {\n        return;\n    };\n}\n\
            #[tokio::test]\nasync fn plain() {}\n";
        [
            ("parents", parents),
            ("errors", errors),
            ("dashboard", dashboard),
        ]
        .map(|(m, t)| (m.to_string(), t.to_string()))
        .to_vec()
    }

    #[test]
    fn skipping_tests_are_found_directly_and_through_a_helper_not_when_they_go_on() {
        let pg = skipping_tests(&sources(), Skip::Postgres.marker());
        let names = |set: &HashSet<(String, String)>| {
            let mut v: Vec<String> = set.iter().map(|(m, f)| format!("{m}::{f}")).collect();
            v.sort();
            v
        };
        assert_eq!(
            names(&pg),
            [
                "errors::values_postgres_cannot_store",
                "parents::two_parents_hand_out"
            ],
            "both_backends_in_one runs its SQLite part: not a skip"
        );
        let browser = skipping_tests(&sources(), Skip::Browser.marker());
        assert_eq!(names(&browser), ["dashboard::logs_in"]);
    }

    #[test]
    fn the_count_is_of_the_listed_tests_that_skip() {
        let pg = skipping_tests(&sources(), Skip::Postgres.marker());
        assert_eq!(count_selected(LIST, Skip::Postgres, &pg), 3);
        let browser = skipping_tests(&sources(), Skip::Browser.marker());
        assert_eq!(count_selected(LIST, Skip::Browser, &browser), 1);
        assert_eq!(count_selected("", Skip::Postgres, &pg), 0);
    }

    #[test]
    fn list_keeps_the_arguments_that_choose_tests() {
        let args = |a: &[&str]| list_args(a.iter().map(|s| (*s).to_string()));
        assert_eq!(
            args(&[
                "cli",
                "--test-threads",
                "2",
                "--nocapture",
                "--skip",
                "demo",
                "--exact",
                "--color=never",
                "--format",
                "pretty",
                "-q",
                "--skip=x",
            ]),
            ["cli", "--skip", "demo", "--exact", "--skip=x"]
        );
    }
}
