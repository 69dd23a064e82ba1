//! [`SqliteOutbox`]: an [`OutboxSource`] over a table of a SQLite database (feature
//! `sqlite`, off by default: it builds SQLite's bundled C source).
//!
//! # The table
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS outbox (
//!     id            INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: the `outbox-id` header
//!     topic         TEXT    NOT NULL,
//!     key           BLOB,                              -- the aggregate key (and Kafka key)
//!     value         BLOB,
//!     headers       BLOB,                              -- see `encode_headers`
//!     created_at    INTEGER NOT NULL,                  -- ms since the Unix epoch
//!     claimed_by    TEXT,                              -- the relay working on the row
//!     claimed_until INTEGER,                           -- ms; the claim lapses after
//!     relayed_at    INTEGER                            -- ms; NULL while pending
//! );
//! CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (topic, key, id) WHERE relayed_at IS NULL;
//! ```
//!
//! The application adds its rows with [`enqueue`] on its own connection, inside the
//! transaction of its business change: either both are stored or neither. `AUTOINCREMENT`
//! keeps ids from being reused after [`SqliteOutbox::purge_relayed`], so that an id seen
//! twice by a consumer is the same row.
//!
//! # Claiming, marking, ordering
//!
//! [`OutboxSource::pending`] claims the oldest pending rows in one `BEGIN IMMEDIATE`
//! transaction: it selects them and stamps them with the relay's name and a lease. A row
//! claimed by another relay whose lease has not lapsed is skipped, and so is every later
//! pending row of the same aggregate (same topic and key): two relays sharing a database
//! never send one aggregate's rows out of order, nor the same row at the same time. A relay
//! that restarts under the same name ([`SqliteOutbox::relay_name`]) takes its own claims
//! back at once; a dead relay's claims lapse after the lease ([`SqliteOutbox::lease`]).
//!
//! [`OutboxSource::mark_sent`] sets `relayed_at` on the rows in one transaction: all of
//! them are marked, or (on an error or a crash) none. The relay calls it only after its
//! Kafka transaction committed; see [`crate::outbox`] for the guarantee (at least once,
//! each record carrying its row id in `outbox-id`).
//!
//! Rows of one aggregate are produced in id order by one relay, in one transaction or in
//! successive ones, and records with the same key go to the same partition: a consumer
//! reads them in order (records with a null key are spread over partitions and have no
//! order among them). A batch sent again after a crash repeats rows already delivered; an
//! [`crate::IdempotentConsumer`] keyed on `outbox-id` skips them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use franzy::Header;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{OutboxRow, OutboxSource};
use crate::PatternError;

/// The table [`SqliteOutbox::open`] uses.
pub const DEFAULT_TABLE: &str = "outbox";

/// The relay name [`SqliteOutbox`] claims rows under unless told otherwise.
pub const DEFAULT_RELAY_NAME: &str = "franzy-outbox-relay";

/// How long a claim lasts unless told otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The largest headers blob decoded (1 MiB): a longer one is a corrupt row.
pub const MAX_HEADERS_BYTES: usize = 1 << 20;

/// An outbox in a SQLite table (see the module doc). Clones share the connection.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    connection: Arc<Mutex<Connection>>,
    table: Arc<str>,
    relay: Arc<str>,
    lease: Duration,
}

impl SqliteOutbox {
    /// Opens (or creates) the database at `path` in WAL mode with full synchronous commits
    /// and a 5 s busy timeout, and creates the table [`DEFAULT_TABLE`] if it is missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PatternError> {
        Self::from_connection(open_durable(path.as_ref())?, DEFAULT_TABLE)
    }

    /// An outbox in `table` of this connection's database, the table created if missing.
    /// The name must be an SQL identifier (letters, digits, `_`, not starting with a
    /// digit): it is written into the statements.
    pub fn from_connection(connection: Connection, table: &str) -> Result<Self, PatternError> {
        check_identifier(table)?;
        connection
            .execute_batch(&schema(table))
            .map_err(|e| sqlite_error(connection.path().map(Path::new), e))?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            table: table.into(),
            relay: DEFAULT_RELAY_NAME.into(),
            lease: DEFAULT_LEASE,
        })
    }

    /// The name this relay claims rows under (default [`DEFAULT_RELAY_NAME`]). Keep it the
    /// same across restarts (the producer's `transactional.id` is a good choice), so that a
    /// restarted relay takes back its own claims at once; give each relay sharing the
    /// database its own.
    pub fn relay_name(mut self, name: impl Into<String>) -> Self {
        self.relay = name.into().into();
        self
    }

    /// How long a claim lasts (default [`DEFAULT_LEASE`]): another relay may take the rows
    /// of one that stopped after this. Longer than a relay's transaction may take.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Its table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Adds a row with this connection (outside any transaction of the application: use
    /// [`enqueue`] inside one); its id.
    pub fn insert(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<u64, PatternError> {
        let connection = self.connection();
        enqueue(&connection, &self.table, topic, key, value, headers)
            .map_err(|e| sqlite_error(connection.path().map(Path::new), e))
    }

    /// Rows not relayed yet.
    pub fn unsent(&self) -> Result<u64, PatternError> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE relayed_at IS NULL",
            self.table
        );
        self.query(|c| c.query_row(&sql, [], |row| row.get::<_, i64>(0)))
            .map(|n| u64::try_from(n).unwrap_or(0))
    }

    /// Whether the row `id` was relayed (`None`: no such row).
    pub fn is_relayed(&self, id: u64) -> Result<Option<bool>, PatternError> {
        let sql = format!(
            "SELECT relayed_at IS NOT NULL FROM {} WHERE id = ?1",
            self.table
        );
        let id = to_sql_id(id)?;
        self.query(|c| {
            c.query_row(&sql, [id], |row| row.get::<_, bool>(0))
                .optional()
        })
    }

    /// Deletes the rows relayed more than `older_than` ago; how many. Ids are not reused.
    pub fn purge_relayed(&self, older_than: Duration) -> Result<usize, PatternError> {
        let before =
            now_ms().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        let sql = format!(
            "DELETE FROM {} WHERE relayed_at IS NOT NULL AND relayed_at < ?1",
            self.table
        );
        self.query(|c| c.execute(&sql, [before]))
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // Every statement runs in its own transaction, rolled back when it fails: a panic
        // while holding the lock leaves the connection usable.
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn query<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, PatternError> {
        let connection = self.connection();
        f(&connection).map_err(|e| sqlite_error(connection.path().map(Path::new), e))
    }

    /// Runs `f` on the connection on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Claim) -> Result<T, PatternError> + Send + 'static,
    ) -> Result<T, PatternError> {
        let connection = Arc::clone(&self.connection);
        let claim = Claim {
            table: Arc::clone(&self.table),
            relay: Arc::clone(&self.relay),
            lease_ms: i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX),
        };
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut connection, &claim)
        })
        .await
        .map_err(|e| PatternError::Outbox(Arc::new(std::io::Error::other(e.to_string()))))?
    }
}

impl OutboxSource for SqliteOutbox {
    fn pending(
        &self,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Vec<OutboxRow>, PatternError>> + Send {
        self.blocking(move |connection, claim| claim.claim(connection, limit))
    }

    fn mark_sent(
        &self,
        ids: &[u64],
    ) -> impl std::future::Future<Output = Result<(), PatternError>> + Send {
        let ids = ids.to_vec();
        self.blocking(move |connection, claim| claim.mark(connection, &ids))
    }
}

/// A row as selected: id, topic, key, value, headers blob.
type StoredRow = (
    i64,
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// What a claim or a mark needs to know, owned so that it moves to the blocking pool.
struct Claim {
    table: Arc<str>,
    relay: Arc<str>,
    lease_ms: i64,
}

impl Claim {
    /// Selects and claims up to `limit` rows (see the module doc), in one transaction.
    fn claim(
        &self,
        connection: &mut Connection,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, PatternError> {
        let path = connection.path().map(PathBuf::from);
        let error = |e| sqlite_error(path.as_deref(), e);
        let now = now_ms();
        let table = &self.table;
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(error)?;
        let select = format!(
            "SELECT id, topic, key, value, headers FROM {table} AS o
             WHERE o.relayed_at IS NULL
               AND (o.claimed_by IS NULL OR o.claimed_by = ?1 OR o.claimed_until <= ?2)
               AND NOT EXISTS (
                   SELECT 1 FROM {table} AS e
                   WHERE e.relayed_at IS NULL AND e.topic = o.topic AND e.key IS o.key
                     AND e.id < o.id AND e.claimed_by IS NOT NULL AND e.claimed_by <> ?1
                     AND e.claimed_until > ?2)
             ORDER BY o.id LIMIT ?3"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raw: Vec<StoredRow> = {
            let mut statement = transaction.prepare(&select).map_err(error)?;
            let rows = statement
                .query_map(params![&*self.relay, now, limit], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })
                .map_err(error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(error)?
        };
        let mut rows = Vec::with_capacity(raw.len());
        {
            let update =
                format!("UPDATE {table} SET claimed_by = ?1, claimed_until = ?2 WHERE id = ?3");
            let mut statement = transaction.prepare(&update).map_err(error)?;
            let until = now.saturating_add(self.lease_ms);
            for (id, topic, key, value, headers) in raw {
                statement
                    .execute(params![&*self.relay, until, id])
                    .map_err(error)?;
                let headers = match headers {
                    None => Vec::new(),
                    Some(blob) => decode_headers(&blob).ok_or_else(|| {
                        PatternError::Outbox(Arc::new(std::io::Error::other(format!(
                            "row {id} of {table}: its headers do not decode"
                        ))))
                    })?,
                };
                rows.push(OutboxRow {
                    id: u64::try_from(id).map_err(|_| {
                        PatternError::Outbox(Arc::new(std::io::Error::other(format!(
                            "row {id} of {table}: a negative id"
                        ))))
                    })?,
                    topic,
                    key: key.map(Bytes::from),
                    value: value.map(Bytes::from),
                    headers,
                });
            }
        }
        transaction.commit().map_err(error)?;
        Ok(rows)
    }

    /// Marks `ids` relayed and releases their claims, all in one transaction.
    fn mark(&self, connection: &mut Connection, ids: &[u64]) -> Result<(), PatternError> {
        let path = connection.path().map(PathBuf::from);
        let error = |e| sqlite_error(path.as_deref(), e);
        let now = now_ms();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(error)?;
        {
            let update = format!(
                "UPDATE {} SET relayed_at = ?1, claimed_by = NULL, claimed_until = NULL
                 WHERE id = ?2 AND relayed_at IS NULL",
                self.table
            );
            let mut statement = transaction.prepare(&update).map_err(error)?;
            for id in ids {
                statement
                    .execute(params![now, to_sql_id(*id)?])
                    .map_err(error)?;
            }
        }
        transaction.commit().map_err(error)
    }
}

/// Adds a row to the outbox `table` through `connection` (a [`rusqlite::Transaction`]
/// derefs to one: call it inside the transaction of the business change); its id.
pub fn enqueue(
    connection: &Connection,
    table: &str,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> rusqlite::Result<u64> {
    if check_identifier(table).is_err() {
        return Err(rusqlite::Error::InvalidParameterName(table.to_string()));
    }
    let headers = (!headers.is_empty()).then(|| encode_headers(headers));
    connection.execute(
        &format!(
            "INSERT INTO {table} (topic, key, value, headers, created_at) VALUES (?1, ?2, ?3, ?4, ?5)"
        ),
        params![topic, key, value, headers, now_ms()],
    )?;
    // Row ids are positive: AUTOINCREMENT starts at 1 and never wraps (SQLITE_FULL first).
    Ok(u64::try_from(connection.last_insert_rowid()).unwrap_or(0))
}

/// The statements creating the outbox `table` and its index (idempotent).
pub fn schema(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
             id            INTEGER PRIMARY KEY AUTOINCREMENT,
             topic         TEXT    NOT NULL,
             key           BLOB,
             value         BLOB,
             headers       BLOB,
             created_at    INTEGER NOT NULL,
             claimed_by    TEXT,
             claimed_until INTEGER,
             relayed_at    INTEGER
         );
         CREATE INDEX IF NOT EXISTS {table}_pending ON {table} (topic, key, id)
             WHERE relayed_at IS NULL;"
    )
}

/// Headers as stored in the `headers` column: a count (u32), then each key (u32 length,
/// bytes) and value (i32 length, -1 for null, bytes), big-endian.
pub fn encode_headers(headers: &[Header]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u32(u32::try_from(headers.len()).unwrap_or(u32::MAX));
    for header in headers {
        out.put_u32(u32::try_from(header.key.len()).unwrap_or(u32::MAX));
        out.put_slice(&header.key);
        match &header.value {
            None => out.put_i32(-1),
            Some(value) => {
                out.put_i32(i32::try_from(value.len()).unwrap_or(i32::MAX));
                out.put_slice(value);
            }
        }
    }
    out.to_vec()
}

/// The headers of a `headers` column; `None` when it does not decode (or is longer than
/// [`MAX_HEADERS_BYTES`]).
pub fn decode_headers(blob: &[u8]) -> Option<Vec<Header>> {
    if blob.len() > MAX_HEADERS_BYTES {
        return None;
    }
    let mut buf = blob;
    if buf.remaining() < 4 {
        return None;
    }
    let count = buf.get_u32() as usize;
    // Each header takes at least 8 bytes: a larger count is corrupt, not allocated.
    if count > buf.remaining() / 8 {
        return None;
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        if buf.remaining() < 4 {
            return None;
        }
        let len = buf.get_u32() as usize;
        if len > buf.remaining() {
            return None;
        }
        let key = Bytes::copy_from_slice(&buf[..len]);
        buf.advance(len);
        if buf.remaining() < 4 {
            return None;
        }
        let value = match buf.get_i32() {
            -1 => None,
            len => {
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= buf.remaining())?;
                let value = Bytes::copy_from_slice(&buf[..len]);
                buf.advance(len);
                Some(value)
            }
        };
        headers.push(Header { key, value });
    }
    buf.is_empty().then_some(headers)
}

/// Opens (or creates) the database at `path` in WAL mode with full synchronous commits and a
/// 5 s busy timeout: what both SQLite stores ask of a database.
pub(crate) fn open_durable(path: &Path) -> Result<Connection, PatternError> {
    let connection = Connection::open(path).map_err(|e| sqlite_error(Some(path), e))?;
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .and_then(|()| connection.pragma_update(None, "synchronous", "FULL"))
        .and_then(|()| connection.busy_timeout(Duration::from_secs(5)))
        .map_err(|e| sqlite_error(Some(path), e))?;
    Ok(connection)
}

pub(crate) fn check_identifier(name: &str) -> Result<(), PatternError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(PatternError::Config(format!(
            "outbox table name {name:?} is not an SQL identifier"
        )))
    }
}

fn to_sql_id(id: u64) -> Result<i64, PatternError> {
    i64::try_from(id)
        .map_err(|_| PatternError::Config(format!("outbox row id {id} is beyond SQLite's range")))
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn sqlite_error(path: Option<&Path>, error: rusqlite::Error) -> PatternError {
    let message = match path.filter(|p| !p.as_os_str().is_empty()) {
        Some(path) => format!("sqlite outbox {}: {error}", path.display()),
        None => format!("sqlite outbox: {error}"),
    };
    PatternError::Outbox(Arc::new(std::io::Error::other(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> SqliteOutbox {
        SqliteOutbox::from_connection(Connection::open_in_memory().expect("memory db"), "outbox")
            .expect("schema")
    }

    fn ids(rows: &[OutboxRow]) -> Vec<u64> {
        rows.iter().map(|r| r.id).collect()
    }

    #[test]
    fn headers_round_trip_and_corrupt_blobs_do_not_decode() {
        let headers = vec![
            Header::new("a", "1"),
            Header::null("b"),
            Header::new("", ""),
        ];
        let blob = encode_headers(&headers);
        assert_eq!(decode_headers(&blob), Some(headers));
        for cut in 0..blob.len() {
            assert_eq!(decode_headers(&blob[..cut]), None, "cut at {cut}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert_eq!(decode_headers(&longer), None);
        // A count of 2^32-1 is refused before allocating.
        assert_eq!(decode_headers(&u32::MAX.to_be_bytes()), None);
    }

    #[test]
    fn table_names_must_be_identifiers() {
        let bad = SqliteOutbox::from_connection(
            Connection::open_in_memory().expect("memory db"),
            "outbox; DROP TABLE x",
        );
        assert!(matches!(bad, Err(PatternError::Config(_))));
        let connection = Connection::open_in_memory().expect("memory db");
        assert!(enqueue(&connection, "1bad", "t", None, None, &[]).is_err());
    }

    #[tokio::test]
    async fn rows_are_claimed_oldest_first_and_marked_in_one_go() {
        let outbox = memory();
        for i in 0..5u8 {
            outbox
                .insert(
                    "t",
                    Some(&[i % 2]),
                    Some(&[i]),
                    &[Header::new("h", vec![i])],
                )
                .expect("insert");
        }
        let rows = outbox.pending(3).await.expect("claim");
        assert_eq!(ids(&rows), [1, 2, 3]);
        assert_eq!(rows[2].value.as_deref(), Some(&[2u8][..]));
        assert_eq!(rows[2].headers, [Header::new("h", vec![2u8])]);
        // The same relay takes its claims back (a restart).
        assert_eq!(
            ids(&outbox.pending(10).await.expect("claim")),
            [1, 2, 3, 4, 5]
        );
        outbox.mark_sent(&[1, 2, 3]).await.expect("mark");
        assert_eq!(outbox.unsent().expect("count"), 2);
        assert_eq!(outbox.is_relayed(2).expect("row"), Some(true));
        assert_eq!(outbox.is_relayed(4).expect("row"), Some(false));
        assert_eq!(outbox.is_relayed(99).expect("no row"), None);
        assert_eq!(ids(&outbox.pending(10).await.expect("claim")), [4, 5]);
        // Marking again (a retry after an unknown outcome) changes nothing.
        outbox.mark_sent(&[1, 2, 3]).await.expect("mark");
        assert_eq!(outbox.unsent().expect("count"), 2);
        // Purging: only rows relayed long enough ago; their ids are never given again.
        assert_eq!(
            outbox
                .purge_relayed(Duration::from_secs(3600))
                .expect("purge"),
            0
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(outbox.purge_relayed(Duration::ZERO).expect("purge"), 3);
        assert_eq!(outbox.is_relayed(1).expect("purged"), None);
        assert_eq!(outbox.insert("t", None, None, &[]).expect("insert"), 6);
    }

    #[tokio::test]
    async fn another_relay_skips_claimed_rows_and_the_later_rows_of_their_aggregates() {
        let outbox = memory();
        // Aggregates: a, b, a, c, b, null, null.
        for key in [
            Some("a"),
            Some("b"),
            Some("a"),
            Some("c"),
            Some("b"),
            None,
            None,
        ] {
            outbox
                .insert("t", key.map(str::as_bytes), Some(b"v"), &[])
                .expect("insert");
        }
        let first = outbox.clone().relay_name("first");
        assert_eq!(ids(&first.pending(2).await.expect("claim")), [1, 2]);
        // The second relay's claims lapse at once (a lease of zero).
        let second = outbox.clone().relay_name("second").lease(Duration::ZERO);
        // Rows 3 (a) and 5 (b) wait for the first relay's rows 1 and 2.
        assert_eq!(ids(&second.pending(10).await.expect("claim")), [4, 6, 7]);
        first.mark_sent(&[1, 2]).await.expect("mark");
        assert_eq!(
            ids(&second.pending(10).await.expect("claim")),
            [3, 4, 5, 6, 7]
        );
        // A lapsed lease frees the rows for anyone; a live one keeps them.
        let third = outbox.clone().relay_name("third");
        assert_eq!(
            ids(&third.pending(10).await.expect("claim")),
            [3, 4, 5, 6, 7]
        );
        let fourth = outbox.clone().relay_name("fourth");
        assert!(fourth.pending(10).await.expect("claim").is_empty());
    }

    #[tokio::test]
    async fn an_undecodable_row_is_an_error_naming_it_and_claims_nothing() {
        let outbox = memory();
        outbox.insert("t", None, Some(b"ok"), &[]).expect("insert");
        outbox
            .query(|c| {
                c.execute(
                    "INSERT INTO outbox (topic, headers, created_at) VALUES ('t', x'ffffffff', 0)",
                    [],
                )
            })
            .expect("corrupt row");
        let error = outbox.pending(10).await.expect_err("corrupt");
        assert!(
            std::error::Error::source(&error)
                .is_some_and(|s| s.to_string().contains("row 2 of outbox")),
            "{error:?}"
        );
        // The failed claim was rolled back: another relay may take row 1.
        let other = outbox.clone().relay_name("other");
        assert!(other.pending(1).await.expect("claim").len() == 1);
    }

    #[tokio::test]
    async fn a_business_transaction_rolled_back_leaves_no_row() {
        let dir = std::env::temp_dir().join(format!("franzy-sqlite-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("app.db");
        let _ = std::fs::remove_file(&path);
        let outbox = SqliteOutbox::open(&path).expect("open");
        let mut app = Connection::open(&path).expect("app connection");
        app.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT)")
            .expect("orders");
        for commit in [false, true] {
            let tx = app.transaction().expect("begin");
            tx.execute("INSERT INTO orders (status) VALUES ('accepted')", [])
                .expect("order");
            enqueue(
                &tx,
                "outbox",
                "orders",
                Some(b"o-1"),
                Some(b"accepted"),
                &[],
            )
            .expect("enqueue");
            if commit {
                tx.commit().expect("commit");
            } else {
                tx.rollback().expect("rollback");
            }
        }
        let rows = outbox.pending(10).await.expect("claim");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].value.as_deref(), Some(&b"accepted"[..]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
