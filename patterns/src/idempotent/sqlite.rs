//! [`SqliteDedup`]: a [`DedupStore`] whose processed ids survive restarts, in a table of a
//! SQLite database (feature `sqlite`, off by default: it builds SQLite's bundled C source).
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS processed_ids (
//!     id           BLOB    PRIMARY KEY,
//!     processed_at INTEGER NOT NULL      -- ms since the Unix epoch
//! ) WITHOUT ROWID;
//! ```
//!
//! Its calls are synchronous, as [`DedupStore`]'s are: a lookup and an insert on a local
//! file, each its own transaction. To make a handler's own writes and the mark one
//! transaction, keep them in the same database and mark inside the handler's transaction
//! with [`mark_in`].

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

use super::DedupStore;
use crate::outbox::sqlite::{check_identifier, now_ms, open_durable, sqlite_error};
use crate::PatternError;

/// The table [`SqliteDedup::open`] uses.
pub const DEFAULT_TABLE: &str = "processed_ids";

/// Processed ids in a SQLite table (see the module doc).
#[derive(Debug)]
pub struct SqliteDedup {
    connection: Connection,
    table: String,
}

impl SqliteDedup {
    /// Opens (or creates) the database at `path` in WAL mode with full synchronous commits
    /// and a 5 s busy timeout, with the table [`DEFAULT_TABLE`] created if missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PatternError> {
        Self::from_connection(open_durable(path.as_ref())?, DEFAULT_TABLE)
    }

    /// Ids in `table` of this connection's database, the table created if missing. The
    /// name must be an SQL identifier.
    pub fn from_connection(connection: Connection, table: &str) -> Result<Self, PatternError> {
        check_identifier(table)?;
        connection
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                     id           BLOB    PRIMARY KEY,
                     processed_at INTEGER NOT NULL
                 ) WITHOUT ROWID;"
            ))
            .map_err(|e| sqlite_error(connection.path().map(Path::new), e))?;
        Ok(Self {
            connection,
            table: table.to_string(),
        })
    }

    /// Forgets the ids processed more than `older_than` ago (past the longest time a
    /// duplicate can arrive); how many.
    pub fn purge_older_than(&self, older_than: Duration) -> Result<usize, PatternError> {
        let before =
            now_ms().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        self.connection
            .execute(
                &format!("DELETE FROM {} WHERE processed_at < ?1", self.table),
                [before],
            )
            .map_err(|e| self.error(e))
    }

    /// Ids remembered.
    pub fn len(&self) -> Result<u64, PatternError> {
        self.connection
            .query_row(&format!("SELECT COUNT(*) FROM {}", self.table), [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| self.error(e))
    }

    /// Whether none is.
    pub fn is_empty(&self) -> Result<bool, PatternError> {
        self.len().map(|n| n == 0)
    }

    fn error(&self, error: rusqlite::Error) -> PatternError {
        sqlite_error(self.connection.path().map(Path::new), error)
    }
}

impl DedupStore for SqliteDedup {
    fn contains(&mut self, id: &[u8]) -> Result<bool, PatternError> {
        self.connection
            .query_row(
                &format!("SELECT 1 FROM {} WHERE id = ?1", self.table),
                [id],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| self.error(e))
    }

    fn mark(&mut self, id: Bytes) -> Result<(), PatternError> {
        mark_in(&self.connection, &self.table, &id).map_err(|e| self.error(e))
    }
}

/// Marks `id` processed in `table` through `connection` (a [`rusqlite::Transaction`]
/// derefs to one: the handler's writes and the mark then commit together). Marking twice
/// is harmless.
pub fn mark_in(connection: &Connection, table: &str, id: &[u8]) -> rusqlite::Result<()> {
    if check_identifier(table).is_err() {
        return Err(rusqlite::Error::InvalidParameterName(table.to_string()));
    }
    connection
        .execute(
            &format!("INSERT OR IGNORE INTO {table} (id, processed_at) VALUES (?1, ?2)"),
            params![id, now_ms()],
        )
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dedup, IdSource, IdempotentConsumer};
    use franzy::ConsumerRecord;

    #[tokio::test]
    async fn processed_ids_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("franzy-dedup-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("dedup.db");
        let _ = std::fs::remove_file(&path);
        let record =
            |id: &str| ConsumerRecord::new("t", 0, 0).with_header("outbox-id", id.to_string());
        let mut outcomes = Vec::new();
        for run in 0..2 {
            // Each run a new process: the store reopened from the file.
            let store = SqliteDedup::open(&path).expect("open");
            let mut consumer = IdempotentConsumer::new(store, IdSource::Header("outbox-id".into()));
            for id in ["1", "2"].iter().skip(run) {
                let outcome = consumer
                    .process(&record(id), |_| async { Ok::<(), String>(()) })
                    .await
                    .expect("processed");
                outcomes.push(outcome);
            }
            // A failed handler marks nothing.
            let failed = consumer
                .process(&record("3"), |_| async { Err::<(), _>("down".to_string()) })
                .await;
            assert!(failed.is_err());
            assert_eq!(consumer.store().len().expect("count"), 2);
        }
        use Dedup::*;
        assert_eq!(outcomes, [Processed, Processed, Duplicate]);
        let mut store = SqliteDedup::open(&path).expect("open");
        assert!(store.contains(b"1").expect("lookup"));
        assert!(!store.contains(b"3").expect("lookup"));
        assert_eq!(
            store
                .purge_older_than(Duration::from_secs(3600))
                .expect("purge"),
            0
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(store.purge_older_than(Duration::ZERO).expect("purge"), 2);
        assert!(store.is_empty().expect("count"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_mark_commits_with_the_handlers_transaction_or_not_at_all() {
        let mut store =
            SqliteDedup::from_connection(Connection::open_in_memory().expect("memory db"), "seen")
                .expect("schema");
        for commit in [false, true] {
            let tx = store.connection.transaction().expect("begin");
            mark_in(&tx, "seen", b"order-1").expect("mark");
            if commit {
                tx.commit().expect("commit");
            } else {
                tx.rollback().expect("rollback");
            }
            assert_eq!(store.contains(b"order-1").expect("lookup"), commit);
        }
        assert!(
            SqliteDedup::from_connection(Connection::open_in_memory().expect("db"), "x y").is_err()
        );
    }
}
