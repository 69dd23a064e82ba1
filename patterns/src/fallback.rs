//! The local-file fallback: dead letters the dead-letter topic refused, appended to a file
//! and fsynced before the source offset may be committed; replayed to Kafka later.
//!
//! The file is a sequence of entries, each `length: u32 BE | crc32c: u32 BE | payload`,
//! the payload one [`ProducerRecord`] (topic, key, value, headers; lengths big-endian,
//! -1 for null). A process that dies in the middle of an append leaves a torn last entry:
//! its CRC (or its length) does not check, it was never fsynced, so its source offset was
//! never committed and the record will be consumed again; [`read_entries`] stops there.
//!
//! [`FallbackFile::replay`] sends every entry, waits for each acknowledgement, then
//! rewrites the file with only the entries not acknowledged (and any bytes it could not
//! read, verbatim), to a temporary file that is fsynced and renamed over the original: a
//! crash at any point leaves either the old file or the new one. An entry acknowledged just
//! before a crash that prevented the rename is sent again on the next replay (at least
//! once, never lost).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use franzy::{Header, Producer, ProducerRecord};

use crate::stats::{Counter, Stats};
use crate::PatternError;

/// The largest entry read back (64 MiB): a length above it is corruption, not a record.
pub const MAX_ENTRY_BYTES: usize = 64 << 20;

/// The largest file read back at once (1 GiB): a replay reads the whole file into memory,
/// so a larger one is refused with an error rather than exhausting memory.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// A fallback file. Clones share the file and its lock: appends and replays of one process
/// never interleave.
#[derive(Debug, Clone)]
pub struct FallbackFile {
    path: Arc<PathBuf>,
    lock: Arc<tokio::sync::Mutex<()>>,
    stats: Stats,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Entries acknowledged and removed from the file.
    pub replayed: usize,
    /// Entries refused, kept in the file.
    pub remaining: usize,
    /// Bytes at the end that could not be read as entries (a torn or corrupt tail), kept.
    pub unreadable_bytes: usize,
}

impl FallbackFile {
    /// The fallback file at `path` (created on the first append).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Arc::new(path.into()),
            lock: Arc::new(tokio::sync::Mutex::new(())),
            stats: Stats::new("fallback"),
        }
    }

    /// Counts replays into these stats.
    pub fn stats(mut self, stats: Stats) -> Self {
        self.stats = stats;
        self
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` and fsyncs: once this returns `Ok`, the record survives a crash.
    pub async fn append(&self, record: &ProducerRecord) -> Result<(), PatternError> {
        let entry = encode_entry(record);
        let _guard = self.lock.lock().await;
        let path = Arc::clone(&self.path);
        blocking(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&*path)
                .map_err(|e| PatternError::io(&path, e))?;
            file.write_all(&entry)
                .map_err(|e| PatternError::io(&path, e))?;
            file.sync_data().map_err(|e| PatternError::io(&path, e))
        })
        .await
    }

    /// Entries in the file, and bytes at its end that are not entries.
    pub async fn entries(&self) -> Result<(Vec<ProducerRecord>, usize), PatternError> {
        let _guard = self.lock.lock().await;
        let path = Arc::clone(&self.path);
        blocking(move || read_file(&path))
            .await
            .map(|(e, tail)| (e, tail.len()))
    }

    /// Sends every entry to its topic, then keeps in the file only those not acknowledged
    /// (see the module doc). Appends wait meanwhile.
    pub async fn replay(&self, producer: &Producer) -> Result<ReplayReport, PatternError> {
        let _guard = self.lock.lock().await;
        let path = Arc::clone(&self.path);
        let (entries, tail) = blocking(move || read_file(&path)).await?;
        let mut deliveries = Vec::with_capacity(entries.len());
        for entry in &entries {
            deliveries.push(producer.send(entry.clone()).await);
        }
        let mut kept = Vec::new();
        let mut replayed = 0;
        for (entry, delivery) in entries.into_iter().zip(deliveries) {
            let acknowledged = match delivery {
                Ok(future) => future.await.is_ok(),
                Err(_) => false,
            };
            if acknowledged {
                replayed += 1;
            } else {
                kept.push(entry);
            }
        }
        let report = ReplayReport {
            replayed,
            remaining: kept.len(),
            unreadable_bytes: tail.len(),
        };
        if replayed > 0 {
            let path = Arc::clone(&self.path);
            blocking(move || rewrite(&path, &kept, &tail)).await?;
        }
        self.stats.add(Counter::Replayed, replayed as u64);
        tracing::info!(path = %self.path.display(), replayed = report.replayed, remaining = report.remaining, "fallback file replayed");
        Ok(report)
    }
}

/// Replays the fallback file at `path` (see [`FallbackFile::replay`]); no other process may
/// append to it meanwhile.
pub async fn replay(
    path: impl Into<PathBuf>,
    producer: &Producer,
) -> Result<ReplayReport, PatternError> {
    FallbackFile::new(path).replay(producer).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PatternError> + Send + 'static,
) -> Result<T, PatternError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PatternError::Io {
            path: PathBuf::new(),
            source: Arc::new(std::io::Error::other(e.to_string())),
        })?
}

fn read_file(path: &Path) -> Result<(Vec<ProducerRecord>, Bytes), PatternError> {
    let mut bytes = Vec::new();
    match std::fs::File::open(path) {
        Ok(file) => {
            let len = file
                .metadata()
                .map_err(|e| PatternError::io(path, e))?
                .len();
            if len > MAX_FILE_BYTES {
                return Err(PatternError::io(
                    path,
                    std::io::Error::other(format!(
                        "{len} bytes, more than the {MAX_FILE_BYTES} read at once: split it"
                    )),
                ));
            }
            file.take(MAX_FILE_BYTES)
                .read_to_end(&mut bytes)
                .map_err(|e| PatternError::io(path, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PatternError::io(path, e)),
    }
    let (entries, consumed) = read_entries(&bytes);
    Ok((entries, Bytes::copy_from_slice(&bytes[consumed..])))
}

fn rewrite(path: &Path, kept: &[ProducerRecord], tail: &[u8]) -> Result<(), PatternError> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".replay-tmp");
    let temp = PathBuf::from(temp);
    {
        let mut file = std::fs::File::create(&temp).map_err(|e| PatternError::io(&temp, e))?;
        for entry in kept {
            file.write_all(&encode_entry(entry))
                .map_err(|e| PatternError::io(&temp, e))?;
        }
        file.write_all(tail)
            .map_err(|e| PatternError::io(&temp, e))?;
        file.sync_all().map_err(|e| PatternError::io(&temp, e))?;
    }
    std::fs::rename(&temp, path).map_err(|e| PatternError::io(path, e))?;
    // The rename itself is durable once the directory is synced.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// One entry: length, CRC-32C of the payload, payload.
pub fn encode_entry(record: &ProducerRecord) -> Vec<u8> {
    let mut payload = BytesMut::new();
    put_bytes(&mut payload, Some(record.topic.as_bytes()));
    put_bytes(&mut payload, record.key.as_deref());
    put_bytes(&mut payload, record.value.as_deref());
    payload.put_u32(u32::try_from(record.headers.len()).unwrap_or(u32::MAX));
    for header in &record.headers {
        put_bytes(&mut payload, Some(&header.key));
        put_bytes(&mut payload, header.value.as_deref());
    }
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

fn put_bytes(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => out.put_i32(-1),
        Some(b) => {
            out.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
            out.put_slice(b);
        }
    }
}

/// The entries at the start of `bytes`, and how many bytes they take: reading stops at the
/// first entry that is incomplete, longer than [`MAX_ENTRY_BYTES`], fails its CRC or does
/// not decode.
pub fn read_entries(bytes: &[u8]) -> (Vec<ProducerRecord>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    loop {
        let rest = &bytes[at..];
        if rest.len() < 8 {
            break;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_ENTRY_BYTES || rest.len() - 8 < len {
            break;
        }
        let payload = &rest[8..8 + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Some(record) = decode_payload(Bytes::copy_from_slice(payload)) else {
            break;
        };
        entries.push(record);
        at += 8 + len;
    }
    (entries, at)
}

fn decode_payload(mut buf: Bytes) -> Option<ProducerRecord> {
    let topic = take_bytes(&mut buf)??;
    let topic = std::str::from_utf8(&topic).ok()?.to_string();
    let key = take_bytes(&mut buf)?;
    let value = take_bytes(&mut buf)?;
    if buf.remaining() < 4 {
        return None;
    }
    let count = buf.get_u32() as usize;
    // Each header takes at least 8 bytes: a count beyond that is corrupt, not allocated.
    if count > buf.remaining() / 8 {
        return None;
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let key = take_bytes(&mut buf)??;
        let value = take_bytes(&mut buf)?;
        headers.push(Header { key, value });
    }
    if buf.has_remaining() {
        return None;
    }
    Some(crate::producer_record(topic, key, value, headers))
}

/// `None`: malformed; `Some(None)`: null.
fn take_bytes(buf: &mut Bytes) -> Option<Option<Bytes>> {
    if buf.remaining() < 4 {
        return None;
    }
    let len = buf.get_i32();
    if len == -1 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    if len > buf.remaining() {
        return None;
    }
    Some(Some(buf.split_to(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> ProducerRecord {
        let mut record = ProducerRecord::new("orders.DLT")
            .with_value(format!("value-{i}"))
            .with_header("error-type", "permanent");
        if i % 2 == 0 {
            record = record.with_key(format!("key-{i}"));
        }
        record.headers.push(Header::null("nullable"));
        record
    }

    #[test]
    fn entries_round_trip_and_a_torn_tail_stops_the_reading() {
        let mut bytes = Vec::new();
        for i in 0..5 {
            bytes.extend(encode_entry(&sample(i)));
        }
        let (entries, used) = read_entries(&bytes);
        assert_eq!(entries, (0..5).map(sample).collect::<Vec<_>>());
        assert_eq!(used, bytes.len());
        // Cut anywhere inside the last entry: the first four are read, the rest is tail.
        let four: usize = (0..4).map(|i| encode_entry(&sample(i)).len()).sum();
        for cut in four..bytes.len() {
            let (entries, used) = read_entries(&bytes[..cut]);
            assert_eq!(entries.len(), 4, "cut at {cut}");
            assert_eq!(used, four);
        }
        // A flipped bit fails the CRC.
        let mut bad = bytes.clone();
        bad[four + 12] ^= 1;
        assert_eq!(read_entries(&bad).0.len(), 4);
    }

    #[test]
    fn hostile_lengths_are_refused_without_allocating() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        bytes.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(read_entries(&bytes), (vec![], 0));
        // A payload with a valid CRC but a header count of 2^32-1.
        let mut payload = BytesMut::new();
        put_bytes(&mut payload, Some(b"t"));
        put_bytes(&mut payload, None);
        put_bytes(&mut payload, None);
        payload.put_u32(u32::MAX);
        let mut entry = Vec::new();
        entry.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        entry.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        entry.extend_from_slice(&payload);
        assert_eq!(read_entries(&entry).0.len(), 0);
    }

    #[tokio::test]
    async fn appends_survive_and_entries_read_back() {
        let dir = std::env::temp_dir().join(format!("franzy-fallback-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("dlt.fallback");
        let _ = std::fs::remove_file(&path);
        let file = FallbackFile::new(&path);
        assert_eq!(
            file.entries().await.expect("missing file is empty").0.len(),
            0
        );
        for i in 0..3 {
            file.append(&sample(i)).await.expect("append");
        }
        // A torn append (a crash mid-write) after them.
        let mut torn = encode_entry(&sample(9));
        torn.truncate(torn.len() / 2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&torn))
            .expect("torn write");
        let (entries, tail) = file.entries().await.expect("read");
        assert_eq!(entries, (0..3).map(sample).collect::<Vec<_>>());
        assert_eq!(tail, torn.len());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
