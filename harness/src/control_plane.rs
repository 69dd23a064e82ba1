//! The control plane: the cluster's controls over HTTP/JSON, so that a test written in any
//! language can stop brokers, move leaders, inject faults and read the request log of a
//! `franzy serve --control ADDR` cluster. Every operation is also a method of
//! [`ClusterHandle`] for Rust tests.
//!
//! | request | what |
//! |---|---|
//! | `GET /brokers` | brokers: id, address, up |
//! | `POST /brokers/{id}/stop`, `/start` | [`ClusterHandle::stop_broker`], [`ClusterHandle::start_broker`] |
//! | `POST /partitions/{topic}/{p}/leader/{broker}` | `ClusterState::set_leader` |
//! | `POST /partitions/{topic}/{p}/leaderless` | `ClusterState::clear_leader` |
//! | `POST /faults` | adds an interceptor described in JSON (below) |
//! | `GET /faults`, `DELETE /faults` | interceptors pending; removes them all |
//! | `GET /requests?api=&broker=&since=` | the request record, filtered (`since`: ms of cluster time) |
//! | `DELETE /requests` | forgets the record |
//! | `GET /stats` | [`ClusterHandle::stats`]: `{"requests": {API: n}, "unknown_api_requests", "bytes_in", "bytes_out", "largest_request"}` |
//! | `POST /groups/{id}/coordinator/{broker}` | [`ClusterHandle::move_group_coordinator`] |
//! | `POST /transactions/{id}/coordinator/{broker}` | [`ClusterHandle::move_transaction_coordinator`] |
//!
//! A fault: `{"api": "Produce", "broker": 1, "topic": "orders", "partition": 0,
//! "error": "NOT_LEADER_OR_FOLLOWER", "times": 3}`; exactly one action of `"error"` (a name
//! or a code), `"delay_ms"`, or `"drop"` (`"before"`: close without handling, `"after"`:
//! handle then close, `"never"`: never answer); narrowed by `"broker"`, `"topic"` with
//! `"partition"`, `"group"`, `"transactional_id"`; applied `"times"` times (default 1), or
//! kept with `"keep": true`, with `"probability"` (0 to 1) drawn from the cluster's seed.
//!
//! The server is HTTP/1.1 on tokio, written here with strict limits rather than pulled in:
//! one request per connection (`Connection: close`), headers up to 16 KiB, bodies up to
//! 64 KiB, 10 s to send a request, 64 connections at once. Answers are JSON; errors are
//! `{"error": "..."}` with 400, 404, 405, 408, 413, 431, 501 or 503.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use franzy::proto::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::lab::schedule::{api_by_name, error_by_name};
use crate::{Action, Cluster, ClusterHandle, HarnessError, Interceptor, RecordedRequest};

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 64;

/// A running control plane; it stops with the cluster, or when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    address: SocketAddr,
    cancel: CancellationToken,
}

impl ControlPlane {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Cluster {
    /// Serves the control plane (see the [module](self) doc) on `address` (`host:port`,
    /// port 0 for any) until the cluster shuts down or the returned value is dropped.
    pub async fn serve_control(&self, address: &str) -> Result<ControlPlane, HarnessError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| HarnessError::Bind {
                address: address.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| HarnessError::Bind {
            address: address.to_string(),
            source,
        })?;
        let cancel = self.inner.root.child_token();
        tokio::spawn(accept(self.inner.clone(), listener, cancel.clone()));
        Ok(ControlPlane {
            address: local,
            cancel,
        })
    }
}

async fn accept(cluster: Arc<ClusterHandle>, listener: TcpListener, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let mut stream = stream;
            let _ = respond(&mut stream, 503, &error_json("too many connections")).await;
            continue;
        };
        let cluster = cluster.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {}
                () = serve(&cluster, stream) => {}
            }
            drop(slot);
        });
    }
}

/// A request as read off the connection.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    body: Vec<u8>,
}

async fn serve(cluster: &ClusterHandle, mut stream: TcpStream) {
    let request = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(request)) => request,
        Ok(Err((status, message))) => {
            let _ = respond(&mut stream, status, &error_json(&message)).await;
            return;
        }
        Err(_) => {
            let _ = respond(
                &mut stream,
                408,
                &error_json("request not received in time"),
            )
            .await;
            return;
        }
    };
    let (status, body) = match route(cluster, &request).await {
        Ok(body) => (200, body),
        Err((status, message)) => (status, error_json(&message)),
    };
    let _ = respond(&mut stream, status, &body).await;
}

type Failure = (u16, String);

async fn read_request(stream: &mut TcpStream) -> Result<Request, Failure> {
    let mut buffer = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD {
            return Err((431, "request head over 16 KiB".into()));
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| (400, e.to_string()))?;
        if n == 0 {
            return Err((400, "connection closed before the request ended".into()));
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buffer[..head_end])
        .map_err(|_| (400, "head not UTF-8".to_string()))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err((400, format!("bad request line {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err((400, format!("unsupported protocol {version:?}")));
    }
    let mut length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            length = value
                .trim()
                .parse()
                .map_err(|_| (400, "bad Content-Length".to_string()))?;
        }
        if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Err((
                501,
                "chunked bodies are not supported; send Content-Length".into(),
            ));
        }
    }
    if length > MAX_BODY {
        return Err((413, "body over 64 KiB".into()));
    }
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(16 * 1024)];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| (400, e.to_string()))?;
        if n == 0 {
            return Err((400, "connection closed before the body ended".into()));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, parse_query(query)),
        None => (target, BTreeMap::new()),
    };
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (!key.is_empty()).then(|| (percent_decode(key), percent_decode(value)))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn respond(stream: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

fn error_json(message: &str) -> String {
    format!("{{\"error\":{}}}", json_string(message))
}

const OK: &str = "{\"ok\":true}";

async fn route(cluster: &ClusterHandle, request: &Request) -> Result<String, Failure> {
    let segments: Vec<String> = request
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method.as_str();
    let number = |text: &str, what: &str| -> Result<i32, Failure> {
        text.parse()
            .map_err(|_| (400, format!("{what} {text:?} is not a number")))
    };
    match (method, segments.as_slice()) {
        ("GET", []) => Ok(routes_json()),
        ("GET", ["brokers"]) => Ok(brokers_json(cluster)),
        ("POST", ["brokers", id, "stop"]) => {
            cluster
                .stop_broker(number(id, "broker")?)
                .map_err(|e| (404, e.to_string()))?;
            Ok(OK.into())
        }
        ("POST", ["brokers", id, "start"]) => {
            cluster
                .start_broker(number(id, "broker")?)
                .await
                .map_err(|e| (404, e.to_string()))?;
            Ok(OK.into())
        }
        ("POST", ["partitions", topic, partition, "leader", broker]) => {
            let (partition, broker) = (number(partition, "partition")?, number(broker, "broker")?);
            cluster
                .with_state(|s| s.set_leader(topic, partition, broker))
                .map_err(|code| (400, format!("{code:?}")))?;
            Ok(OK.into())
        }
        ("POST", ["partitions", topic, partition, "leaderless"]) => {
            let partition = number(partition, "partition")?;
            cluster
                .with_state(|s| s.clear_leader(topic, partition))
                .map_err(|code| (400, format!("{code:?}")))?;
            Ok(OK.into())
        }
        ("POST", ["faults"]) => {
            let interceptor = interceptor_from_json(&request.body)?;
            cluster.intercept(interceptor);
            Ok(OK.into())
        }
        ("GET", ["faults"]) => Ok(format!(
            "{{\"pending\":{}}}",
            cluster.pending_interceptors()
        )),
        ("DELETE", ["faults"]) => {
            cluster.clear_interceptors();
            Ok(OK.into())
        }
        ("GET", ["requests"]) => requests_json(cluster, &request.query),
        ("GET", ["stats"]) => Ok(stats_json(cluster)),
        ("DELETE", ["requests"]) => {
            cluster.clear_requests();
            Ok(OK.into())
        }
        ("POST", ["groups", id, "coordinator", broker]) => {
            cluster
                .move_group_coordinator(id, number(broker, "broker")?)
                .map_err(|e| (400, e.to_string()))?;
            Ok(OK.into())
        }
        ("POST", ["transactions", id, "coordinator", broker]) => {
            cluster
                .move_transaction_coordinator(id, number(broker, "broker")?)
                .map_err(|e| (400, e.to_string()))?;
            Ok(OK.into())
        }
        (
            _,
            ["brokers", ..]
            | ["partitions", ..]
            | ["faults"]
            | ["requests"]
            | ["stats"]
            | ["groups", ..]
            | ["transactions", ..],
        ) => Err((405, format!("{method} is not allowed on {}", request.path))),
        _ => Err((404, format!("no such control: {}", request.path))),
    }
}

fn stats_json(cluster: &ClusterHandle) -> String {
    let stats = cluster.stats();
    let per_api: Vec<String> = stats
        .requests_per_api
        .iter()
        .map(|(api, n)| format!("{}:{n}", json_string(&format!("{api:?}"))))
        .collect();
    format!(
        "{{\"requests\":{{{}}},\"unknown_api_requests\":{},\"bytes_in\":{},\"bytes_out\":{},\"largest_request\":{}}}",
        per_api.join(","),
        stats.unknown_api_requests,
        stats.bytes_in,
        stats.bytes_out,
        stats.largest_request
    )
}

fn routes_json() -> String {
    let routes = [
        "GET /brokers",
        "POST /brokers/{id}/stop",
        "POST /brokers/{id}/start",
        "POST /partitions/{topic}/{partition}/leader/{broker}",
        "POST /partitions/{topic}/{partition}/leaderless",
        "POST /faults",
        "GET /faults",
        "DELETE /faults",
        "GET /requests?api=&broker=&since=",
        "DELETE /requests",
        "GET /stats",
        "POST /groups/{id}/coordinator/{broker}",
        "POST /transactions/{id}/coordinator/{broker}",
    ];
    let list: Vec<String> = routes.iter().map(|r| json_string(r)).collect();
    format!("{{\"routes\":[{}]}}", list.join(","))
}

fn brokers_json(cluster: &ClusterHandle) -> String {
    let brokers = cluster.with_state(|s| s.brokers().to_vec());
    let entries: Vec<String> = brokers
        .iter()
        .map(|b| {
            format!(
                "{{\"id\":{},\"host\":{},\"port\":{},\"up\":{}}}",
                b.id,
                json_string(&b.host),
                b.port,
                b.up
            )
        })
        .collect();
    format!("[{}]", entries.join(","))
}

fn requests_json(
    cluster: &ClusterHandle,
    query: &BTreeMap<String, String>,
) -> Result<String, Failure> {
    let api = query
        .get("api")
        .map(|name| api_by_name(name).map_err(|e| (400, e)))
        .transpose()?;
    let broker = query
        .get("broker")
        .map(|b| b.parse::<i32>().map_err(|_| (400, format!("broker {b:?}"))))
        .transpose()?;
    let since = query
        .get("since")
        .map(|s| s.parse::<u64>().map_err(|_| (400, format!("since {s:?}"))))
        .transpose()?
        .map(Duration::from_millis);
    let keep = |r: &RecordedRequest| {
        api.is_none_or(|api| r.api_key == api)
            && broker.is_none_or(|b| r.broker_id == b)
            && since.is_none_or(|since| r.at >= since)
    };
    let mut out = String::from("[");
    for (i, r) in cluster.requests().iter().filter(|r| keep(r)).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let partitions: Vec<String> = r
            .partitions
            .iter()
            .map(|(topic, p)| format!("[{},{p}]", json_string(topic)))
            .collect();
        let _ = write!(
            out,
            "{{\"api\":{},\"api_key\":{},\"version\":{},\"broker\":{},\"client_id\":{},\"correlation_id\":{},\"at_ms\":{},\"partitions\":[{}],\"partitions_omitted\":{}}}",
            json_string(&format!("{:?}", r.api_key)),
            r.api_key as i16,
            r.api_version,
            r.broker_id,
            r.client_id.as_deref().map_or("null".to_string(), json_string),
            r.correlation_id,
            r.at.as_millis(),
            partitions.join(","),
            r.partitions_omitted
        );
    }
    out.push(']');
    Ok(out)
}

/// An interceptor from the JSON the module doc describes.
fn interceptor_from_json(body: &[u8]) -> Result<Interceptor, Failure> {
    let fields = json::parse_object(body).map_err(|e| (400, format!("fault: {e}")))?;
    let known = [
        "api",
        "broker",
        "topic",
        "partition",
        "group",
        "transactional_id",
        "error",
        "delay_ms",
        "drop",
        "times",
        "keep",
        "probability",
    ];
    if let Some(unknown) = fields.keys().find(|k| !known.contains(&k.as_str())) {
        return Err((400, format!("fault: unknown field {unknown:?}")));
    }
    let bad = |why: String| (400, format!("fault: {why}"));
    let api: ApiKey = match fields.get("api") {
        Some(json::Value::String(name)) => api_by_name(name).map_err(bad)?,
        Some(json::Value::Number(n)) => api_by_name(&format!("{n}")).map_err(bad)?,
        _ => return Err(bad("\"api\" (a name or a key) is required".into())),
    };
    let int = |key: &str| -> Result<Option<i64>, Failure> {
        match fields.get(key) {
            None | Some(json::Value::Null) => Ok(None),
            Some(json::Value::Number(n)) if n.fract() == 0.0 => Ok(Some(*n as i64)),
            Some(_) => Err(bad(format!("\"{key}\" must be a whole number"))),
        }
    };
    let text = |key: &str| -> Result<Option<String>, Failure> {
        match fields.get(key) {
            None | Some(json::Value::Null) => Ok(None),
            Some(json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("\"{key}\" must be a string"))),
        }
    };
    let mut actions = Vec::new();
    match fields.get("error") {
        None | Some(json::Value::Null) => {}
        Some(json::Value::String(name)) => {
            actions.push(Action::Error(error_by_name(name).map_err(bad)?));
        }
        Some(json::Value::Number(code)) => {
            actions.push(Action::Error(
                error_by_name(&format!("{code}")).map_err(bad)?,
            ));
        }
        Some(_) => return Err(bad("\"error\" must be a name or a code".into())),
    }
    if let Some(ms) = int("delay_ms")? {
        let ms = u64::try_from(ms).map_err(|_| bad("\"delay_ms\" below 0".into()))?;
        actions.push(Action::Delay(Duration::from_millis(ms)));
    }
    if let Some(drop) = text("drop")? {
        actions.push(match drop.as_str() {
            "before" => Action::Disconnect,
            "after" => Action::DisconnectAfterHandling,
            "never" | "never_answer" => Action::NeverAnswer,
            other => {
                return Err(bad(format!(
                    "\"drop\" is before, after or never, not {other:?}"
                )))
            }
        });
    }
    let action = match actions.len() {
        1 => actions.remove(0),
        0 => {
            return Err(bad(
                "one of \"error\", \"delay_ms\", \"drop\" is required".into()
            ))
        }
        _ => return Err(bad("only one of \"error\", \"delay_ms\", \"drop\"".into())),
    };
    let mut interceptor = Interceptor::new(api, action);
    if let Some(broker) = int("broker")? {
        interceptor =
            interceptor.on_broker(i32::try_from(broker).map_err(|_| bad("broker".into()))?);
    }
    match (text("topic")?, int("partition")?) {
        (Some(topic), Some(partition)) => {
            let partition = i32::try_from(partition).map_err(|_| bad("partition".into()))?;
            interceptor = interceptor.on_partition(topic, partition);
        }
        (None, None) => {}
        _ => return Err(bad("\"topic\" and \"partition\" go together".into())),
    }
    if let Some(group) = text("group")? {
        interceptor = interceptor.on_group(group);
    }
    if let Some(id) = text("transactional_id")? {
        interceptor = interceptor.on_transactional_id(id);
    }
    if let Some(times) = int("times")? {
        let times = u64::try_from(times).map_err(|_| bad("\"times\" below 0".into()))?;
        interceptor = interceptor.times(times);
    }
    match fields.get("keep") {
        Some(json::Value::Bool(true)) => interceptor = interceptor.keep(),
        None | Some(json::Value::Bool(false)) | Some(json::Value::Null) => {}
        Some(_) => return Err(bad("\"keep\" must be true or false".into())),
    }
    match fields.get("probability") {
        Some(json::Value::Number(p)) if (0.0..=1.0).contains(p) => {
            interceptor = interceptor.with_probability(*p);
        }
        None | Some(json::Value::Null) => {}
        Some(_) => return Err(bad("\"probability\" must be a number from 0 to 1".into())),
    }
    Ok(interceptor)
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Just enough JSON for the control plane's bodies: one object whose values are strings,
/// numbers, booleans or null (nested values are refused).
mod json {
    use std::collections::BTreeMap;

    /// A value of the object.
    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Value {
        String(String),
        Number(f64),
        Bool(bool),
        Null,
    }

    struct Parser<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    pub(super) fn parse_object(bytes: &[u8]) -> Result<BTreeMap<String, Value>, String> {
        let mut parser = Parser { bytes, at: 0 };
        let object = parser.object()?;
        parser.space();
        if parser.at != bytes.len() {
            return Err(format!(
                "unexpected bytes after the object at {}",
                parser.at
            ));
        }
        Ok(object)
    }

    impl Parser<'_> {
        fn space(&mut self) {
            while self
                .bytes
                .get(self.at)
                .is_some_and(|b| b.is_ascii_whitespace())
            {
                self.at += 1;
            }
        }

        fn eat(&mut self, byte: u8) -> Result<(), String> {
            self.space();
            if self.bytes.get(self.at) == Some(&byte) {
                self.at += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at {}", byte as char, self.at))
            }
        }

        fn object(&mut self) -> Result<BTreeMap<String, Value>, String> {
            self.eat(b'{')?;
            let mut fields = BTreeMap::new();
            self.space();
            if self.bytes.get(self.at) == Some(&b'}') {
                self.at += 1;
                return Ok(fields);
            }
            loop {
                self.space();
                let key = self.string()?;
                self.eat(b':')?;
                let value = self.value()?;
                if fields.insert(key.clone(), value).is_some() {
                    return Err(format!("{key:?} given twice"));
                }
                self.space();
                match self.bytes.get(self.at) {
                    Some(b',') => self.at += 1,
                    Some(b'}') => {
                        self.at += 1;
                        return Ok(fields);
                    }
                    _ => return Err(format!("expected ',' or '}}' at {}", self.at)),
                }
            }
        }

        fn value(&mut self) -> Result<Value, String> {
            self.space();
            match self.bytes.get(self.at) {
                Some(b'"') => self.string().map(Value::String),
                Some(b't') => self.word("true", Value::Bool(true)),
                Some(b'f') => self.word("false", Value::Bool(false)),
                Some(b'n') => self.word("null", Value::Null),
                Some(b'-' | b'0'..=b'9') => self.number(),
                Some(b'{' | b'[') => {
                    Err(format!("nested values are not supported (at {})", self.at))
                }
                _ => Err(format!("expected a value at {}", self.at)),
            }
        }

        fn word(&mut self, word: &str, value: Value) -> Result<Value, String> {
            if self.bytes[self.at..].starts_with(word.as_bytes()) {
                self.at += word.len();
                Ok(value)
            } else {
                Err(format!("expected {word} at {}", self.at))
            }
        }

        fn number(&mut self) -> Result<Value, String> {
            let start = self.at;
            while self
                .bytes
                .get(self.at)
                .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
            {
                self.at += 1;
            }
            std::str::from_utf8(&self.bytes[start..self.at])
                .ok()
                .and_then(|text| text.parse::<f64>().ok())
                .filter(|n| n.is_finite())
                .map(Value::Number)
                .ok_or_else(|| format!("bad number at {start}"))
        }

        fn string(&mut self) -> Result<String, String> {
            self.eat(b'"')?;
            let mut out: Vec<u8> = Vec::new();
            loop {
                let Some(&byte) = self.bytes.get(self.at) else {
                    return Err("unterminated string".into());
                };
                self.at += 1;
                match byte {
                    b'"' => break,
                    b'\\' => {
                        let Some(&escaped) = self.bytes.get(self.at) else {
                            return Err("unterminated escape".into());
                        };
                        self.at += 1;
                        match escaped {
                            b'"' | b'\\' | b'/' => out.push(escaped),
                            b'n' => out.push(b'\n'),
                            b't' => out.push(b'\t'),
                            b'r' => out.push(b'\r'),
                            b'b' => out.push(8),
                            b'f' => out.push(12),
                            b'u' => {
                                let hex = self
                                    .bytes
                                    .get(self.at..self.at + 4)
                                    .and_then(|h| std::str::from_utf8(h).ok())
                                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                                    .and_then(char::from_u32)
                                    .ok_or("bad \\u escape")?;
                                self.at += 4;
                                let mut buf = [0u8; 4];
                                out.extend_from_slice(hex.encode_utf8(&mut buf).as_bytes());
                            }
                            _ => return Err(format!("bad escape at {}", self.at)),
                        }
                    }
                    byte => out.push(byte),
                }
            }
            String::from_utf8(out).map_err(|_| "string not UTF-8".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_of_scalars_parse_and_the_rest_is_refused() {
        let fields = json::parse_object(
            br#" {"api": "Produce", "broker": 1, "p": 0.5, "keep": true, "x": null, "s": "a\"\u00e9"} "#,
        )
        .expect("parses");
        assert_eq!(fields["api"], json::Value::String("Produce".into()));
        assert_eq!(fields["broker"], json::Value::Number(1.0));
        assert_eq!(fields["keep"], json::Value::Bool(true));
        assert_eq!(fields["s"], json::Value::String("a\"é".into()));
        for bad in [
            &b""[..],
            b"[]",
            b"{\"a\": [1]}",
            b"{\"a\": 1,}",
            b"{\"a\": 1} x",
            b"{\"a\": 1, \"a\": 2}",
            b"{\"a\": \"unterminated}",
            b"{\"a\": nope}",
        ] {
            assert!(
                json::parse_object(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn faults_in_json_become_interceptors() {
        let interceptor = interceptor_from_json(
            br#"{"api":"produce","broker":1,"topic":"t","partition":0,"error":"NOT_LEADER_OR_FOLLOWER","times":3}"#,
        )
        .expect("valid");
        let text = format!("{interceptor:?}");
        assert!(
            text.contains("NotLeaderOrFollower") && text.contains("Some(3)"),
            "{text}"
        );
        assert!(interceptor_from_json(br#"{"api":0,"drop":"after","keep":true}"#).is_ok());
        assert!(
            interceptor_from_json(br#"{"api":"Fetch","delay_ms":250,"probability":0.5}"#).is_ok()
        );
        for bad in [
            &br#"{"drop":"after"}"#[..],
            br#"{"api":"Produce"}"#,
            br#"{"api":"Produce","drop":"after","delay_ms":5}"#,
            br#"{"api":"Produce","drop":"sideways"}"#,
            br#"{"api":"Produce","drop":"after","topic":"t"}"#,
            br#"{"api":"Produce","drop":"after","probability":2}"#,
            br#"{"api":"Produce","drop":"after","colour":"red"}"#,
            br#"{"api":"Nope","drop":"after"}"#,
        ] {
            assert!(
                interceptor_from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn queries_and_paths_are_percent_decoded() {
        let query = parse_query("api=Produce&since=10&topic=a%2Fb+c");
        assert_eq!(query["api"], "Produce");
        assert_eq!(query["topic"], "a/b c");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
