//! SQLite: one writer thread with group commit, and read-only connections for reads.
//!
//! The writer thread owns the only write connection. It takes a request, then every request
//! that queued meanwhile (up to [`GROUP_MAX`]), and runs them in one `BEGIN IMMEDIATE`
//! transaction, each inside a savepoint: a request that fails (or panics) rolls back to its
//! savepoint and the others go on. Each request is answered only after `COMMIT` returned,
//! so an acknowledged write survives a crash (WAL, `synchronous=NORMAL`: a power loss may
//! lose the last commits, a process crash loses none).

use super::{Arg, Op, Row, Tx, Val};
use crate::protocol::time::to_db;
use crate::store::{Error, Result};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::{Semaphore, oneshot};

/// Most requests committed together.
pub(crate) const GROUP_MAX: usize = 64;
/// Read-only connections (files only; a memory database has one connection).
const READERS: usize = 4;
/// How long a statement waits for another process's lock before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A write request on its way to the writer thread: given the group's connection it runs
/// its operation; given an error (the group could not begin) it only answers with it.
type Job = Box<dyn FnOnce(std::result::Result<&mut Tx, &Error>) -> Finish + Send>;

/// What a request did inside the group: its error, if it failed (its savepoint is rolled
/// back), and how to answer it once the group's commit is known.
struct Finish {
    failed: Option<Error>,
    answer: Answer,
}

/// Answers a request, given the group's failure (if the group did not commit).
type Answer = Box<dyn FnOnce(Option<&Error>) + Send>;

/// The SQLite database: the writer's queue and the read connections.
pub(crate) struct SqliteDb {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    permits: Semaphore,
    /// A memory database: reads go to the writer, the only connection.
    memory: bool,
    /// Groups committed (or rolled back) so far, and the requests they carried.
    stats: Arc<GroupStats>,
}

/// How the writer grouped its work.
#[derive(Default)]
pub(crate) struct GroupStats {
    pub(crate) groups: std::sync::atomic::AtomicU64,
    pub(crate) requests: std::sync::atomic::AtomicU64,
}

impl SqliteDb {
    /// Opens `path` (memory when `None`) and starts the writer thread. The schema must be
    /// migrated before.
    pub(crate) fn open(path: Option<&Path>) -> Result<Self> {
        if let Some(dir) = path
            .and_then(Path::parent)
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Unsupported(format!("cannot create folder {}: {e}", dir.display()))
            })?;
        }
        let write = match path {
            Some(p) => Connection::open_with_flags(
                p,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
            None => Connection::open_in_memory(),
        }
        .map_err(error)?;
        configure(&write, false)?;
        let mut readers = Vec::new();
        if let Some(p) = path {
            for _ in 0..READERS {
                let c = Connection::open_with_flags(
                    p,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(error)?;
                configure(&c, true)?;
                readers.push(c);
            }
        }
        let checkpointer = match path {
            Some(p) => Some(Checkpointer::start(p)?),
            None => None,
        };
        let (send, recv) = mpsc::channel::<Job>();
        let stats = Arc::new(GroupStats::default());
        let counted = Arc::clone(&stats);
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(write, &recv, &counted, checkpointer))
            .map_err(|e| Error::Unsupported(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(send)),
            writer: Mutex::new(Some(writer)),
            permits: Semaphore::new(readers.len()),
            readers: Mutex::new(readers),
            memory: path.is_none(),
            stats,
        })
    }

    /// Runs `op` inside the writer's current group; answers after the group committed.
    pub(crate) async fn write<T: Send + 'static>(&self, op: Op<T>) -> Result<T> {
        let (send, recv) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |tx| {
            let result = match tx {
                Ok(tx) => run_op(tx, op),
                Err(e) => Err(e.again()),
            };
            let failed = result.as_ref().err().map(Error::again);
            Finish {
                failed,
                answer: Box::new(move |commit: Option<&Error>| {
                    let result = match (result, commit) {
                        (Ok(_), Some(e)) => Err(e.again()),
                        (r, _) => r,
                    };
                    let _ = send.send(result);
                }),
            }
        });
        self.send(job)?;
        recv.await.map_err(|_| closed())?
    }

    /// Runs `op` on a read connection, inside one read transaction (one snapshot).
    pub(crate) async fn read<T: Send + 'static>(self: &Arc<Self>, op: Op<T>) -> Result<T> {
        if self.memory {
            return self.write(op).await;
        }
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = db.readers.lock().map_err(|_| closed())?.pop();
            let conn = conn.ok_or_else(closed)?;
            conn.execute_batch("BEGIN").map_err(error)?;
            let mut tx = Tx::Sqlite(conn);
            let result = run_op(&mut tx, op);
            let Tx::Sqlite(conn) = tx else {
                unreachable!("a SQLite request keeps its connection")
            };
            let ended = conn.execute_batch("COMMIT").map_err(error);
            if let Ok(mut readers) = db.readers.lock() {
                readers.push(conn);
            }
            ended?;
            result
        })
        .await
        .map_err(|_| Error::Invalid("a database read was cancelled".into()))?
    }

    /// How the writer grouped its work so far: (groups, requests).
    pub(crate) fn grouping(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.stats.groups.load(Relaxed),
            self.stats.requests.load(Relaxed),
        )
    }

    fn send(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.lock().map_err(|_| closed())?;
        jobs.as_ref()
            .ok_or_else(closed)?
            .send(job)
            .map_err(|_| closed())
    }

    /// Stops taking writes and waits for the writer to commit what it has.
    pub(crate) fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        self.close();
    }
}

fn closed() -> Error {
    Error::Sqlite {
        code: SQLITE_MISUSE,
        message: "the database is closed".into(),
    }
}

const SQLITE_MISUSE: i32 = 21;

fn configure(c: &Connection, read_only: bool) -> Result<()> {
    c.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
    c.set_prepared_statement_cache_capacity(256);
    // The page cache stays small: new allocation ids are time-ordered, so a dispatch writes
    // at the end of each index and needs few pages at once, and SQLite scans the whole cache
    // at the end of some transactions (64 MiB cost a sixth of the writer's time at 32
    // children; docs/BENCHMARKS.md).
    let cache_kib = if read_only { 2 * 1024 } else { 4 * 1024 };
    c.execute_batch(&format!("PRAGMA cache_size = -{cache_kib};"))
        .map_err(error)?;
    if !read_only {
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(error)?;
    }
    Ok(())
}

/// Drives an operation to its end on this thread: its futures are always ready, since every
/// statement runs synchronously.
fn run_op<T>(tx: &mut Tx, op: Op<T>) -> Result<T> {
    let run = std::panic::AssertUnwindSafe(|| futures::executor::block_on(op(tx)));
    std::panic::catch_unwind(run).unwrap_or_else(|_| {
        tracing::error!("a database request panicked; its changes are rolled back");
        Err(Error::Invalid(
            "the request failed inside the database".into(),
        ))
    })
}

/// Copies the WAL back into the database file on its own thread and connection, so the
/// writer never waits for those writes and their `fsync`s. Woken after each commit, it runs
/// a passive checkpoint (it never blocks the writer or a reader), then rests
/// [`CHECKPOINT_PAUSE`]; commits made meanwhile wake it once. The writer's own automatic
/// checkpoint stays as a backstop at [`WAL_BACKSTOP_PAGES`].
struct Checkpointer {
    wake: mpsc::SyncSender<()>,
    /// Dropped to stop: ends the thread's rest at once.
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// The least time between two checkpoints.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(200);
/// WAL pages at which the writer checkpoints by itself (the checkpointer fell behind).
const WAL_BACKSTOP_PAGES: u32 = 16_384;

impl Checkpointer {
    fn start(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::warn!(error = %error(e), "SQLite checkpoint failed; retried after the next commit");
                    }
                    if let Err(mpsc::RecvTimeoutError::Disconnected) =
                        stopped.recv_timeout(CHECKPOINT_PAUSE)
                    {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Unsupported(format!("cannot start the SQLite checkpointer: {e}")))?;
        Ok(Self { wake, stop, thread })
    }

    /// Ends the thread after its current checkpoint.
    fn stop(self) {
        drop(self.stop);
        drop(self.wake);
        let _ = self.thread.join();
    }
}

/// The writer thread: group after group until the queue closes.
fn run_writer(
    conn: Connection,
    jobs: &mpsc::Receiver<Job>,
    stats: &GroupStats,
    checkpointer: Option<Checkpointer>,
) {
    if checkpointer.is_some()
        && let Err(e) = conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES};"
        ))
    {
        tracing::warn!(error = %error(e), "SQLite: the writer keeps checkpointing by itself");
    }
    let mut tx = Tx::Sqlite(conn);
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // Counted before any of the group is answered, so an answered request is counted.
        stats
            .requests
            .fetch_add(group.len() as u64, std::sync::atomic::Ordering::Relaxed);
        stats
            .groups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        run_group(&mut tx, group);
        if let Some(c) = &checkpointer {
            let _ = c.wake.try_send(());
        }
    }
    if let Some(c) = checkpointer {
        c.stop();
    }
}

/// One group: one transaction, a savepoint per request, answers after the commit.
fn run_group(tx: &mut Tx, mut group: Vec<Job>) {
    if let Err(e) = statement(tx, "BEGIN IMMEDIATE") {
        for job in group {
            (job(Err(&e)).answer)(Some(&e));
        }
        return;
    }
    if group.len() == 1 {
        // Alone, a request needs no savepoint (whose journal copies every page it changes):
        // its failure rolls back the transaction, which holds nothing else.
        let Some(job) = group.pop() else { return };
        let finish = job(Ok(&mut *tx));
        let failure = if finish.failed.is_some() {
            if !autocommit(tx) {
                let _ = statement(tx, "ROLLBACK");
            }
            None
        } else {
            commit(tx)
        };
        (finish.answer)(failure.as_ref());
        return;
    }
    let mut finishes = Vec::with_capacity(group.len());
    let mut broken: Option<Error> = None;
    for job in group {
        if let Some(e) = &broken {
            finishes.push(job(Err(e)));
            continue;
        }
        let marked = statement(tx, "SAVEPOINT req");
        let finish = job(Ok(&mut *tx));
        if autocommit(tx) {
            // SQLite rolled the whole transaction back (a full disk, say): nothing of the
            // group is kept, so nobody is told it was.
            broken = Some(finish.failed.as_ref().map_or_else(
                || Error::Sqlite {
                    code: 1,
                    message: "the transaction was rolled back".into(),
                },
                Error::again,
            ));
        } else if marked.is_ok() {
            let end = if finish.failed.is_none() {
                "RELEASE req"
            } else {
                "ROLLBACK TO req; RELEASE req"
            };
            if let Err(e) = statement(tx, end) {
                broken = Some(e);
            }
        }
        finishes.push(finish);
    }
    let failure = match broken {
        Some(e) => {
            let _ = statement(tx, "ROLLBACK");
            Some(e)
        }
        None => commit(tx),
    };
    for finish in finishes {
        (finish.answer)(failure.as_ref());
    }
}

/// Commits the group; its failure, after rolling back.
fn commit(tx: &Tx) -> Option<Error> {
    statement(tx, "COMMIT").err().inspect(|_| {
        let _ = statement(tx, "ROLLBACK");
    })
}

fn statement(tx: &Tx, sql: &str) -> Result<()> {
    match tx {
        Tx::Sqlite(c) => c.execute_batch(sql).map_err(error),
        Tx::Pg(_) => unreachable!("the writer holds a SQLite connection"),
    }
}

fn autocommit(tx: &Tx) -> bool {
    match tx {
        Tx::Sqlite(c) => c.is_autocommit(),
        Tx::Pg(_) => false,
    }
}

/// Binds parameter `?n` (the `$n` of the written SQL, see [`super::render`]) to
/// `args[n - 1]`.
fn bind(stmt: &mut rusqlite::Statement<'_>, args: &[Arg]) -> Result<()> {
    for i in 1..=stmt.parameter_count() {
        let arg = args
            .get(i - 1)
            .ok_or_else(|| Error::Invalid(format!("statement parameter ${i} has no argument")))?;
        stmt.raw_bind_parameter(i, to_sql(arg)).map_err(error)?;
    }
    Ok(())
}

fn to_sql(arg: &Arg) -> ToSqlOutput<'_> {
    let v = match arg {
        Arg::Int(v) => v.map_or(Value::Null, Value::Integer),
        Arg::Real(v) => v.map_or(Value::Null, Value::Real),
        Arg::Bool(v) => v.map_or(Value::Null, |b| Value::Integer(i64::from(b))),
        Arg::Text(v) => {
            return v.as_deref().map_or(ToSqlOutput::Owned(Value::Null), |s| {
                ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
            });
        }
        Arg::Time(v) => v.map_or(Value::Null, |t| Value::Text(to_db(t))),
        Arg::List(v) => Value::Text(serde_json::to_string(v).unwrap_or_default()),
    };
    ToSqlOutput::Owned(v)
}

/// Runs a statement on `c`; the rows it changed.
pub(super) fn exec(c: &Connection, sql: &str, args: &[Arg]) -> Result<u64> {
    let mut stmt = c.prepare_cached(sql).map_err(error)?;
    bind(&mut stmt, args)?;
    let mut rows = stmt.raw_query();
    while rows.next().map_err(error)?.is_some() {}
    drop(rows);
    Ok(c.changes())
}

/// Runs a query on `c`; up to `limit` rows.
pub(super) fn rows(c: &Connection, sql: &str, args: &[Arg], limit: usize) -> Result<Vec<Row>> {
    let mut stmt = c.prepare_cached(sql).map_err(error)?;
    bind(&mut stmt, args)?;
    let cols: Arc<[String]> = stmt
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let width = cols.len();
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while out.len() < limit {
        let Some(row) = rows.next().map_err(error)? else {
            break;
        };
        let mut vals = Vec::with_capacity(width);
        for i in 0..width {
            vals.push(match row.get_ref(i).map_err(error)? {
                ValueRef::Null => Val::Null,
                ValueRef::Integer(n) => Val::Int(n),
                ValueRef::Real(x) => Val::Real(x),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Val::Text(String::from_utf8_lossy(t).into_owned())
                }
            });
        }
        out.push(Row::new(Arc::clone(&cols), vals));
    }
    Ok(out)
}

/// A SQLite failure as a store error: its extended result code and message.
pub(crate) fn error(e: rusqlite::Error) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, message) => Error::Sqlite {
            code: f.extended_code,
            message: message.unwrap_or_else(|| f.to_string()),
        },
        other => Error::Sqlite {
            code: 1,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::{Db, args};

    async fn count(db: &Db) -> i64 {
        db.read(|tx| Box::pin(async move { tx.int("SELECT COUNT(*) FROM t", &[]).await }))
            .await
            .expect("read")
            .unwrap_or(0)
    }

    /// A database at `path` with table `t` holding the row 1.
    async fn with_table(path: &Path) -> (Arc<SqliteDb>, Db) {
        let sqlite = Arc::new(SqliteDb::open(Some(path)).expect("opened"));
        let db = Db::Sqlite(Arc::clone(&sqlite));
        db.write(|tx| {
            Box::pin(async move {
                tx.batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
                    .await
            })
        })
        .await
        .expect("table");
        (sqlite, db)
    }

    /// Inserts `id`, then (when `fail`) breaks a rule: its own insert must not survive.
    fn insert(db: &Db, id: i64, fail: bool) -> tokio::task::JoinHandle<Result<()>> {
        let db = db.clone();
        tokio::spawn(async move {
            db.write(move |tx| {
                Box::pin(async move {
                    tx.exec("INSERT INTO t (id) VALUES ($1)", args![id]).await?;
                    if fail {
                        tx.exec("INSERT INTO t (id) VALUES ($1)", args![1_i64])
                            .await?;
                    }
                    Ok(())
                })
            })
            .await
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_request_in_a_group_rolls_back_alone_and_all_are_answered() {
        let dir = tempfile::tempdir().expect("dir");
        let (sqlite, db) = with_table(&dir.path().join("g.db")).await;
        let before = sqlite.grouping();
        // The writer is held by one request until three more are queued behind it.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |_tx| {
                    Box::pin(async move {
                        started.send(()).ok();
                        held.recv().ok();
                        Ok(())
                    })
                })
                .await
            })
        };
        // The writer runs the blocker (a group of its own) before anything else is queued.
        while running.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
        let queued = [
            insert(&db, 10, false),
            insert(&db, 11, true),
            insert(&db, 12, false),
        ];
        // On this one-thread runtime each spawned request runs up to its answer's await,
        // sending its job first.
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
        release.send(()).expect("released");
        blocker.await.expect("joined").expect("the blocker commits");
        let [a, b, c] = queued;
        a.await.expect("joined").expect("10 commits");
        let failed = b
            .await
            .expect("joined")
            .expect_err("11 breaks the primary key");
        assert!(failed.to_string().contains("UNIQUE"), "{failed}");
        c.await.expect("joined").expect("12 commits");
        assert_eq!(
            count(&db).await,
            3,
            "1, 10 and 12; 11 rolled back to its savepoint"
        );
        let after = sqlite.grouping();
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (2, 4),
            "the blocker alone, then the three queued behind it in one group"
        );
    }

    /// A request alone in its group runs without a savepoint: its failure rolls back the
    /// whole transaction, which holds only its own changes, and the writer goes on.
    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_failing_request_leaves_nothing_and_the_next_one_commits() {
        let dir = tempfile::tempdir().expect("dir");
        let (sqlite, db) = with_table(&dir.path().join("l.db")).await;
        let before = sqlite.grouping();
        let failed = insert(&db, 20, true)
            .await
            .expect("joined")
            .expect_err("the second insert breaks the primary key");
        assert!(failed.to_string().contains("UNIQUE"), "{failed}");
        assert_eq!(count(&db).await, 1, "20 was rolled back with its request");
        insert(&db, 21, false)
            .await
            .expect("joined")
            .expect("the writer goes on");
        assert_eq!(count(&db).await, 2, "1 and 21");
        let after = sqlite.grouping();
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (2, 2),
            "each request was a group of its own"
        );
    }

    /// A statement with its `LIMIT` written as the store writes it runs from the statement
    /// cache without being prepared again, however often it is bound.
    #[test]
    fn a_cast_limit_keeps_the_prepared_statement() {
        let c = Connection::open_in_memory().expect("memory database");
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
            .expect("table");
        let sql = "SELECT id FROM t ORDER BY id LIMIT CAST(?1 AS BIGINT)";
        for n in [1_i64, 2, 1] {
            let got = rows(&c, sql, &[Arg::from(n)], usize::MAX).expect("rows");
            assert_eq!(got.len(), usize::try_from(n).expect("small"));
        }
        let stmt = c.prepare_cached(sql).expect("cached");
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    /// The store's SQL follows the rule above (see the module docs of `store::db`).
    #[test]
    fn no_operation_binds_a_bare_limit() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/ops");
        for entry in std::fs::read_dir(&dir).expect("ops folder") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("source");
            for bare in ["LIMIT $", "OFFSET $"] {
                assert!(!text.contains(bare), "{} binds `{bare}n`", path.display());
            }
        }
    }

    #[tokio::test]
    async fn an_answer_comes_after_its_commit() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.db");
        let db = Db::Sqlite(Arc::new(SqliteDb::open(Some(&path)).expect("opened")));
        db.write(|tx| {
            Box::pin(async move { tx.batch("CREATE TABLE t (id INTEGER PRIMARY KEY)").await })
        })
        .await
        .expect("table");
        insert(&db, 5, false)
            .await
            .expect("joined")
            .expect("inserted");
        // Another connection, as another process would open it, sees the row at once.
        let other = Connection::open(&path).expect("opened");
        let n: i64 = other
            .query_row("SELECT COUNT(*) FROM t WHERE id = 5", [], |r| r.get(0))
            .expect("counted");
        assert_eq!(n, 1);
    }
}
