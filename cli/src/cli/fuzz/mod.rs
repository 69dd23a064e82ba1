//! `franzy fuzz -b BOOTSTRAP`: a black-box, protocol-aware fuzzer for any Kafka cluster.
//!
//! ```text
//! ApiVersions ── versions ─┐
//! conversations ── corpus ─┼─ N connections, each: pick (verbatim | mutated | generated |
//!                          │   out-of-range version | producer run) ── send ── judge (oracle.rs)
//! watcher (invariants) ────┘                                             │
//!                                          findings ── minimise (replay) ── files (finding.rs)
//! ```
//!
//! | file | what |
//! |---|---|
//! | `wire.rs` | one TCP connection, one request at a time, every wait bounded |
//! | `corpus.rs` | version negotiation and the valid conversations the corpus comes from |
//! | `oracle.rs` | what Kafka owes a request; the verdict on what came back |
//! | `finding.rs` | finding files: the conversation and the request, in hex |
//!
//! Each connection draws from its own generator, seeded from `--seed` and its index, so a
//! run's requests are the same for the same seed and the same corpus; which connection
//! reaches a shared state first is up to the scheduler.

mod corpus;
mod finding;
mod oracle;
mod wire;

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use franzy::fuzzing::arbitrary::{Arbitrary, Unstructured};
use franzy::fuzzing::{FieldMap, GeneratedRequest, Mutation, ProducerRun};
use franzy::proto::batch_header::{validate_batch, BATCH_HEADER_LEN};
use franzy::proto::ApiKey;

use corpus::{Cluster, Conversations, Entry};
use finding::Finding;
use oracle::{expect, judge, FindingKind, Verdict, Versions};
use wire::{framed, with_correlation_id, Wire};

use super::serve::parse_duration;

/// Options of `franzy fuzz`.
#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Bootstrap server (host:port) of the cluster to fuzz.
    #[arg(short = 'b', long = "bootstrap")]
    pub bootstrap: String,
    /// Seed of every random choice [default: from the clock, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop after this many seconds [default: 60, unless --requests is given].
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Stop after this many requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Connections fuzzing at once, spread over the brokers.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// How long a request may go unanswered (beyond the wait it asks for itself) before it
    /// is a hang.
    #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DURATION")]
    pub deadline: Duration,
    /// Only these APIs (comma-separated names, e.g. Produce,Fetch), in corpus and generation.
    #[arg(long, value_delimiter = ',', value_name = "API")]
    pub apis: Vec<String>,
    /// Where findings are written.
    #[arg(long, default_value = "fuzz-findings", value_name = "DIR")]
    pub findings: PathBuf,
    /// Replay a finding file instead of fuzzing; exits non-zero if it reproduces.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Allow addresses outside loopback and private networks: only for clusters you own.
    #[arg(long)]
    pub i_own_this_cluster: bool,
}

/// Runs `franzy fuzz`. `Ok(true)`: no findings (or a replay that did not reproduce).
pub async fn run(args: FuzzArgs) -> Result<bool, String> {
    check_address(&args.bootstrap, args.i_own_this_cluster)?;
    if let Some(path) = &args.replay {
        return replay_file(&args, path).await;
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    eprintln!("franzy fuzz: seed {seed} (rerun with --seed {seed})");
    let focus = focus(&args.apis)?;

    let mut bootstrap = Wire::connect(&args.bootstrap, args.deadline).await?;
    let (versions, mut entries) = corpus::negotiate(&mut bootstrap).await?;
    let mut cluster = Cluster {
        brokers: vec![args.bootstrap.clone()],
        node_ids: vec![-1],
        versions,
    };
    let name = format!("franzy-fuzz-{seed}");
    let mut conversations = Conversations::new(&mut cluster, bootstrap, name.clone());
    conversations.run().await;
    entries.append(&mut conversations.entries);
    for skipped in &conversations.skipped {
        eprintln!("franzy fuzz: corpus step skipped: {skipped}");
    }
    for address in cluster.brokers.iter().skip(1) {
        check_address(address, args.i_own_this_cluster)?;
    }
    let entries: Vec<Entry> = entries
        .into_iter()
        .filter(|e| focus.as_ref().is_none_or(|f| f.contains(&e.api_key)))
        .collect();
    let mut apis: Vec<ApiKey> = cluster
        .versions
        .keys()
        .copied()
        .filter(|k| focus.as_ref().is_none_or(|f| f.contains(k)))
        .collect();
    apis.sort_by_key(|k| *k as i16);
    if entries.is_empty() && apis.is_empty() {
        return Err("nothing to fuzz: no corpus and no advertised API (see --apis)".into());
    }
    let listed: Vec<String> = entries
        .iter()
        .map(|e| format!("{:?} v{}", e.api_key, e.version))
        .collect();
    eprintln!("franzy fuzz: corpus: {}", listed.join(", "));
    eprintln!(
        "franzy fuzz: {} brokers, {} APIs advertised, corpus of {} requests; fuzzing with {} connections",
        cluster.brokers.len(),
        cluster.versions.len(),
        entries.len(),
        args.connections
    );

    let shared = Arc::new(Shared {
        seed,
        deadline: args.deadline,
        cluster: cluster.clone(),
        entries,
        apis,
        topic: name.clone(),
        budget: args.requests,
        stop: AtomicBool::new(false),
        stats: Stats::default(),
        raw_findings: Mutex::new(Vec::new()),
        last_sent: Mutex::new(vec![None; args.connections.max(1)]),
    });
    let watcher = Watcher::setup(&shared, &format!("{name}-watch")).await;
    let mut tasks = Vec::new();
    for index in 0..args.connections.max(1) {
        tasks.push(tokio::spawn(fuzz_connection(shared.clone(), index)));
    }
    let watch_task = watcher.map(|w| tokio::spawn(w.run(shared.clone())));
    let seconds = args.seconds.or(if args.requests.is_some() {
        None
    } else {
        Some(60)
    });
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut interrupt = super::Interrupt::watch()?;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = interrupt.recv() => break,
        }
        if terminal {
            eprint!("\r{}   ", shared.stats.line(started.elapsed()));
        }
        let out_of_time = seconds.is_some_and(|s| started.elapsed() >= Duration::from_secs(s));
        if out_of_time || shared.stop.load(Ordering::SeqCst) {
            break;
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    if terminal {
        eprintln!();
    }
    // A request in flight is given its deadline (and its own wait) to finish.
    let grace = args.deadline + oracle::LONGEST_WAIT + Duration::from_secs(1);
    for task in tasks.into_iter().chain(watch_task) {
        let _ = tokio::time::timeout(grace, task).await;
    }

    let raw = std::mem::take(
        &mut *shared
            .raw_findings
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    let findings = minimise_all(&shared, raw).await;
    for (index, (finding, api)) in findings.iter().enumerate() {
        let path = finding.save(&args.findings, index + 1, api)?;
        eprintln!(
            "franzy fuzz: finding {}: {} ({}) -> {}",
            index + 1,
            finding.kind,
            finding.detail,
            path.display()
        );
    }
    println!("{}", shared.stats.summary(findings.len()));
    Ok(findings.is_empty())
}

/// `--apis` as API keys.
fn focus(names: &[String]) -> Result<Option<Vec<ApiKey>>, String> {
    if names.is_empty() {
        return Ok(None);
    }
    names
        .iter()
        .map(|name| {
            ApiKey::iter()
                .find(|k| format!("{k:?}").eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| format!("unknown API {name:?} in --apis"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Refuses addresses outside loopback and private networks without `--i-own-this-cluster`.
fn check_address(address: &str, owned: bool) -> Result<(), String> {
    if owned {
        return Ok(());
    }
    let resolved: Vec<IpAddr> = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .map(|a| a.ip())
        .collect();
    if !resolved.is_empty() && resolved.iter().all(is_test_network) {
        return Ok(());
    }
    Err(format!(
        "refusing to fuzz {address}: it is outside loopback and private networks \
         (127.0.0.0/8, ::1, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7). Fuzzing \
         sends malformed requests that can crash or corrupt a broker; pass \
         --i-own-this-cluster if this cluster is yours to break"
    ))
}

fn is_test_network(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private())
        }
    }
}

/// Counters of a run.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    responses: AtomicU64,
    closed: AtomicU64,
    hangs: AtomicU64,
    findings: AtomicU64,
}

impl Stats {
    fn line(&self, elapsed: Duration) -> String {
        let requests = self.requests.load(Ordering::Relaxed);
        format!(
            "{:>5.0}s  {} ({:.0}/s)",
            elapsed.as_secs_f64(),
            self.summary(self.findings.load(Ordering::Relaxed) as usize),
            requests as f64 / elapsed.as_secs_f64().max(0.001)
        )
    }

    fn summary(&self, findings: usize) -> String {
        format!(
            "requests={} responses={} closed={} hangs={} findings={}",
            self.requests.load(Ordering::Relaxed),
            self.responses.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
            self.hangs.load(Ordering::Relaxed),
            findings
        )
    }
}

/// What a finding looked like when it happened, before minimisation.
struct RawFinding {
    kind: FindingKind,
    detail: String,
    broker: usize,
    api: String,
    before: Vec<Vec<u8>>,
    request: Vec<u8>,
}

struct Shared {
    seed: u64,
    deadline: Duration,
    cluster: Cluster,
    entries: Vec<Entry>,
    apis: Vec<ApiKey>,
    topic: String,
    budget: Option<u64>,
    stop: AtomicBool,
    stats: Stats,
    raw_findings: Mutex<Vec<RawFinding>>,
    /// Each connection's last request and when it went: the candidates when the broker
    /// stops accepting connections.
    last_sent: Mutex<Vec<Option<LastSent>>>,
}

/// When a connection sent its last request, to which broker (index), and its bytes.
type LastSent = (Instant, usize, Vec<u8>);

impl Shared {
    fn report(&self, finding: RawFinding) {
        self.stats.findings.fetch_add(1, Ordering::Relaxed);
        let mut findings = self.raw_findings.lock().unwrap_or_else(|e| e.into_inner());
        // Enough to minimise and save; the rest are counted only.
        if findings.len() < 1000 {
            findings.push(finding);
        }
    }

    /// Takes one request from the budget; false when it is spent or the run is stopping.
    fn take_request(&self) -> bool {
        if self.stop.load(Ordering::SeqCst) {
            return false;
        }
        let sent = self.stats.requests.fetch_add(1, Ordering::SeqCst);
        if self.budget.is_some_and(|b| sent >= b) {
            self.stats.requests.fetch_sub(1, Ordering::SeqCst);
            self.stop.store(true, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// SplitMix64: the fuzzer's seeded randomness.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// One fuzzing connection: reconnects after every close, until the run stops.
async fn fuzz_connection(shared: Arc<Shared>, index: usize) {
    let mut rng = SplitMix64(shared.seed ^ (index as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    let broker = index % shared.cluster.brokers.len();
    let address = shared.cluster.brokers[broker].clone();
    'connections: while !shared.stop.load(Ordering::SeqCst) {
        let mut wire = match connect_or_report(&shared, &address).await {
            Some(wire) => wire,
            None => return,
        };
        let mut history: Vec<Vec<u8>> = Vec::new();
        // After a request owed no answer (acks=0), Kafka closes the connection if it failed:
        // a close of the next request is then no finding.
        let mut after_silence = false;
        loop {
            let step = choose_step(&shared, &mut rng, broker);
            for frame in step {
                if !shared.take_request() {
                    return;
                }
                let frame = with_correlation_id(&frame, wire.correlation_id());
                let owed = expect(&frame, &shared.cluster.versions);
                let wait = (!owed.no_answer)
                    .then(|| shared.deadline + owed.own_wait.unwrap_or(Duration::ZERO));
                if let Some(slot) = shared
                    .last_sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(index)
                {
                    *slot = Some((Instant::now(), broker, frame.clone()));
                }
                let reply = wire.exchange(&frame, wait).await;
                let verdict = match judge(&owed, &reply) {
                    Verdict::Finding(FindingKind::ClosedWithoutResponse) if after_silence => {
                        Verdict::Closed
                    }
                    verdict => verdict,
                };
                after_silence = verdict == Verdict::Silent;
                let api = owed
                    .request
                    .map(|(k, v)| format!("{k:?}-v{v}"))
                    .unwrap_or_else(|| "undecodable".into());
                match verdict {
                    Verdict::Answered => {
                        shared.stats.responses.fetch_add(1, Ordering::Relaxed);
                    }
                    Verdict::Silent => {}
                    Verdict::Closed | Verdict::GaveUp => {
                        shared.stats.closed.fetch_add(1, Ordering::Relaxed);
                        continue 'connections;
                    }
                    Verdict::Finding(kind) => {
                        match kind {
                            FindingKind::Hang => shared.stats.hangs.fetch_add(1, Ordering::Relaxed),
                            FindingKind::ClosedWithoutResponse => {
                                shared.stats.closed.fetch_add(1, Ordering::Relaxed)
                            }
                            _ => shared.stats.responses.fetch_add(1, Ordering::Relaxed),
                        };
                        shared.report(RawFinding {
                            detail: describe(&kind, &api, shared.deadline),
                            kind,
                            broker,
                            api,
                            before: history.iter().rev().take(16).rev().cloned().collect(),
                            request: frame.clone(),
                        });
                        continue 'connections;
                    }
                }
                if history.len() >= 64 {
                    history.drain(..32);
                }
                history.push(frame);
            }
        }
    }
}

/// Connects, retrying for two seconds; a broker that refuses that long is a finding.
async fn connect_or_report(shared: &Shared, address: &str) -> Option<Wire> {
    let mut error = String::new();
    for _ in 0..10 {
        if shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        match Wire::connect(address, shared.deadline).await {
            Ok(wire) => return Some(wire),
            Err(e) => error = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Only the first connection to see it reports it; the run stops. The request that
    // brought the broker down was the last one of some connection: each connection's last
    // request of the last few seconds is a candidate, a finding of its own to replay.
    if !shared.stop.swap(true, Ordering::SeqCst) {
        let recent: Vec<(usize, Vec<u8>)> = shared
            .last_sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flatten()
            .filter(|(at, _, _)| at.elapsed() < Duration::from_secs(5) + shared.deadline)
            .map(|(_, broker, frame)| (*broker, frame.clone()))
            .collect();
        for (candidate_broker, request) in recent {
            let api = expect(&request, &shared.cluster.versions)
                .request
                .map(|(k, v)| format!("{k:?}-v{v}"))
                .unwrap_or_else(|| "undecodable".into());
            shared.report(RawFinding {
                kind: FindingKind::Unreachable(error.clone()),
                detail: format!(
                    "the broker stopped accepting connections ({error}); this {api} was the last request of one connection"
                ),
                broker: candidate_broker,
                api,
                before: Vec::new(),
                request,
            });
        }
    }
    None
}

fn describe(kind: &FindingKind, api: &str, deadline: Duration) -> String {
    match kind {
        FindingKind::ClosedWithoutResponse => {
            format!("{api}: the connection closed without a response to a request that decodes")
        }
        FindingKind::Undecodable(why) => format!("{api}: the response does not decode: {why}"),
        FindingKind::WrongCorrelationId { expected, got } => {
            format!("{api}: response to correlation id {expected} carried {got}")
        }
        FindingKind::Hang => format!(
            "{api}: no response and no close within {}ms (plus the request's own wait)",
            deadline.as_millis()
        ),
        FindingKind::Unreachable(why) => format!("the broker stopped accepting connections: {why}"),
        FindingKind::Invariant(what) => what.clone(),
    }
}

/// The frames of one step, each with a size prefix.
fn choose_step(shared: &Shared, rng: &mut SplitMix64, broker: usize) -> Vec<Vec<u8>> {
    let data = rng.bytes(8192);
    let mut u = Unstructured::new(&data);
    let pick = u.int_in_range(0u8..=99).unwrap_or(0);
    let entry = pick_entry(shared, &mut u, broker);
    let generated = |u: &mut Unstructured<'_>, out_of_range: bool| -> Option<Vec<u8>> {
        let api = *u.choose(&shared.apis).ok()?;
        let (min, max) = *shared.cluster.versions.get(&api)?;
        let known = franzy::fuzzing::request_versions(api);
        let version = if out_of_range {
            // A version the broker did not advertise but the codec can write, if any.
            let outside: Vec<i16> = (known.min..=known.max)
                .filter(|v| !(min..=max).contains(v))
                .collect();
            *u.choose(&outside).ok()?
        } else {
            u.int_in_range(min..=max).ok()?
        };
        let request = GeneratedRequest::arbitrary_for(u, api, version).ok()?;
        request.encode().ok().map(|b| b.to_vec())
    };
    let step = match pick {
        0..=14 => entry.map(|e| vec![e.frame.to_vec()]),
        15..=59 => entry.and_then(|e| {
            let body = e.frame.slice(4..);
            let map = FieldMap::of_request(&body);
            let mut out = body.to_vec();
            for _ in 0..u.int_in_range(1..=3).unwrap_or(1) {
                let mutation = Mutation::arbitrary(&mut u).ok()?;
                if let Some(mutated) = mutation.apply(&out, &map) {
                    out = mutated;
                }
            }
            Some(vec![framed(&out)])
        }),
        60..=84 => generated(&mut u, false).map(|f| vec![f]),
        85..=89 => generated(&mut u, true).map(|f| vec![f]),
        90..=92 => {
            // An API key no one defines, with a plausible header.
            let key: i16 = u.int_in_range(200..=i16::MAX).unwrap_or(999);
            let mut body = Vec::new();
            body.extend_from_slice(&key.to_be_bytes());
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&0i32.to_be_bytes());
            body.extend_from_slice(&(-1i16).to_be_bytes());
            Some(vec![framed(&body)])
        }
        _ => producer_run(shared, &mut u),
    };
    step.filter(|s| !s.is_empty())
        .or_else(|| entry_fallback(shared))
        .unwrap_or_default()
}

fn pick_entry<'a>(
    shared: &'a Shared,
    u: &mut Unstructured<'_>,
    broker: usize,
) -> Option<&'a Entry> {
    let here: Vec<&Entry> = shared
        .entries
        .iter()
        .filter(|e| e.broker == broker)
        .collect();
    if !here.is_empty() && u.ratio(7u8, 10u8).unwrap_or(false) {
        return u.choose(&here).ok().copied();
    }
    u.choose(&shared.entries).ok()
}

fn entry_fallback(shared: &Shared) -> Option<Vec<Vec<u8>>> {
    shared.entries.first().map(|e| vec![e.frame.to_vec()])
}

/// A run of one producer's batches to the corpus topic, in order or not.
fn producer_run(shared: &Shared, u: &mut Unstructured<'_>) -> Option<Vec<Vec<u8>>> {
    let (min, max) = *shared.cluster.versions.get(&ApiKey::Produce)?;
    let version = max.min(12);
    if version < min {
        return None;
    }
    let run = ProducerRun::arbitrary(u).ok()?;
    run.batches
        .iter()
        .map(|batch| {
            let records = batch.encode().ok()?;
            let body = corpus::produce(&shared.topic, records, None);
            wire::request_frame(ApiKey::Produce, version, 0, &body)
                .ok()
                .map(|f| f.to_vec())
        })
        .collect()
}

/// Replays `finding` on a fresh connection to `address`: the conversation, then the
/// request. Returns the finding it reproduced, if any, and what came back.
async fn replay(
    address: &str,
    finding: &Finding,
    versions: &Versions,
    deadline: Duration,
) -> Result<(Option<FindingKind>, String), String> {
    let mut wire = Wire::connect(address, deadline).await?;
    let mut after_silence = false;
    for frame in &finding.before {
        let owed = expect(frame, versions);
        let wait = (!owed.no_answer).then(|| deadline + owed.own_wait.unwrap_or(Duration::ZERO));
        after_silence = owed.no_answer;
        match wire.exchange(frame, wait).await {
            wire::Reply::Frame(_) => {}
            _ if owed.no_answer => {}
            // The conversation broke off here: go on with a fresh connection.
            _ => wire = Wire::connect(address, deadline).await?,
        }
    }
    if finding.request.is_empty() {
        return Ok((None, "no request to send".into()));
    }
    let owed = expect(&finding.request, versions);
    let wait = (!owed.no_answer).then(|| deadline + owed.own_wait.unwrap_or(Duration::ZERO));
    let reply = wire.exchange(&finding.request, wait).await;
    let seen = match &reply {
        wire::Reply::Frame(frame) => {
            format!("response frame (no size prefix): {}", finding::hex(frame))
        }
        other => format!("{other:?}"),
    };
    let found = match judge(&owed, &reply) {
        Verdict::Finding(FindingKind::ClosedWithoutResponse) if after_silence => None,
        Verdict::Finding(kind) => Some(kind),
        _ => None,
    };
    if finding.kind == "unreachable" {
        // Reproduced when no connection is accepted for two seconds after the request.
        let mut refused = String::new();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match Wire::connect(address, deadline).await {
                Ok(_) => return Ok((None, format!("{seen}; connections still accepted"))),
                Err(error) => refused = error,
            }
        }
        return Ok((Some(FindingKind::Unreachable(refused)), seen));
    }
    Ok((found, seen))
}

/// Keeps one finding per (kind, API), minimises each by replaying it (the request alone,
/// then with less of its conversation), within a time budget.
async fn minimise_all(shared: &Shared, raw: Vec<RawFinding>) -> Vec<(Finding, String)> {
    let mut seen: HashMap<(String, String), ()> = HashMap::new();
    let mut out = Vec::new();
    let budget = Instant::now() + Duration::from_secs(60);
    for raw in raw {
        // One finding per kind and API, whatever the version.
        let api_name = raw.api.split("-v").next().unwrap_or_default().to_string();
        let key = (raw.kind.name().to_string(), api_name);
        let candidate = matches!(raw.kind, FindingKind::Unreachable(_));
        if (seen.insert(key, ()).is_some() && !candidate) || out.len() >= 50 {
            continue;
        }
        let mut finding = Finding {
            kind: raw.kind.name().into(),
            detail: raw.detail.clone(),
            seed: shared.seed,
            broker: shared.cluster.node_ids[raw.broker],
            deadline_ms: shared.deadline.as_millis() as u64,
            minimised: false,
            before: raw.before,
            request: raw.request,
        };
        let replayable = !matches!(
            raw.kind,
            FindingKind::Unreachable(_) | FindingKind::Invariant(_)
        );
        if replayable && Instant::now() < budget {
            let address = &shared.cluster.brokers[raw.broker];
            let reproduces = |candidate: &Finding| {
                let candidate = candidate.clone();
                let address = address.clone();
                async move {
                    let found = replay(
                        &address,
                        &candidate,
                        &shared.cluster.versions,
                        shared.deadline,
                    )
                    .await;
                    matches!(found, Ok((Some(kind), _)) if kind.name() == candidate.kind)
                }
            };
            let alone = Finding {
                before: Vec::new(),
                ..finding.clone()
            };
            if reproduces(&alone).await {
                finding = Finding {
                    minimised: true,
                    ..alone
                };
            } else if reproduces(&finding).await {
                finding.minimised = true;
                // Drop the oldest requests of the conversation while it still reproduces.
                while !finding.before.is_empty() && Instant::now() < budget {
                    let shorter = Finding {
                        before: finding.before[1..].to_vec(),
                        ..finding.clone()
                    };
                    if !reproduces(&shorter).await {
                        break;
                    }
                    finding = shorter;
                }
            }
        }
        out.push((finding, raw.api));
    }
    out
}

/// `--replay FILE`.
async fn replay_file(args: &FuzzArgs, path: &std::path::Path) -> Result<bool, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let finding = Finding::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bootstrap = Wire::connect(&args.bootstrap, args.deadline).await?;
    let (versions, _) = corpus::negotiate(&mut bootstrap).await?;
    let mut cluster = Cluster {
        brokers: vec![args.bootstrap.clone()],
        node_ids: vec![-1],
        versions: versions.clone(),
    };
    let mut address = args.bootstrap.clone();
    if finding.broker >= 0 {
        // Metadata names the broker the finding was sent to.
        let mut conversations = Conversations::new(&mut cluster, bootstrap, String::new());
        conversations.learn_brokers().await;
        let index = cluster.broker_of(finding.broker);
        address = cluster.brokers[index].clone();
        check_address(&address, args.i_own_this_cluster)?;
    }
    let deadline = Duration::from_millis(finding.deadline_ms).max(args.deadline);
    eprintln!(
        "franzy fuzz: replaying {} ({}, {} requests before) against {address}",
        path.display(),
        finding.kind,
        finding.before.len()
    );
    let (found, seen) = replay(&address, &finding, &versions, deadline).await?;
    eprintln!("franzy fuzz: {seen}");
    match found {
        Some(kind) => {
            println!("reproduced: {} ({})", kind.name(), finding.detail);
            Ok(false)
        }
        None => {
            println!("not reproduced: {}", finding.kind);
            Ok(true)
        }
    }
}

/// The state invariants, seen through the protocol on a topic and group of their own that
/// no fuzzed request names: the high watermark never goes back, the committed offset stays,
/// and every fetched batch passes its CRC.
struct Watcher {
    topic: String,
    group: String,
    leader: usize,
    coordinator: usize,
    committed: i64,
}

impl Watcher {
    async fn setup(shared: &Shared, name: &str) -> Option<Self> {
        let mut cluster = shared.cluster.clone();
        let wire = Wire::connect(&shared.cluster.brokers[0], shared.deadline)
            .await
            .ok()?;
        let mut conversations = Conversations::new(&mut cluster, wire, name.to_string());
        match conversations.watch_setup().await {
            Some((leader, coordinator, committed)) => {
                eprintln!(
                    "franzy fuzz: watching invariants on topic {name} (high watermark, CRCs) and group {name} (committed offset)"
                );
                Some(Self {
                    topic: name.to_string(),
                    group: name.to_string(),
                    leader,
                    coordinator,
                    committed,
                })
            }
            None => {
                eprintln!(
                    "franzy fuzz: invariants not watched (setting up their topic and group failed: {})",
                    conversations.skipped.join("; ")
                );
                None
            }
        }
    }

    async fn run(self, shared: Arc<Shared>) {
        let mut high_watermark = -1i64;
        let cluster = shared.cluster.clone();
        let mut leader: Option<Wire> = None;
        let mut coordinator: Option<Wire> = None;
        while !shared.stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if leader.is_none() {
                leader = Wire::connect(&cluster.brokers[self.leader], shared.deadline)
                    .await
                    .ok();
            }
            if coordinator.is_none() {
                coordinator = Wire::connect(&cluster.brokers[self.coordinator], shared.deadline)
                    .await
                    .ok();
            }
            if let Some(wire) = leader.as_mut() {
                match corpus::watch_fetch(wire, &cluster.versions, &self.topic, shared.deadline)
                    .await
                {
                    Ok((hw, records)) => {
                        if hw < high_watermark {
                            self.report(
                                &shared,
                                format!(
                                    "high watermark of {}/0 went from {high_watermark} to {hw}",
                                    self.topic
                                ),
                            );
                        }
                        high_watermark = high_watermark.max(hw);
                        if let Some(problem) = bad_batch(&records) {
                            self.report(
                                &shared,
                                format!("a fetched batch of {}/0 {problem}", self.topic),
                            );
                        }
                    }
                    Err(_) => leader = None,
                }
            }
            if let Some(wire) = coordinator.as_mut() {
                match corpus::watch_committed(
                    wire,
                    &cluster.versions,
                    &self.group,
                    &self.topic,
                    shared.deadline,
                )
                .await
                {
                    Ok(offset) if offset != self.committed => self.report(
                        &shared,
                        format!(
                            "committed offset of group {} on {}/0 was {} and is now {offset}",
                            self.group, self.topic, self.committed
                        ),
                    ),
                    Ok(_) => {}
                    Err(_) => coordinator = None,
                }
            }
        }
    }

    fn report(&self, shared: &Shared, what: String) {
        shared.report(RawFinding {
            kind: FindingKind::Invariant(what.clone()),
            detail: what,
            broker: self.leader,
            api: "invariant".into(),
            before: Vec::new(),
            request: Vec::new(),
        });
    }
}

/// Why the batches at the start of `records` are bad (a CRC that fails), if they are.
fn bad_batch(records: &Bytes) -> Option<String> {
    let mut at = 0;
    while records.len() - at >= BATCH_HEADER_LEN {
        match validate_batch(&records[at..]) {
            Ok(header) => at += header.total_len(),
            // The last batch may be cut at the fetch's byte limit: not an error.
            Err(franzy::proto::error::BatchError::Truncated { .. }) => return None,
            Err(error) => return Some(format!("at byte {at} fails its checks: {error}")),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetched_batches_are_checked_but_a_cut_last_one_is_not_an_error() {
        let one = corpus::batch(-1, -1, -1, false);
        let mut two = one.to_vec();
        two.extend_from_slice(&one);
        assert_eq!(bad_batch(&Bytes::from(two.clone())), None);
        // The fetch's byte limit cut the second batch.
        assert_eq!(bad_batch(&Bytes::from(two[..two.len() - 5].to_vec())), None);
        // A flipped bit in the first batch's records fails its CRC.
        let mut corrupt = two.clone();
        let last = one.len() - 1;
        corrupt[last] ^= 0x01;
        let problem = bad_batch(&Bytes::from(corrupt)).expect("a CRC failure");
        assert!(problem.starts_with("at byte 0 "), "{problem}");
    }

    #[test]
    fn only_loopback_and_private_networks_are_fuzzed_without_consent() {
        for ok in [
            "127.0.0.1:9092",
            "10.1.2.3:9092",
            "192.168.0.7:1",
            "172.20.0.1:9092",
            "[::1]:9092",
            "[fd00::1]:9092",
        ] {
            assert_eq!(check_address(ok, false), Ok(()), "{ok}");
        }
        for refused in ["8.8.8.8:9092", "172.32.0.1:9092", "[2001:db8::1]:9092"] {
            let error = check_address(refused, false).expect_err(refused);
            assert!(error.contains("--i-own-this-cluster"), "{error}");
            assert_eq!(check_address(refused, true), Ok(()));
        }
    }

    #[test]
    fn apis_are_named_as_kafka_names_them() {
        assert_eq!(
            focus(&["produce".into(), "Fetch".into()]),
            Ok(Some(vec![ApiKey::Produce, ApiKey::Fetch]))
        );
        assert_eq!(focus(&[]), Ok(None));
        assert!(focus(&["Frobnicate".into()]).is_err());
    }
}
