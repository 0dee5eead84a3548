//! Stream lifecycle: CreateStream, DeleteStream and `reap`, which removes streams whose DELETING
//! window has passed. A stream name freed by a gone stream can be reused before `reap` runs;
//! the gone stream then waits under a retired key (see the catalog's module doc).

use std::collections::BTreeMap;

use super::tags::{too_many_tags, validate_new_tags};
use super::{
    Catalog, Lifecycle, RemovedStream, Shard, Stream, StreamModeRepr, constraint_violation,
    validate_name,
};
use crate::api::{CreateStreamInput, DeleteStreamInput, StreamMode};
use crate::error::KinesisError;
use crate::hash_key::HashRange;
use crate::limits;

/// Shards are dated this long before the CreateStream call, as AWS does (kinesalite's tests
/// require the creation time embedded in sequence numbers to be 2–7 s before the call).
const SHARD_CREATED_LEAD_S: u64 = 2;
/// Marks the key of a gone stream displaced by a new one of the same name (see the module doc).
const RETIRED_KEY_PREFIX: char = '\0';

impl Catalog {
    /// Creates a stream in CREATING. `log_id` is called once per new shard, in shard order, to
    /// place it.
    pub fn create_stream(
        &mut self,
        input: CreateStreamInput,
        now_ms: u64,
        log_id: &mut dyn FnMut(u32) -> u32,
    ) -> Result<(), KinesisError> {
        let name = input.stream_name;
        validate_name(&name, "streamName")?;
        let (mode, shard_count) = match input.shard_count {
            None => (StreamModeRepr::OnDemand, limits::ON_DEMAND_SHARD_COUNT),
            Some(0) => {
                return Err(constraint_violation(
                    0,
                    "shardCount",
                    "Member must have value greater than or equal to 1",
                ));
            }
            Some(n) if n > limits::SHARD_COUNT_MAX => {
                return Err(constraint_violation(
                    n,
                    "shardCount",
                    &format!(
                        "Member must have value less than or equal to {}",
                        limits::SHARD_COUNT_MAX
                    ),
                ));
            }
            Some(n) => match input.stream_mode {
                Some(StreamMode::OnDemand) => (StreamModeRepr::OnDemand, n),
                Some(StreamMode::Provisioned) | None => (StreamModeRepr::Provisioned, n),
            },
        };
        if self.live_stream(&name, now_ms).is_some() {
            return Err(KinesisError::stream_exists(&name, &self.config.account_id));
        }
        let account = &self.config.account_id;
        validate_new_tags(account, &name, &input.tags)?;
        let tags: BTreeMap<String, String> = input
            .tags
            .into_iter()
            .map(|tag| (tag.key, tag.value))
            .collect();
        if tags.len() > limits::TAGS_PER_STREAM_MAX {
            return Err(too_many_tags(account, &name));
        }
        self.check_account_shard_limit(u64::from(shard_count), now_ms)?;

        // A gone stream of the same name may still wait for `reap`; keep it under a retired key
        // so that its records are still dropped, and make sure the new incarnation is told apart
        // from it even when both were created in the same millisecond.
        let mut created_ms = now_ms;
        if let Some(old) = self.streams.remove(&name) {
            assert!(old.is_gone(now_ms));
            created_ms = created_ms.max(old.created_ms.saturating_add(1));
            let retired_key = format!(
                "{RETIRED_KEY_PREFIX}{}{RETIRED_KEY_PREFIX}{}",
                old.name, old.created_ms
            );
            self.streams.insert(retired_key, old);
        }

        let created_s = (now_ms / 1000).saturating_sub(SHARD_CREATED_LEAD_S);
        let shards: Vec<Shard> = HashRange::even_split(shard_count)
            .into_iter()
            .zip(0u32..)
            .map(|(hash_range, index)| Shard {
                index,
                parent: None,
                adjacent_parent: None,
                hash_range,
                created_s,
                log_id: log_id(index),
                closed_at_position: None,
            })
            .collect();
        let lifecycle = match self.config.create_delay_ms {
            0 => Lifecycle::Active,
            delay_ms => Lifecycle::Creating {
                active_at_ms: now_ms.saturating_add(delay_ms),
            },
        };
        let stream = Stream {
            name: name.clone(),
            created_ms,
            lifecycle,
            mode,
            retention_period_hours: limits::RETENTION_HOURS_DEFAULT,
            tags,
            shards,
            shard_level_metrics: Vec::new(),
            max_record_size_kib: 1024,
            control: crate::control::StreamControl::default(),
        };
        self.streams.insert(name, stream);
        Ok(())
    }

    pub fn delete_stream(
        &mut self,
        input: DeleteStreamInput,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let gone_at_ms = now_ms.saturating_add(self.config.delete_delay_ms);
        let account = self.config.account_id.clone();
        let stream = self.found_mut(&input.stream_name, now_ms)?;
        if stream.control.consumer_count(now_ms) > 0 {
            if !input.enforce_consumer_deletion {
                return Err(crate::consumer::stream_has_consumers(
                    &account,
                    &stream.name,
                ));
            }
            stream.control.deregister_all_consumers(now_ms, gone_at_ms);
        }
        // Deleting again keeps the first deadline, so repeated calls cannot keep a stream alive.
        if !matches!(stream.lifecycle, Lifecycle::Deleting { .. }) {
            stream.lifecycle = Lifecycle::Deleting { gone_at_ms };
        }
        Ok(())
    }

    /// Removes streams whose DELETING window has passed and returns them.
    pub fn reap(&mut self, now_ms: u64) -> Vec<RemovedStream> {
        let gone: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, stream)| stream.is_gone(now_ms))
            .map(|(key, _)| key.clone())
            .collect();
        gone.into_iter()
            .filter_map(|key| self.streams.remove(&key))
            .map(|stream| RemovedStream {
                name: stream.name,
                created_ms: stream.created_ms,
                shards: stream.shards,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::*;
    use crate::catalog::test_support::*;
    use crate::error::ErrorKind;

    #[test]
    fn create_stream_splits_the_hash_space_evenly_and_dates_shards_two_seconds_early() {
        let mut catalog = Catalog::new(config());
        let mut placed = Vec::new();
        catalog
            .create_stream(create_input("s", Some(3)), T0 + 999, &mut |index| {
                placed.push(index);
                index + 100
            })
            .expect("created");
        assert_eq!(placed, vec![0, 1, 2]);
        let stream = &catalog.streams["s"];
        assert_eq!(
            stream.shards.iter().map(|s| s.log_id).collect::<Vec<_>>(),
            vec![100, 101, 102]
        );
        assert_eq!(
            stream
                .shards
                .iter()
                .map(|s| s.hash_range)
                .collect::<Vec<_>>(),
            HashRange::even_split(3)
        );
        assert!(stream.shards.iter().all(|s| s.created_s == T0 / 1000 - 2));
        assert_eq!(stream.created_ms, T0 + 999);
        assert_eq!(stream.retention_period_hours, 24);
        assert_eq!(stream.max_record_size_kib, 1024);
        assert_eq!(stream.mode, StreamModeRepr::Provisioned);
    }

    #[test]
    fn create_stream_without_a_shard_count_makes_an_on_demand_stream_of_four_shards() {
        let mut catalog = Catalog::new(config());
        catalog
            .create_stream(create_input("s", None), T0, &mut |i| i)
            .expect("created");
        assert_eq!(catalog.streams["s"].mode, StreamModeRepr::OnDemand);
        assert_eq!(catalog.streams["s"].open_shard_count(), 4);
    }

    #[test]
    fn create_stream_refuses_a_name_in_use_even_while_it_is_deleting() {
        let (mut catalog, now) = active_catalog(1);
        let error = catalog.create_stream(create_input("s", Some(1)), now, &mut |i| i);
        assert_eq!(error, Err(KinesisError::stream_exists("s", ACCOUNT)));
        delete(&mut catalog, "s", now).expect("deleted");
        let error = catalog.create_stream(create_input("s", Some(1)), now + 100, &mut |i| i);
        assert_eq!(error.map_err(|e| e.kind), Err(ErrorKind::ResourceInUse));
    }

    #[test]
    fn create_stream_over_the_shard_limit_gives_the_exact_aws_message() {
        let (mut catalog, now) = active_catalog(3);
        let error = catalog
            .create_stream(create_input("t", Some(1000)), now, &mut |i| i)
            .expect_err("over the limit");
        assert_eq!(error.kind, ErrorKind::LimitExceeded);
        assert_eq!(
            error.message,
            "This request would exceed the shard limit for the account 000000000000 in us-east-1. Current shard count for the account: 3. Limit: 10. Number of additional shards that would have resulted from this request: 1000. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits."
        );
        let error = catalog.create_stream(create_input("t", Some(100_000)), now, &mut |i| i);
        assert_eq!(error.map_err(|e| e.kind), Err(ErrorKind::LimitExceeded));
        create(&mut catalog, "t", 7, now);
    }

    #[test]
    fn create_stream_rechecks_the_name_and_shard_count_rules() {
        let mut catalog = Catalog::new(config());
        for (name, count) in [
            ("", Some(1)),
            ("a/b", Some(1)),
            (&*"a".repeat(129), Some(1)),
            ("ok", Some(0)),
        ] {
            let error = catalog.create_stream(create_input(name, count), T0, &mut |i| i);
            assert_eq!(
                error.map_err(|e| e.kind),
                Err(ErrorKind::Validation),
                "{name:?}"
            );
        }
        assert!(catalog.streams.is_empty());
    }

    #[test]
    fn create_stream_name_and_shard_count_refusals_use_the_aws_validation_texts() {
        let mut catalog = Catalog::new(config());
        let message = |catalog: &mut Catalog, name: &str, count| {
            catalog
                .create_stream(create_input(name, count), T0, &mut |i| i)
                .map_err(|e| e.message)
        };
        let prefix = "1 validation error detected: Value";
        assert_eq!(
            message(&mut catalog, "", Some(1)),
            Err(format!(
                "{prefix} '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"
            ))
        );
        let long = "a".repeat(129);
        assert_eq!(
            message(&mut catalog, &long, Some(1)),
            Err(format!(
                "{prefix} '{long}' at 'streamName' failed to satisfy constraint: Member must have length less than or equal to 128"
            ))
        );
        assert_eq!(
            message(&mut catalog, "a/b", Some(1)),
            Err(format!(
                "{prefix} 'a/b' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
            ))
        );
        assert_eq!(
            message(&mut catalog, "s", Some(0)),
            Err(format!(
                "{prefix} '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
            ))
        );
        let over = limits::SHARD_COUNT_MAX + 1;
        assert_eq!(
            message(&mut catalog, "s", Some(over)),
            Err(format!(
                "{prefix} '{over}' at 'shardCount' failed to satisfy constraint: Member must have value less than or equal to {}",
                limits::SHARD_COUNT_MAX
            ))
        );
    }

    #[test]
    fn create_stream_refuses_reserved_tag_keys_and_more_than_fifty_tags() {
        let mut catalog = Catalog::new(config());
        let mut input = create_input("s", Some(1));
        input.tags = vec![Tag {
            key: "aws:owner".into(),
            value: "x".into(),
        }];
        let error = catalog.create_stream(input, T0, &mut |i| i);
        assert_eq!(error.map_err(|e| e.kind), Err(ErrorKind::InvalidArgument));
        let mut input = create_input("s", Some(1));
        input.tags = (0..51)
            .map(|i| Tag {
                key: format!("k{i}"),
                value: String::new(),
            })
            .collect();
        let error = catalog.create_stream(input, T0, &mut |i| i);
        assert_eq!(error.map_err(|e| e.kind), Err(ErrorKind::InvalidArgument));
        let mut input = create_input("s", Some(1));
        input.tags = (0..50)
            .map(|i| Tag {
                key: format!("k{i}"),
                value: String::new(),
            })
            .collect();
        catalog
            .create_stream(input, T0, &mut |i| i)
            .expect("fifty tags are allowed");
        assert_eq!(catalog.streams["s"].tags.len(), 50);
    }

    #[test]
    fn a_stream_deleted_while_creating_shows_deleting_with_no_shards() {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", 1, T0);
        delete(&mut catalog, "s", T0 + 10).expect("deleted");
        let description = describe(&catalog, "s", T0 + 20).expect("still visible");
        assert_eq!(description.stream_status, StreamStatus::Deleting);
        assert!(description.shards.is_empty());
    }

    #[test]
    fn a_stream_deleted_after_becoming_active_still_shows_its_shards_while_deleting() {
        let (mut catalog, now) = active_catalog(2);
        delete(&mut catalog, "s", now).expect("deleted");
        let description = describe(&catalog, "s", now + 1).expect("still visible");
        assert_eq!(description.stream_status, StreamStatus::Deleting);
        assert_eq!(description.shards.len(), 2);
    }

    #[test]
    fn a_deleted_stream_is_absent_after_its_window_even_before_reap() {
        let (mut catalog, now) = active_catalog(2);
        delete(&mut catalog, "s", now).expect("deleted");
        let gone = now + 500;
        assert_eq!(
            describe(&catalog, "s", gone),
            Err(KinesisError::stream_not_found("s", ACCOUNT))
        );
        assert_eq!(
            delete(&mut catalog, "s", gone),
            Err(KinesisError::stream_not_found("s", ACCOUNT))
        );
        let listed = catalog
            .list_streams(
                ListStreamsInput {
                    limit: None,
                    exclusive_start_stream_name: None,
                    next_token: None,
                },
                gone,
            )
            .expect("listed");
        assert!(listed.stream_names.is_empty());
        assert_eq!(catalog.account_open_shard_count(gone), 0);
        assert!(catalog.reap(gone - 1).is_empty());
        let removed = catalog.reap(gone);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].name, "s");
        assert_eq!(removed[0].shards.len(), 2);
        assert!(catalog.reap(gone).is_empty());
        assert!(catalog.streams.is_empty());
    }

    #[test]
    fn deleting_twice_keeps_the_first_deadline() {
        let (mut catalog, now) = active_catalog(1);
        delete(&mut catalog, "s", now).expect("deleted");
        delete(&mut catalog, "s", now + 400).expect("deleting again is accepted");
        assert_eq!(
            catalog.streams["s"].lifecycle,
            Lifecycle::Deleting {
                gone_at_ms: now + 500
            }
        );
    }

    #[test]
    fn a_name_can_be_reused_after_deletion_and_reap_still_returns_the_old_stream() {
        let (mut catalog, now) = active_catalog(2);
        delete(&mut catalog, "s", now).expect("deleted");
        let later = now + 500;
        create(&mut catalog, "s", 1, later);
        assert_eq!(
            catalog.live_stream("s", later).map(|s| s.shards.len()),
            Some(1)
        );
        let listed = catalog
            .list_streams(
                ListStreamsInput {
                    limit: None,
                    exclusive_start_stream_name: None,
                    next_token: None,
                },
                later,
            )
            .expect("listed");
        assert_eq!(listed.stream_names, vec!["s"]);
        let removed = catalog.reap(later);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].shards.len(), 2);
        assert_eq!(removed[0].created_ms, T0);
        assert_eq!(catalog.streams.keys().collect::<Vec<_>>(), vec!["s"]);
    }
}
