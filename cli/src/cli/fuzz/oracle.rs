//! What a broker owes a request, and whether what came back pays it. Pure: no IO.
//!
//! Kafka answers every request it can parse, at a version it advertised, except a Produce
//! with `acks=0`; it closes the connection on anything it cannot parse (an unknown API key,
//! an unsupported version other than ApiVersions', a malformed header or body). So a close is
//! a finding only when the request decodes with the protocol's own schemas at a version the
//! broker advertised; a response must then decode at that version and echo the correlation
//! id; and every request must be answered or the connection closed within the deadline, plus
//! whatever time the request itself asks the broker to wait.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use franzy::proto::message::{decode_request, decode_response};
use franzy::proto::{ApiKey, RequestKind};

use super::wire::Reply;

/// The versions a broker advertised, narrowed to those the codec knows.
pub type Versions = HashMap<ApiKey, (i16, i16)>;

/// Longest wait a request may ask for that the fuzzer still waits out; a request asking for
/// more is given up on at the deadline without a finding.
pub const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// What the broker owes a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The API and version the request decodes as, if it does.
    pub request: Option<(ApiKey, i16)>,
    /// The correlation id in its header (0 if it has none).
    pub correlation_id: i32,
    /// Kafka answers it (it decodes, at an advertised version, and is not `acks=0`).
    pub must_answer: bool,
    /// Kafka sends nothing back (Produce with `acks=0`); it may also close.
    pub no_answer: bool,
    /// How long the request itself may make the broker wait (Fetch `max_wait_ms`, JoinGroup's
    /// rebalance timeout, ...); `None` when longer than [`LONGEST_WAIT`].
    pub own_wait: Option<Duration>,
}

/// What happened, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A response that decodes and echoes the correlation id.
    Answered,
    /// Nothing, as owed (acks=0), or a close where Kafka would close too.
    Closed,
    /// A request that asks for longer than [`LONGEST_WAIT`] was not answered by then.
    GaveUp,
    /// Nothing owed, nothing came (acks=0).
    Silent,
    /// A finding.
    Finding(FindingKind),
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FindingKind {
    /// The connection closed without a response where Kafka answers.
    ClosedWithoutResponse,
    /// The response did not decode.
    Undecodable(String),
    /// The response carried another correlation id.
    WrongCorrelationId {
        /// The request's.
        expected: i32,
        /// The response's.
        got: i32,
    },
    /// No response and no close within the deadline.
    Hang,
    /// The broker stopped accepting connections.
    Unreachable(String),
    /// A state invariant broke (high watermark backwards, committed offset lost, bad CRC).
    Invariant(String),
}

impl FindingKind {
    /// A short name, used in file names and the replay's verdict.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ClosedWithoutResponse => "closed-without-response",
            Self::Undecodable(_) => "undecodable-response",
            Self::WrongCorrelationId { .. } => "wrong-correlation-id",
            Self::Hang => "hang",
            Self::Unreachable(_) => "unreachable",
            Self::Invariant(_) => "invariant",
        }
    }
}

/// What the broker owes `frame` (size prefix included).
pub fn expect(frame: &[u8], versions: &Versions) -> Expectation {
    let body = Bytes::copy_from_slice(frame.get(4..).unwrap_or_default());
    let correlation_id = body
        .get(4..8)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let announced = frame
        .get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let whole = announced.is_some_and(|size| usize::try_from(size).ok() == Some(body.len()));
    let mut expectation = Expectation {
        request: None,
        correlation_id,
        must_answer: false,
        no_answer: false,
        own_wait: Some(Duration::ZERO),
    };
    if !whole {
        // A size prefix that lies: the broker waits for bytes that never come, or reads the
        // next request's bytes as this one's. Either way it owes nothing but a close (or the
        // idle timeout) - which the fuzzer does not wait for.
        expectation.own_wait = None;
        return expectation;
    }
    let Ok(request) = decode_request(body) else {
        return expectation;
    };
    let version = request.header.request_api_version;
    expectation.request = Some((request.api_key, version));
    let advertised = versions
        .get(&request.api_key)
        .is_some_and(|(min, max)| (*min..=*max).contains(&version));
    let acks_zero = matches!(&request.body, RequestKind::Produce(p) if p.acks == 0);
    expectation.must_answer = advertised && !acks_zero;
    expectation.no_answer = advertised && acks_zero;
    expectation.own_wait = own_wait(&request.body);
    expectation
}

/// How long a request may legitimately keep the broker from answering.
fn own_wait(body: &RequestKind) -> Option<Duration> {
    let ms = |value: i64| -> Option<Duration> {
        let wait = Duration::from_millis(u64::try_from(value.max(0)).unwrap_or(0));
        (wait <= LONGEST_WAIT).then_some(wait)
    };
    match body {
        RequestKind::Fetch(f) => ms(i64::from(f.max_wait_ms)),
        RequestKind::ShareFetch(f) => ms(i64::from(f.max_wait_ms)),
        RequestKind::Produce(p) => ms(i64::from(p.timeout_ms)),
        // A member waits for the others to join, at most the rebalance (or session) timeout.
        RequestKind::JoinGroup(j) => {
            ms(i64::from(j.rebalance_timeout_ms.max(j.session_timeout_ms)))
        }
        // A follower waits for the leader's assignment: as long as the group's rebalance,
        // which this request does not say.
        RequestKind::SyncGroup(_) => None,
        RequestKind::CreateTopics(c) => ms(i64::from(c.timeout_ms)),
        RequestKind::DeleteTopics(d) => ms(i64::from(d.timeout_ms)),
        RequestKind::CreatePartitions(c) => ms(i64::from(c.timeout_ms)),
        RequestKind::DeleteRecords(d) => ms(i64::from(d.timeout_ms)),
        RequestKind::ElectLeaders(e) => ms(i64::from(e.timeout_ms)),
        RequestKind::AlterPartitionReassignments(a) => ms(i64::from(a.timeout_ms)),
        _ => Some(Duration::ZERO),
    }
}

/// Judges `reply` to a request with `expectation`.
pub fn judge(expectation: &Expectation, reply: &Reply) -> Verdict {
    match reply {
        Reply::Frame(frame) => judge_frame(expectation, frame),
        Reply::BadSize(size) => Verdict::Finding(FindingKind::Undecodable(format!(
            "response frame size {size}"
        ))),
        Reply::Closed if expectation.must_answer => {
            Verdict::Finding(FindingKind::ClosedWithoutResponse)
        }
        Reply::Closed => Verdict::Closed,
        Reply::TimedOut if expectation.no_answer => Verdict::Silent,
        Reply::TimedOut if expectation.own_wait.is_none() => Verdict::GaveUp,
        Reply::TimedOut => Verdict::Finding(FindingKind::Hang),
    }
}

fn judge_frame(expectation: &Expectation, frame: &Bytes) -> Verdict {
    let Some(got) = frame
        .get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return Verdict::Finding(FindingKind::Undecodable(format!(
            "response frame of {} bytes",
            frame.len()
        )));
    };
    if got != expectation.correlation_id {
        return Verdict::Finding(FindingKind::WrongCorrelationId {
            expected: expectation.correlation_id,
            got,
        });
    }
    let Some((api_key, version)) = expectation.request else {
        // The request did not decode, yet the broker answered: lenient, not wrong. An
        // ApiVersions at an unknown version is answered in v0 (KIP-511).
        return Verdict::Answered;
    };
    // KIP-511: an ApiVersions the broker cannot serve is answered in v0.
    let decoded = decode_response(frame.clone(), api_key, version).or_else(|error| {
        if api_key == ApiKey::ApiVersions {
            decode_response(frame.clone(), api_key, 0)
        } else {
            Err(error)
        }
    });
    match decoded {
        Ok(_) => Verdict::Answered,
        Err(error) => Verdict::Finding(FindingKind::Undecodable(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use franzy::kafka_protocol::messages::{MetadataRequest, MetadataResponse, ProduceRequest};
    use franzy::proto::message::encode_request;
    use franzy::proto::message::encode_response;
    use franzy::proto::{RequestHeader, ResponseKind};

    fn versions() -> Versions {
        [(ApiKey::Metadata, (0, 12)), (ApiKey::Produce, (3, 11))]
            .into_iter()
            .collect()
    }

    fn frame(api_key: ApiKey, version: i16, body: RequestKind) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(9);
        let mut out = bytes::BytesMut::new();
        encode_request(&mut out, &header, &body).expect("encodes");
        out.to_vec()
    }

    #[test]
    fn a_close_is_a_finding_only_for_requests_kafka_answers() {
        let metadata = frame(ApiKey::Metadata, 12, MetadataRequest::default().into());
        let owed = expect(&metadata, &versions());
        assert!(owed.must_answer);
        assert_eq!(
            judge(&owed, &Reply::Closed),
            Verdict::Finding(FindingKind::ClosedWithoutResponse)
        );
        assert_eq!(
            judge(&owed, &Reply::TimedOut),
            Verdict::Finding(FindingKind::Hang)
        );
        // Not advertised: closing is what Kafka does.
        let newer = frame(ApiKey::Produce, 12, ProduceRequest::default().into());
        assert!(!expect(&newer, &versions()).must_answer);
        assert_eq!(
            judge(&expect(&newer, &versions()), &Reply::Closed),
            Verdict::Closed
        );
        // Truncated: Kafka closes too.
        let mut cut = metadata.clone();
        cut.truncate(cut.len() - 1);
        let size = (cut.len() - 4) as u32;
        cut[..4].copy_from_slice(&size.to_be_bytes());
        assert_eq!(
            judge(&expect(&cut, &versions()), &Reply::Closed),
            Verdict::Closed
        );
        // acks=0: silence is owed.
        let fire = frame(
            ApiKey::Produce,
            9,
            ProduceRequest::default().with_acks(0).into(),
        );
        assert_eq!(
            judge(&expect(&fire, &versions()), &Reply::TimedOut),
            Verdict::Silent
        );
    }

    #[test]
    fn responses_must_decode_and_echo_the_correlation_id() {
        let metadata = frame(ApiKey::Metadata, 12, MetadataRequest::default().into());
        let owed = expect(&metadata, &versions());
        let answer = |correlation_id| {
            let mut out = bytes::BytesMut::new();
            let body = ResponseKind::Metadata(MetadataResponse::default());
            encode_response(&mut out, ApiKey::Metadata, 12, correlation_id, &body)
                .expect("encodes");
            out.freeze().slice(4..)
        };
        assert_eq!(judge(&owed, &Reply::Frame(answer(9))), Verdict::Answered);
        assert_eq!(
            judge(&owed, &Reply::Frame(answer(10))),
            Verdict::Finding(FindingKind::WrongCorrelationId {
                expected: 9,
                got: 10
            })
        );
        let short = answer(9).slice(..6);
        assert!(matches!(
            judge(&owed, &Reply::Frame(short)),
            Verdict::Finding(FindingKind::Undecodable(_))
        ));
    }
}
