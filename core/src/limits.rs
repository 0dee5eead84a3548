//! Every limit of the Kinesis model that the appliance enforces, and the engine's own bounds.
//! Wire layers validate against these; nothing else hard-codes a number.

/// PutRecords takes at most this many entries.
pub const PUT_RECORDS_ENTRIES_MAX: usize = 500;
/// Total of data plus partition keys in one PutRecords.
pub const PUT_RECORDS_BYTES_MAX: usize = 5 * 1024 * 1024;
/// Total of data plus partition keys in one PutRecords on a stream whose records may exceed
/// 1 MiB (the limit of the model's documentation for large-record streams).
pub const PUT_RECORDS_LARGE_BYTES_MAX: usize = 10 * 1024 * 1024;
/// Default per-record limit: partition key bytes plus data bytes.
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;
/// Partition keys are 1..=256 Unicode characters.
pub const PARTITION_KEY_CHARS_MAX: usize = 256;
/// GetRecords `Limit` range and default.
pub const GET_RECORDS_LIMIT_MAX: u32 = 10_000;
/// A GetRecords response carries at most this many data bytes.
pub const GET_RECORDS_BYTES_MAX: usize = 10 * 1024 * 1024;
/// Stream and consumer names: `[a-zA-Z0-9_.-]+`, 1..=128.
pub const STREAM_NAME_CHARS_MAX: usize = 128;
pub const RETENTION_HOURS_MIN: u32 = 24;
pub const RETENTION_HOURS_MAX: u32 = 8760;
pub const RETENTION_HOURS_DEFAULT: u32 = 24;
pub const TAGS_PER_STREAM_MAX: usize = 50;
pub const TAG_KEY_CHARS_MAX: usize = 128;
pub const TAG_VALUE_CHARS_MAX: usize = 256;
/// DescribeStream returns at most this many shards per page.
pub const DESCRIBE_STREAM_SHARDS_MAX: u32 = 100;
/// ListStreams returns at most this many names per page.
pub const LIST_STREAMS_MAX: u32 = 100;
/// ListShards pages are capped here.
pub const LIST_SHARDS_MAX: u32 = 1000;
/// ListShards / ListStreams NextTokens expire after this long.
pub const NEXT_TOKEN_TTL_MS: u64 = 300_000;
/// Shards an on-demand stream starts with.
pub const ON_DEMAND_SHARD_COUNT: u32 = 4;
/// Default account-wide shard limit (AWS's default in the large regions).
pub const SHARD_LIMIT_DEFAULT: u32 = 500;
/// Largest ShardCount CreateStream accepts before the account limit is even considered.
pub const SHARD_COUNT_MAX: u32 = 100_000;
/// Messages waiting in one shard core's inbox (requests from other cores and service cores) at
/// most; a sender beyond that waits for room, so a flood of cross-core work slows its senders
/// instead of growing memory.
pub const CORE_INBOX_MESSAGES_MAX: usize = 4096;
/// Catalog saves and checkpoint commits waiting for the persistence thread at most; a caller
/// beyond that waits for room.
pub const PERSIST_JOBS_MAX: usize = 4096;
