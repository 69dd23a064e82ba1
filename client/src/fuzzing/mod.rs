//! Structure-aware generators for fuzzing Kafka implementations (cargo feature `fuzzing`).
//!
//! Everything here draws from an [`arbitrary::Unstructured`], so the same generators serve a
//! cargo-fuzz target (`fuzz_target!(|request: GeneratedRequest| ...)`), a proptest (feed it
//! random bytes) and `franzy fuzz` (feed it a seeded generator's bytes).
//!
//! | item | what |
//! |---|---|
//! | [`ArbitraryAt`] | every request and response struct kafka-protocol defines, at a given version: fields by their versions, tagged fields only at flexible versions |
//! | [`GeneratedRequest`], [`GeneratedResponse`] | a whole message of any API at any version, with its header, ready to frame |
//! | [`GeneratedBatch`], [`ProducerRun`] | valid record batches: every codec, headers, control records, producer ids, epochs and sequences; runs of one producer's batches, in order or out of it |
//! | [`Mutation`], [`FieldMap`] | targeted damage to an encoded frame: lengths, counts, varints, CRCs, offsets at the `i64` edges, found by watching a decoder read the frame |
//!
//! ```text
//! Unstructured ── ArbitraryAt (per version) ── GeneratedRequest ── encode ── frame bytes
//!                 GeneratedBatch ─────────────────┘ (Produce records)          │
//!                                                   FieldMap (decoder's reads) ─┴─ Mutation ── bytes to send
//! ```

mod batch;
mod mutate;

pub use arbitrary;
pub use batch::{Disorder, GeneratedBatch, ProducerRun};
pub use kafka_protocol::fuzzing::{
    arbitrary_request, arbitrary_response, request_versions, response_versions, ArbitraryAt,
    MAX_BYTES, MAX_LIST,
};
pub use mutate::{Field, FieldKind, FieldMap, Mutation};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use crate::proto::message::{encode_request, encode_response, EncodeError};

/// Every API key kafka-protocol knows, in key order.
pub fn api_keys() -> Vec<ApiKey> {
    let mut keys: Vec<ApiKey> = ApiKey::iter().collect();
    keys.sort_by_key(|key| *key as i16);
    keys
}

/// A request of one API at one version: header and body.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedRequest {
    /// The API.
    pub api_key: ApiKey,
    /// The header; its API key and version say what the body is.
    pub header: RequestHeader,
    /// The body.
    pub body: RequestKind,
}

impl GeneratedRequest {
    /// A request of `api_key` at `version` (which must be in [`request_versions`]).
    ///
    /// Produce requests carry valid record batches ([`GeneratedBatch`]) in most partitions,
    /// so that they reach a broker's batch validation and producer-state checks.
    pub fn arbitrary_for(
        u: &mut Unstructured<'_>,
        api_key: ApiKey,
        version: i16,
    ) -> arbitrary::Result<Self> {
        let header_version = api_key.request_header_version(version);
        let mut header = RequestHeader::arbitrary_at(u, header_version)?;
        header.request_api_key = api_key as i16;
        header.request_api_version = version;
        let mut body = arbitrary_request(u, api_key, version)?;
        if let RequestKind::Produce(produce) = &mut body {
            for topic in &mut produce.topic_data {
                for partition in &mut topic.partition_data {
                    if u.ratio(3, 4)? {
                        let mut records = Vec::new();
                        for _ in 0..u.int_in_range(1..=2)? {
                            records.extend_from_slice(&GeneratedBatch::arbitrary(u)?.encode());
                        }
                        partition.records = Some(records.into());
                    }
                }
            }
        }
        Ok(Self {
            api_key,
            header,
            body,
        })
    }

    /// The version.
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    /// The request as a frame: size, header, body.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        encode_request(&mut out, &self.header, &self.body)?;
        Ok(out.freeze())
    }
}

impl<'a> Arbitrary<'a> for GeneratedRequest {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let api_key = *u.choose(&api_keys())?;
        let range = request_versions(api_key);
        let version = u.int_in_range(range.min..=range.max)?;
        Self::arbitrary_for(u, api_key, version)
    }
}

/// A response of one API at one version, with the correlation id its header carries.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedResponse {
    /// The API of the request answered.
    pub api_key: ApiKey,
    /// The version of the request answered.
    pub version: i16,
    /// The correlation id of the request answered.
    pub correlation_id: i32,
    /// The body.
    pub body: ResponseKind,
}

impl GeneratedResponse {
    /// A response of `api_key` at `version` (which must be in [`response_versions`]).
    pub fn arbitrary_for(
        u: &mut Unstructured<'_>,
        api_key: ApiKey,
        version: i16,
    ) -> arbitrary::Result<Self> {
        Ok(Self {
            api_key,
            version,
            correlation_id: i32::arbitrary_at(u, version)?,
            body: arbitrary_response(u, api_key, version)?,
        })
    }

    /// The response as a frame: size, header, body.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        encode_response(
            &mut out,
            self.api_key,
            self.version,
            self.correlation_id,
            &self.body,
        )?;
        Ok(out.freeze())
    }
}

impl<'a> Arbitrary<'a> for GeneratedResponse {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let api_key = *u.choose(&api_keys())?;
        let range = response_versions(api_key);
        let version = u.int_in_range(range.min..=range.max)?;
        Self::arbitrary_for(u, api_key, version)
    }
}

#[cfg(test)]
mod tests;
