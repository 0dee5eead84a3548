//! What the Describe and List calls show of the catalog: DescribeStream,
//! DescribeStreamSummary, ListStreams and ListShards, with their paging and ListShards' filters.

use super::{
    Catalog, Lifecycle, Shard, Stream, keys_after, next_token_error, page_size,
    parse_shard_id_like_aws, take_page,
};
use crate::api::{
    DescribeStreamInput, ListShardsInput, ListShardsOutput, ListStreamsInput, ListStreamsOutput,
    ShardDescription, ShardFilter, StreamDescription, StreamDescriptionSummary, StreamSummary,
};
use crate::error::{ErrorKind, KinesisError};
use crate::limits;
use crate::next_token::{ListShardsToken, ListStreamsToken};

/// Whether ListShards' `filter` keeps `shard`, as AWS documents the filters: AT_LATEST keeps
/// open shards; AT_TIMESTAMP keeps shards open at that time; FROM_TIMESTAMP keeps open shards
/// and those closed at or after that time; the TRIM_HORIZON forms are the same taken at the trim
/// horizon (now minus the retention period), which FROM_TIMESTAMP is also raised to.
fn shard_filter_keeps(stream: &Stream, shard: &Shard, filter: &ShardFilter, now_ms: u64) -> bool {
    let created_ms = shard.created_s.saturating_mul(1000);
    let closed_ms = stream
        .shard_closed_s(shard.index)
        .map(|s| s.saturating_mul(1000));
    let retention_ms = u64::from(stream.retention_period_hours) * 3_600_000;
    let trim_horizon_ms = now_ms.saturating_sub(retention_ms);
    let open_at = |at_ms: u64| {
        // A time before the stream existed means "from the start": the first shards.
        let earliest_ms = stream
            .shards
            .iter()
            .map(|s| s.created_s.saturating_mul(1000))
            .min()
            .unwrap_or(0);
        let at_ms = at_ms.max(earliest_ms);
        created_ms <= at_ms && closed_ms.is_none_or(|closed| closed >= at_ms)
    };
    let open_since =
        |from_ms: u64| closed_ms.is_none_or(|closed| closed >= from_ms.max(trim_horizon_ms));
    match filter {
        ShardFilter::AfterShardId(shard_id) => {
            parse_shard_id_like_aws(shard_id).is_none_or(|after| shard.index > after)
        }
        ShardFilter::AtTrimHorizon => open_at(trim_horizon_ms),
        ShardFilter::FromTrimHorizon => open_since(trim_horizon_ms),
        ShardFilter::AtLatest => shard.closed_at_position.is_none(),
        ShardFilter::AtTimestamp(at_ms) => open_at(*at_ms),
        ShardFilter::FromTimestamp(from_ms) => open_since(*from_ms),
    }
}

/// The index after which a listing starts. An id that does not parse starts from the
/// beginning, as AWS does.
fn exclusive_start_index(exclusive_start_shard_id: Option<&str>) -> Option<u32> {
    exclusive_start_shard_id.and_then(parse_shard_id_like_aws)
}

impl Catalog {
    /// Whether DescribeStream shows the shards: not while CREATING, and not while DELETING a
    /// stream that was deleted before it ever became ACTIVE (AWS shows `Shards: []` then too).
    pub(crate) fn shards_visible(&self, stream: &Stream, now_ms: u64) -> bool {
        match stream.lifecycle {
            Lifecycle::Creating { active_at_ms } => now_ms >= active_at_ms,
            Lifecycle::Deleting { gone_at_ms } => {
                let deleted_at_ms = gone_at_ms.saturating_sub(self.config.delete_delay_ms);
                let active_at_ms = stream
                    .created_ms
                    .saturating_add(self.config.create_delay_ms);
                deleted_at_ms >= active_at_ms
            }
            Lifecycle::Active | Lifecycle::Updating { .. } => true,
        }
    }

    pub fn describe_stream(
        &self,
        input: DescribeStreamInput,
        now_ms: u64,
    ) -> Result<StreamDescription, KinesisError> {
        let stream = self.found(&input.stream_name, now_ms)?;
        let limit = page_size(input.limit, limits::DESCRIBE_STREAM_SHARDS_MAX);
        let after = exclusive_start_index(input.exclusive_start_shard_id.as_deref());
        let (shards, has_more_shards) = if self.shards_visible(stream, now_ms) {
            let remaining = stream
                .shards
                .iter()
                .filter(|shard| after.is_none_or(|after| shard.index > after));
            let (page, has_more_shards) = take_page(remaining, limit);
            let page: Vec<ShardDescription> = page
                .into_iter()
                .map(|shard| stream.describe_shard(shard))
                .collect();
            (page, has_more_shards)
        } else {
            (Vec::new(), false)
        };
        Ok(StreamDescription {
            stream_name: stream.name.clone(),
            stream_arn: stream.arn(&self.config.region, &self.config.account_id),
            stream_status: stream.status(now_ms),
            stream_mode: stream.stream_mode(),
            shards,
            has_more_shards,
            retention_period_hours: stream.retention_period_hours,
            stream_creation_timestamp_ms: stream.created_ms,
            shard_level_metrics: stream.shard_level_metrics.clone(),
            encryption_type: stream.control.encryption_type(),
            key_id: stream.control.encryption_key_id.clone(),
        })
    }

    pub fn describe_stream_summary(
        &self,
        stream_name: &str,
        now_ms: u64,
    ) -> Result<StreamDescriptionSummary, KinesisError> {
        let stream = self.found(stream_name, now_ms)?;
        // Consistent with DescribeStream, which shows no shards while they are not visible.
        let open_shard_count = if self.shards_visible(stream, now_ms) {
            stream.open_shard_count()
        } else {
            0
        };
        Ok(StreamDescriptionSummary {
            stream_name: stream.name.clone(),
            stream_arn: stream.arn(&self.config.region, &self.config.account_id),
            stream_status: stream.status(now_ms),
            stream_mode: stream.stream_mode(),
            retention_period_hours: stream.retention_period_hours,
            stream_creation_timestamp_ms: stream.created_ms,
            shard_level_metrics: stream.shard_level_metrics.clone(),
            encryption_type: stream.control.encryption_type(),
            key_id: stream.control.encryption_key_id.clone(),
            open_shard_count,
            consumer_count: stream.control.consumer_count(now_ms),
            max_record_size_kib: stream.max_record_size_kib,
        })
    }

    pub fn list_streams(
        &self,
        input: ListStreamsInput,
        now_ms: u64,
    ) -> Result<ListStreamsOutput, KinesisError> {
        let limit = page_size(input.limit, limits::LIST_STREAMS_MAX);
        // A NextToken wins over ExclusiveStartStreamName: it is the newer of the two cursors.
        let after = match &input.next_token {
            Some(token) => Some(
                ListStreamsToken::decode(token, now_ms)
                    .map_err(next_token_error)?
                    .last_stream_name,
            ),
            None => input.exclusive_start_stream_name.clone(),
        };
        let remaining = self
            .streams
            .range::<str, _>(keys_after(after.as_deref()))
            .filter(|(key, stream)| stream.is_live_as(key, now_ms))
            // Services' own streams (a DirectPut delivery stream's records) are not the user's.
            .filter(|(key, _)| !crate::internal_stream::is_internal(key))
            .map(|(_, stream)| stream);
        let (page, has_more_streams) = take_page(remaining, limit);
        let next_token = match page.last() {
            Some(last) if has_more_streams => Some(
                ListStreamsToken {
                    issued_ms: now_ms,
                    last_stream_name: last.name.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(ListStreamsOutput {
            stream_names: page.iter().map(|stream| stream.name.clone()).collect(),
            has_more_streams,
            next_token,
            stream_summaries: page
                .iter()
                .map(|stream| StreamSummary {
                    stream_name: stream.name.clone(),
                    stream_arn: stream.arn(&self.config.region, &self.config.account_id),
                    stream_status: stream.status(now_ms),
                    stream_mode: stream.stream_mode(),
                    stream_creation_timestamp_ms: stream.created_ms,
                })
                .collect(),
        })
    }

    pub fn list_shards(
        &self,
        input: ListShardsInput,
        now_ms: u64,
    ) -> Result<ListShardsOutput, KinesisError> {
        let (stream, after, filter) = match (&input.stream_name, &input.next_token) {
            (None, None) => {
                return Err(KinesisError::invalid_argument(
                    "Either NextToken or StreamName should be provided.",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(KinesisError::invalid_argument(
                    "NextToken and StreamName cannot be provided together.",
                ));
            }
            (None, Some(token)) => {
                if input.exclusive_start_shard_id.is_some() {
                    return Err(KinesisError::invalid_argument(
                        "NextToken and ExclusiveStartShardId cannot be provided together.",
                    ));
                }
                if input.stream_creation_timestamp_ms.is_some() {
                    return Err(KinesisError::invalid_argument(
                        "NextToken and StreamCreationTimestamp cannot be provided together.",
                    ));
                }
                let token = ListShardsToken::decode(token, now_ms).map_err(next_token_error)?;
                let stream = self.found(&token.stream_name, now_ms)?;
                // The stream was deleted and created again since the first page: the listing
                // the token continues no longer exists, and the client must start over.
                if stream.created_ms != token.stream_created_ms {
                    return Err(KinesisError::new(
                        ErrorKind::ExpiredNextToken,
                        format!(
                            "The NextToken is no longer valid: stream {} under account {} was recreated since it was issued.",
                            stream.name, self.config.account_id
                        ),
                    ));
                }
                (stream, Some(token.last_shard_index), token.shard_filter)
            }
            (Some(stream_name), None) => {
                let stream = self.found(stream_name, now_ms)?;
                // StreamCreationTimestamp names one incarnation; the wire carries seconds, so
                // compare at that precision.
                if let Some(created_ms) = input.stream_creation_timestamp_ms
                    && created_ms / 1000 != stream.created_ms / 1000
                {
                    return Err(self.not_found(stream_name));
                }
                let after = exclusive_start_index(input.exclusive_start_shard_id.as_deref());
                (stream, after, input.shard_filter.clone())
            }
        };
        stream.check_readable(&self.config.account_id, now_ms)?;
        let limit = page_size(input.max_results, limits::LIST_SHARDS_MAX);
        let remaining = stream.shards.iter().filter(|shard| {
            after.is_none_or(|after| shard.index > after)
                // No filter means FROM_TRIM_HORIZON, AWS's default.
                && shard_filter_keeps(
                    stream,
                    shard,
                    filter.as_ref().unwrap_or(&ShardFilter::FromTrimHorizon),
                    now_ms,
                )
        });
        let (page, has_more_shards) = take_page(remaining, limit);
        let next_token = match page.last() {
            Some(last) if has_more_shards => Some(
                ListShardsToken {
                    issued_ms: now_ms,
                    stream_name: stream.name.clone(),
                    stream_created_ms: stream.created_ms,
                    last_shard_index: last.index,
                    shard_filter: filter.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(ListShardsOutput {
            shards: page
                .into_iter()
                .map(|shard| stream.describe_shard(shard))
                .collect(),
            next_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::*;
    use crate::catalog::CatalogConfig;
    use crate::catalog::test_support::*;
    use crate::error::ErrorKind;
    use crate::sequence_number::{self, SequenceNumber};
    use crate::shard_id::format_shard_id;
    use proptest::prelude::*;

    #[test]
    fn describe_stream_shows_no_shards_while_creating_and_all_once_active() {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", 3, T0);
        let creating = describe(&catalog, "s", T0 + 1).expect("described");
        assert_eq!(creating.stream_status, StreamStatus::Creating);
        assert!(creating.shards.is_empty());
        assert!(!creating.has_more_shards);
        let active = describe(&catalog, "s", T0 + 500).expect("described");
        assert_eq!(active.stream_status, StreamStatus::Active);
        assert_eq!(
            shard_ids(&active.shards),
            vec![
                "shardId-000000000000",
                "shardId-000000000001",
                "shardId-000000000002"
            ]
        );
        assert_eq!(
            active.stream_arn,
            "arn:aws:kinesis:us-east-1:000000000000:stream/s"
        );
        assert_eq!(active.retention_period_hours, 24);
        assert_eq!(active.encryption_type, EncryptionType::None);
        assert!(active.shard_level_metrics.is_empty());
        assert_eq!(active.stream_creation_timestamp_ms, T0);
    }

    #[test]
    fn describe_stream_sequence_ranges_use_the_shard_creation_time_and_index() {
        let (mut catalog, now) = active_catalog(2);
        split_shard_zero(&mut catalog, T0 / 1000 + 60);
        let description = describe(&catalog, "s", now).expect("described");
        let created_s = T0 / 1000 - 2;
        let start =
            SequenceNumber::parse(&description.shards[1].starting_sequence_number).expect("ours");
        assert_eq!(start, SequenceNumber::new(created_s, 1, 0, created_s));
        assert_eq!(description.shards[1].ending_sequence_number, None);
        let end = description.shards[0]
            .ending_sequence_number
            .as_deref()
            .expect("shard 0 is closed");
        let end = SequenceNumber::parse(end).expect("ours");
        // The children are dated one second after the parent's last second, as AWS does.
        assert_eq!(
            end,
            SequenceNumber::new(created_s, 0, sequence_number::POSITION_MAX, T0 / 1000 + 59)
        );
        assert_eq!(
            description.shards[2].parent_shard_id.as_deref(),
            Some("shardId-000000000000")
        );
    }

    #[test]
    fn describe_stream_pages_after_the_exclusive_start_shard_id() {
        let (catalog, now) = active_catalog(5);
        let page = catalog
            .describe_stream(
                DescribeStreamInput {
                    stream_name: "s".into(),
                    limit: Some(2),
                    exclusive_start_shard_id: Some("shardId-000000000001".into()),
                },
                now,
            )
            .expect("described");
        assert_eq!(
            shard_ids(&page.shards),
            vec!["shardId-000000000002", "shardId-000000000003"]
        );
        assert!(page.has_more_shards);
        let from_start = catalog
            .describe_stream(
                DescribeStreamInput {
                    stream_name: "s".into(),
                    limit: Some(10_000),
                    exclusive_start_shard_id: Some("not a shard".into()),
                },
                now,
            )
            .expect("described");
        assert_eq!(from_start.shards.len(), 5);
        assert!(!from_start.has_more_shards);
    }

    #[test]
    fn describe_stream_of_a_missing_stream_is_not_found() {
        let catalog = Catalog::new(config());
        assert_eq!(
            describe(&catalog, "nope", T0),
            Err(KinesisError::stream_not_found("nope", ACCOUNT))
        );
    }

    #[test]
    fn describe_stream_summary_counts_open_shards() {
        let (mut catalog, now) = active_catalog(3);
        split_shard_zero(&mut catalog, T0 / 1000);
        let summary = catalog
            .describe_stream_summary("s", now)
            .expect("described");
        assert_eq!(summary.open_shard_count, 4);
        assert_eq!(summary.consumer_count, 0);
        assert_eq!(summary.max_record_size_kib, 1024);
        assert_eq!(summary.stream_mode, StreamMode::Provisioned);
        assert_eq!(
            catalog.describe_stream_summary("x", now),
            Err(KinesisError::stream_not_found("x", ACCOUNT))
        );
    }

    #[test]
    fn list_streams_leaves_out_services_internal_streams() {
        let mut catalog = Catalog::new(config());
        for name in ["a", "__sluice_firehose__orders", "b"] {
            create(&mut catalog, name, 1, T0);
        }
        let listed = catalog
            .list_streams(
                ListStreamsInput {
                    limit: None,
                    exclusive_start_stream_name: None,
                    next_token: None,
                },
                T0,
            )
            .expect("listed");
        assert_eq!(listed.stream_names, vec!["a", "b"]);
        assert!(!listed.has_more_streams);
    }

    #[test]
    fn list_streams_pages_with_next_tokens_that_expire() {
        let mut catalog = Catalog::new(config());
        for name in ["c", "a", "b"] {
            create(&mut catalog, name, 1, T0);
        }
        let first = catalog
            .list_streams(
                ListStreamsInput {
                    limit: Some(2),
                    exclusive_start_stream_name: None,
                    next_token: None,
                },
                T0,
            )
            .expect("listed");
        assert_eq!(first.stream_names, vec!["a", "b"]);
        assert!(first.has_more_streams);
        assert_eq!(first.stream_summaries[1].stream_name, "b");
        assert_eq!(
            first.stream_summaries[1].stream_status,
            StreamStatus::Creating
        );
        let token = first.next_token.expect("more pages");
        let second = catalog
            .list_streams(
                ListStreamsInput {
                    limit: Some(2),
                    exclusive_start_stream_name: None,
                    next_token: Some(token.clone()),
                },
                T0 + 1,
            )
            .expect("listed");
        assert_eq!(second.stream_names, vec!["c"]);
        assert!(!second.has_more_streams);
        assert_eq!(second.next_token, None);
        let expired = catalog.list_streams(
            ListStreamsInput {
                limit: None,
                exclusive_start_stream_name: None,
                next_token: Some(token),
            },
            T0 + limits::NEXT_TOKEN_TTL_MS + 1,
        );
        assert_eq!(
            expired.map_err(|e| e.kind),
            Err(ErrorKind::ExpiredNextToken)
        );
        let malformed = catalog.list_streams(
            ListStreamsInput {
                limit: None,
                exclusive_start_stream_name: None,
                next_token: Some("abc".into()),
            },
            T0,
        );
        assert_eq!(
            malformed.map_err(|e| e.kind),
            Err(ErrorKind::InvalidArgument)
        );
        let after_a = catalog
            .list_streams(
                ListStreamsInput {
                    limit: Some(1),
                    exclusive_start_stream_name: Some("a".into()),
                    next_token: None,
                },
                T0,
            )
            .expect("listed");
        assert_eq!(after_a.stream_names, vec!["b"]);
        assert!(after_a.has_more_streams);
    }

    #[test]
    fn list_shards_refuses_argument_mixes_with_aws_texts() {
        let (catalog, now) = active_catalog(2);
        let neither = catalog
            .list_shards(list_shards_input(None, None), now)
            .expect_err("refused");
        assert_eq!(
            neither.message,
            "Either NextToken or StreamName should be provided."
        );
        let both = catalog
            .list_shards(list_shards_input(Some("s"), Some("x".into())), now)
            .expect_err("refused");
        assert_eq!(
            both.message,
            "NextToken and StreamName cannot be provided together."
        );
        assert_eq!(both.kind, ErrorKind::InvalidArgument);
    }

    #[test]
    fn list_shards_needs_an_active_stream() {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", 2, T0);
        let error = catalog
            .list_shards(list_shards_input(Some("s"), None), T0)
            .expect_err("creating");
        assert_eq!(
            error,
            KinesisError::stream_not_active("s", ACCOUNT, "CREATING")
        );
        let error = catalog
            .list_shards(list_shards_input(Some("t"), None), T0)
            .expect_err("missing");
        assert_eq!(error, KinesisError::stream_not_found("t", ACCOUNT));
    }

    #[test]
    fn list_shards_pages_with_a_next_token_that_keeps_the_filter() {
        let (mut catalog, now) = active_catalog(3);
        split_shard_zero(&mut catalog, T0 / 1000 + 100);
        let mut input = list_shards_input(Some("s"), None);
        input.max_results = Some(2);
        input.shard_filter = Some(ShardFilter::AtLatest);
        let first = catalog.list_shards(input, now).expect("listed");
        assert_eq!(
            shard_ids(&first.shards),
            vec!["shardId-000000000001", "shardId-000000000002"]
        );
        let token = first.next_token.expect("more shards");
        let second = catalog
            .list_shards(list_shards_input(None, Some(token.clone())), now)
            .expect("listed");
        assert_eq!(
            shard_ids(&second.shards),
            vec!["shardId-000000000003", "shardId-000000000004"]
        );
        assert_eq!(second.next_token, None);

        let mut with_start = list_shards_input(None, Some(token.clone()));
        with_start.exclusive_start_shard_id = Some("shardId-0".into());
        assert_eq!(
            catalog.list_shards(with_start, now).map_err(|e| e.message),
            Err("NextToken and ExclusiveStartShardId cannot be provided together.".into())
        );
        let expired =
            catalog.list_shards(list_shards_input(None, Some(token.clone())), now + 300_001);
        assert_eq!(
            expired.map_err(|e| e.kind),
            Err(ErrorKind::ExpiredNextToken)
        );

        delete(&mut catalog, "s", now).expect("deleted");
        let recreated_at = now + 500;
        create(&mut catalog, "s", 3, recreated_at);
        let recreated =
            catalog.list_shards(list_shards_input(None, Some(token)), recreated_at + 500);
        assert_eq!(
            recreated.map_err(|e| e.kind),
            Err(ErrorKind::ExpiredNextToken)
        );
    }

    #[test]
    fn list_shards_filters_select_shards_by_state_and_time() {
        let (mut catalog, now) = active_catalog(2);
        let split_s = T0 / 1000 + 100;
        split_shard_zero(&mut catalog, split_s);
        let list = |filter: ShardFilter| {
            let mut input = list_shards_input(Some("s"), None);
            input.shard_filter = Some(filter);
            shard_ids(&catalog.list_shards(input, now).expect("listed").shards)
        };
        let all = vec![
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002",
            "shardId-000000000003",
        ];
        // The trim horizon (24 hours back) predates the stream: the shards open at its start.
        assert_eq!(list(ShardFilter::AtTrimHorizon), all[..2].to_vec());
        assert_eq!(list(ShardFilter::FromTrimHorizon), all);
        assert_eq!(list(ShardFilter::AtLatest), all[1..].to_vec());
        assert_eq!(
            list(ShardFilter::AfterShardId("shardId-000000000001".into())),
            all[2..].to_vec()
        );
        assert_eq!(
            list(ShardFilter::AtTimestamp(split_s * 1000 - 1)),
            all[..2].to_vec()
        );
        assert_eq!(list(ShardFilter::AtTimestamp(0)), all[..2].to_vec());
        assert_eq!(
            list(ShardFilter::AtTimestamp(split_s * 1000 + 1)),
            all[1..].to_vec()
        );
        assert_eq!(
            list(ShardFilter::FromTimestamp(split_s * 1000 + 1)),
            all[1..].to_vec()
        );
        assert_eq!(list(ShardFilter::FromTimestamp(split_s * 1000)), all);
    }

    #[test]
    fn list_shards_checks_the_stream_creation_timestamp() {
        let (catalog, now) = active_catalog(1);
        let mut input = list_shards_input(Some("s"), None);
        input.stream_creation_timestamp_ms = Some(T0 - 5_000);
        assert_eq!(
            catalog.list_shards(input.clone(), now).map_err(|e| e.kind),
            Err(ErrorKind::ResourceNotFound)
        );
        input.stream_creation_timestamp_ms = Some(T0);
        assert_eq!(
            catalog.list_shards(input, now).map(|o| o.shards.len()),
            Ok(1)
        );
    }

    proptest! {
        #[test]
        fn list_streams_paging_visits_every_stream_exactly_once(
            names in proptest::collection::btree_set("[a-z0-9]{1,6}", 0..40),
            page in 1u32..12,
        ) {
            let mut catalog = Catalog::new(CatalogConfig { shard_limit: 1_000, ..config() });
            for name in &names {
                create(&mut catalog, name, 1, T0);
            }
            let mut seen = Vec::new();
            let mut next_token = None;
            loop {
                let out = catalog
                    .list_streams(ListStreamsInput { limit: Some(page), exclusive_start_stream_name: None, next_token: next_token.take() }, T0)
                    .expect("listed");
                prop_assert!(out.stream_names.len() <= page as usize);
                prop_assert_eq!(out.stream_summaries.len(), out.stream_names.len());
                prop_assert_eq!(out.has_more_streams, out.next_token.is_some());
                seen.extend(out.stream_names);
                match out.next_token {
                    Some(token) => next_token = Some(token),
                    None => break,
                }
            }
            prop_assert_eq!(seen, names.into_iter().collect::<Vec<_>>());
        }

        #[test]
        fn describe_stream_paging_covers_all_shards_in_order(shard_count in 1u32..250, page in 1u32..120) {
            let mut catalog = Catalog::new(CatalogConfig { shard_limit: 1_000, ..config() });
            create(&mut catalog, "s", shard_count, T0);
            let now = T0 + 1_000;
            let mut seen: Vec<String> = Vec::new();
            let mut start = None;
            loop {
                let out = catalog
                    .describe_stream(DescribeStreamInput { stream_name: "s".into(), limit: Some(page), exclusive_start_shard_id: start.take() }, now)
                    .expect("described");
                prop_assert!(out.shards.len() <= page.min(100) as usize);
                seen.extend(shard_ids(&out.shards));
                if !out.has_more_shards {
                    break;
                }
                start = seen.last().cloned();
            }
            let expected: Vec<String> = (0..shard_count).map(format_shard_id).collect();
            prop_assert_eq!(seen, expected);
        }

        #[test]
        fn list_shards_paging_covers_all_shards_in_order(shard_count in 1u32..60, page in 1u32..20) {
            let mut catalog = Catalog::new(CatalogConfig { shard_limit: 1_000, ..config() });
            create(&mut catalog, "s", shard_count, T0);
            let now = T0 + 1_000;
            let mut input = list_shards_input(Some("s"), None);
            input.max_results = Some(page);
            let mut seen = Vec::new();
            loop {
                let out = catalog.list_shards(input, now).expect("listed");
                seen.extend(shard_ids(&out.shards));
                match out.next_token {
                    Some(token) => {
                        input = list_shards_input(None, Some(token));
                        input.max_results = Some(page);
                    }
                    None => break,
                }
            }
            let expected: Vec<String> = (0..shard_count).map(format_shard_id).collect();
            prop_assert_eq!(seen, expected);
        }
    }
}
