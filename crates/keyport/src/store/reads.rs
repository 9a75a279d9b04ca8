//! Statements written once and run where they are cheapest: the reads on
//! the hottest paths (a poll's device code, a refresh token, an access
//! token's state) and the statements of the write jobs that run on the
//! SQLite writer's own connection ([`Store::write_either`]).
//!
//! On SQLite a read given `&Store` runs in place, on a read-only connection
//! of Keyport's own (`rusqlite`), instead of crossing to sqlx's connection
//! thread and back: two context switches per statement, most of a pending
//! poll's cost. The read is a few microseconds of B-tree lookup in a WAL
//! snapshot, which does not wait for the writer, so it runs on the calling
//! task's thread. A job's statements on the writer's own connection
//! ([`Source::Writing`]) run on the writer's thread. On PostgreSQL, and
//! inside the write jobs on sqlx's connection (which must see their
//! transaction's own changes), the same SQL and arguments go through sqlx.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::OpenFlags;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::{Error, Result, Store};

/// Most idle read connections kept; one per thread reading at once.
const IDLE: usize = 8;

/// Prepared statements each connection keeps: more than the distinct
/// statements of the paths that use these connections (rusqlite keeps 16),
/// so none is compiled again under load.
const STATEMENTS: usize = 64;

/// An argument bound to a `$n` placeholder.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
}

/// A row, whichever engine read it.
pub trait Columns {
    fn text(&self, name: &str) -> Result<String>;
    fn opt_text(&self, name: &str) -> Result<Option<String>>;
    fn int(&self, name: &str) -> Result<i64>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>>;
}

impl Columns for AnyRow {
    fn text(&self, name: &str) -> Result<String> {
        Ok(self.try_get(name)?)
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>> {
        Ok(self.try_get(name)?)
    }
    fn int(&self, name: &str) -> Result<i64> {
        Ok(self.try_get(name)?)
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.try_get(name)?)
    }
}

/// A `rusqlite` row whose columns are found by name in the statement's own
/// list, read once per row: `rusqlite::Row::get(&str)` asks SQLite for every
/// column's name in turn on each call (5 % of a poll's CPU). Mappers mostly
/// ask in `SELECT` order, so the search starts after the last match.
struct NamedRow<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    names: Vec<&'r str>,
    next: Cell<usize>,
}

impl<'r, 's> NamedRow<'r, 's> {
    fn new(row: &'r rusqlite::Row<'s>) -> Self {
        let statement: &'r rusqlite::Statement<'s> = row.as_ref();
        Self {
            row,
            names: statement.column_names(),
            next: Cell::new(0),
        }
    }

    fn get<T: rusqlite::types::FromSql>(&self, name: &str) -> Result<T> {
        let count = self.names.len();
        let start = self.next.get();
        let index = (0..count)
            .map(|offset| (start + offset) % count)
            .find(|&i| self.names[i].eq_ignore_ascii_case(name))
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(name.to_string()))?;
        self.next.set(index + 1);
        Ok(self.row.get(index)?)
    }
}

impl Columns for NamedRow<'_, '_> {
    fn text(&self, name: &str) -> Result<String> {
        self.get(name)
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>> {
        self.get(name)
    }
    fn int(&self, name: &str) -> Result<i64> {
        self.get(name)
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        self.get(name)
    }
}

/// Where a statement runs.
pub enum Source<'e> {
    /// SQLite, in place.
    Local(&'e Reader),
    Pool(&'e AnyPool),
    /// Inside a write job's transaction.
    Conn(&'e mut AnyConnection),
    /// Inside a write job's transaction on SQLite's own writer connection
    /// ([`super::writer`]): the statements run on the writer's thread.
    Writing(&'e LocalWriter),
}

/// The writer's own SQLite connection, used by one thread at a time.
pub struct LocalWriter(Mutex<rusqlite::Connection>);

impl LocalWriter {
    /// Opens the file for writing, as the pool's connections are set up.
    pub(super) fn open(path: &std::path::Path) -> Result<Self> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )?;
        conn.execute_batch(super::WAL_CHECKPOINT)?;
        Ok(Self(Mutex::new(conn)))
    }

    /// The connection; a job that panicked while holding it left nothing
    /// half-done that its savepoint's rollback does not undo.
    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Source<'_> {
    /// The same place, borrowed again for the next statement of a job.
    pub fn reborrow(&mut self) -> Source<'_> {
        match self {
            Source::Local(reader) => Source::Local(reader),
            Source::Pool(pool) => Source::Pool(pool),
            Source::Conn(conn) => Source::Conn(conn),
            Source::Writing(writer) => Source::Writing(writer),
        }
    }
}

impl<'e> From<&'e Store> for Source<'e> {
    fn from(store: &'e Store) -> Self {
        match &store.reader {
            Some(reader) => Source::Local(reader.as_ref()),
            None => Source::Pool(&store.pool),
        }
    }
}

impl<'e> From<&'e AnyPool> for Source<'e> {
    fn from(pool: &'e AnyPool) -> Self {
        Source::Pool(pool)
    }
}

impl<'e> From<&'e mut AnyConnection> for Source<'e> {
    fn from(conn: &'e mut AnyConnection) -> Self {
        Source::Conn(conn)
    }
}

/// The row `sql` selects, if any, made into a `T` by `map`.
pub async fn fetch_optional<'e, T>(
    from: impl Into<Source<'e>>,
    sql: &str,
    args: &[Arg<'_>],
    map: impl Fn(&dyn Columns) -> Result<T>,
) -> Result<Option<T>> {
    let row = match from.into() {
        Source::Local(reader) => return reader.fetch_optional(sql, args, map),
        Source::Writing(writer) => return run(&writer.conn(), sql, args, map),
        Source::Pool(pool) => query(sql, args).fetch_optional(pool).await?,
        Source::Conn(conn) => query(sql, args).fetch_optional(conn).await?,
    };
    row.as_ref().map(|row| map(row)).transpose()
}

/// Runs a statement that returns no rows; the number of rows it changed.
pub async fn execute<'e>(from: impl Into<Source<'e>>, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
    match from.into() {
        Source::Local(_) => Err(Error::Invalid("a write on a read-only connection".into())),
        Source::Writing(writer) => {
            let conn = writer.conn();
            let mut statement = conn.prepare_cached(sql)?;
            bind(&mut statement, args)?;
            Ok(statement.raw_execute()? as u64)
        }
        Source::Pool(pool) => Ok(query(sql, args).execute(pool).await?.rows_affected()),
        Source::Conn(conn) => Ok(query(sql, args).execute(conn).await?.rows_affected()),
    }
}

fn query<'q>(
    sql: &'q str,
    args: &'q [Arg<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    args.iter()
        .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |q, arg| match *arg {
            Arg::Text(text) => q.bind(text),
            Arg::OptText(text) => q.bind(text),
            Arg::Int(n) => q.bind(n),
        })
}

/// Binds each `$n` parameter to its argument. SQLite numbers parameters in
/// order of first appearance, so each is bound by its name.
fn bind(statement: &mut rusqlite::Statement<'_>, args: &[Arg<'_>]) -> Result<()> {
    for index in 1..=statement.parameter_count() {
        let arg = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$')?.parse::<usize>().ok())
            .and_then(|n| args.get(n.checked_sub(1)?))
            .ok_or_else(|| Error::Invalid(format!("no argument for parameter {index}")))?;
        match *arg {
            Arg::Text(text) => statement.raw_bind_parameter(index, text)?,
            Arg::OptText(text) => statement.raw_bind_parameter(index, text)?,
            Arg::Int(n) => statement.raw_bind_parameter(index, n)?,
        }
    }
    Ok(())
}

fn run<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[Arg<'_>],
    map: impl Fn(&dyn Columns) -> Result<T>,
) -> Result<Option<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, args)?;
    let mut rows = statement.raw_query();
    match rows.next()? {
        Some(row) => map(&NamedRow::new(row)).map(Some),
        None => Ok(None),
    }
}

/// Read-only connections to the SQLite file, opened when first needed.
pub struct Reader {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Reader {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::default(),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn fetch_optional<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        map: impl Fn(&dyn Columns) -> Result<T>,
    ) -> Result<Option<T>> {
        let conn = self.idle.lock().expect("reader lock").pop();
        let conn = match conn {
            Some(conn) => conn,
            None => self.open()?,
        };
        let found = run(&conn, sql, args, map);
        let mut idle = self.idle.lock().expect("reader lock");
        if idle.len() < IDLE {
            idle.push(conn);
        }
        found
    }

    fn open(&self) -> Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        Ok(conn)
    }

    /// Closes the idle connections.
    pub fn close(&self) {
        self.idle.lock().expect("reader lock").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_in_place_and_sqlx_read_alike() {
        let dir =
            std::env::temp_dir().join(format!("keyport-reads-{}", crate::crypto::random_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(None, &dir).await.unwrap();
        assert!(store.reader.is_some());
        // `$2` before `$1`: each is bound by its name, not its position.
        let sql = "SELECT $2 || '-' || $1 AS v, $3 AS absent, 7 AS n";
        let args = [Arg::Text("a"), Arg::Text("b"), Arg::OptText(None)];
        let map = |row: &dyn Columns| Ok((row.text("v")?, row.opt_text("absent")?, row.int("n")?));
        let expected = Some(("b-a".to_string(), None, 7));
        let local = fetch_optional(&store, sql, &args, map).await.unwrap();
        let pooled = fetch_optional(store.pool(), sql, &args, map).await.unwrap();
        assert_eq!((local, pooled), (expected.clone(), expected));
        // Columns asked out of order, twice, and one the statement lacks.
        let backwards =
            |row: &dyn Columns| Ok((row.int("n")?, row.text("V")?, row.int("n")?, row.int("m")));
        let (n, v, again, missing) = fetch_optional(&store, sql, &args, backwards)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((n, v.as_str(), again), (7, "b-a", 7));
        assert!(missing.is_err());

        let none = "SELECT 1 AS n WHERE $1 = 'x'";
        let found = fetch_optional(&store, none, &[Arg::Text("y")], |row| row.int("n"));
        assert_eq!(found.await.unwrap(), None);
        // A committed write is seen by the next read.
        store
            .write(|c| Box::pin(async move { super::super::settings::set(c, "k", "v").await }))
            .await
            .unwrap();
        let setting = "SELECT value FROM settings WHERE name = $1";
        let value = fetch_optional(&store, setting, &[Arg::Text("k")], |row| row.text("value"));
        assert_eq!(value.await.unwrap().as_deref(), Some("v"));
        // A parameter without its argument is an error, not a panic.
        let missing = fetch_optional(&store, "SELECT $2 AS n", &[Arg::Text("a")], |row| {
            row.int("n")
        });
        assert!(matches!(missing.await, Err(Error::Invalid(_))));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_in_memory_database_has_no_file_to_read_in_place() {
        for url in ["sqlite::memory:", "sqlite://shared?mode=memory"] {
            assert_eq!(super::super::local_file(url).unwrap(), None, "{url}");
        }
        let path = super::super::local_file("sqlite:///tmp/k/keyport.db?mode=rwc").unwrap();
        assert_eq!(path, Some(PathBuf::from("/tmp/k/keyport.db")));
    }
}
