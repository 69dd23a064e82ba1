//! Version negotiation (KIP-35, KIP-511): for each API, use the highest version that both the
//! client and the broker support; if the ranges do not overlap, the API cannot be used with
//! that broker.

use kafka_protocol::messages::ApiKey;
pub use kafka_protocol::protocol::VersionRange;

/// The highest version in both `ours` and `theirs`, or `None` when they do not overlap.
pub fn negotiate(ours: VersionRange, theirs: VersionRange) -> Option<i16> {
    let max = ours.max.min(theirs.max);
    let min = ours.min.max(theirs.min);
    (min <= max).then_some(max)
}

/// The versions this codec can encode for `api`. kafka-protocol's `ApiKey::valid_versions`
/// lists OffsetCommit and OffsetFetch v10 (KIP-848's topic ids), which its generated
/// request structs cannot encode; a broker advertising them would otherwise be sent a
/// request that fails to build.
pub fn codec_versions(api: ApiKey) -> VersionRange {
    use kafka_protocol::messages::{OffsetCommitRequest, OffsetFetchRequest};
    use kafka_protocol::protocol::Message;
    match api {
        ApiKey::OffsetCommit => <OffsetCommitRequest as Message>::VERSIONS,
        ApiKey::OffsetFetch => <OffsetFetchRequest as Message>::VERSIONS,
        _ => api.valid_versions(),
    }
}

/// What a broker said it supports, per API, as read from an ApiVersions response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerVersions {
    ranges: Vec<(i16, VersionRange)>,
}

impl BrokerVersions {
    /// Builds the table from `(api_key, min, max)` triples as the response lists them.
    /// Unknown API keys are kept (a newer broker may list APIs we do not know) but never
    /// chosen.
    pub fn new(entries: impl IntoIterator<Item = (i16, i16, i16)>) -> Self {
        let mut ranges: Vec<(i16, VersionRange)> = entries
            .into_iter()
            .map(|(key, min, max)| (key, VersionRange { min, max }))
            .collect();
        ranges.sort_by_key(|(key, _)| *key);
        ranges.dedup_by_key(|(key, _)| *key);
        Self { ranges }
    }

    /// The broker's range for `api`, if it listed one.
    pub fn range(&self, api: ApiKey) -> Option<VersionRange> {
        let key = api as i16;
        self.ranges
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .map(|i| self.ranges[i].1)
    }

    /// The version to use for `api`: the highest that both this codec and the broker support.
    pub fn choose(&self, api: ApiKey) -> Option<i16> {
        negotiate(codec_versions(api), self.range(api)?)
    }

    /// As [`BrokerVersions::choose`], but no higher than `max` (a client that does not speak
    /// what later versions mean, e.g. a transactional producer without KIP-890 part 2).
    pub fn choose_at_most(&self, api: ApiKey, max: i16) -> Option<i16> {
        let ours = api.valid_versions();
        let capped = VersionRange {
            min: ours.min,
            max: ours.max.min(max),
        };
        negotiate(capped, self.range(api)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_common_version_or_none() {
        let r = |min, max| VersionRange { min, max };
        assert_eq!(negotiate(r(0, 9), r(3, 12)), Some(9));
        assert_eq!(negotiate(r(3, 12), r(0, 9)), Some(9));
        assert_eq!(negotiate(r(0, 2), r(3, 12)), None);
        assert_eq!(negotiate(r(4, 4), r(4, 4)), Some(4));
    }

    #[test]
    fn versions_the_codec_cannot_encode_are_never_chosen() {
        let commit = ApiKey::OffsetCommit as i16;
        let fetch = ApiKey::OffsetFetch as i16;
        let table = BrokerVersions::new([(commit, 2, 10), (fetch, 1, 10)]);
        assert_eq!(table.choose(ApiKey::OffsetCommit), Some(9));
        assert_eq!(table.choose(ApiKey::OffsetFetch), Some(9));
    }

    #[test]
    fn broker_table_ignores_apis_it_does_not_list() {
        let produce = ApiKey::Produce as i16;
        let table = BrokerVersions::new([(produce, 0, 9), (999, 0, 1)]);
        assert_eq!(table.choose(ApiKey::Produce), Some(9));
        assert_eq!(table.choose(ApiKey::Fetch), None);
        assert_eq!(table.choose_at_most(ApiKey::Produce, 7), Some(7));
        assert_eq!(table.choose_at_most(ApiKey::Produce, 11), Some(9));
        assert_eq!(
            table.choose_at_most(ApiKey::Produce, 2),
            None,
            "below both ranges"
        );
    }
}
