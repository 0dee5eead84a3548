//! Streams that services keep for themselves inside the Kinesis catalog.
//!
//! A DirectPut Firehose delivery stream stores its records in a Kinesis stream of its own, named
//! [`FIREHOSE_PREFIX`] followed by the delivery stream's name, so that they get the log's group
//! commit, retention and recovery. Such streams are hidden from ListStreams (they are not the
//! user's); every other call still reaches them by name, and the prefix is reserved.
//!
//! A Kinesis video stream keeps its fragments in a Kinesis stream named [`VIDEO_PREFIX`] followed
//! by a suffix unique to that video stream's incarnation, under the same rules.

/// The name prefix of a DirectPut delivery stream's internal stream.
pub const FIREHOSE_PREFIX: &str = "__sluice_firehose__";

/// The partition key of every record in a DirectPut delivery stream's internal stream: the
/// stream has one shard, and whoever puts records into the delivery stream (its PutRecord, an
/// analytics application's output) writes them the same way.
pub const FIREHOSE_PARTITION_KEY: &str = "firehose";

/// The name prefix of a Kinesis video stream's internal stream.
pub const VIDEO_PREFIX: &str = "__sluice_video__";

/// Whether `stream_name` is a service's internal stream.
pub fn is_internal(stream_name: &str) -> bool {
    stream_name.starts_with(FIREHOSE_PREFIX) || stream_name.starts_with(VIDEO_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_with_the_reserved_prefix_are_internal() {
        assert!(is_internal("__sluice_firehose__orders"));
        assert!(!is_internal("orders"));
        assert!(!is_internal("x__sluice_firehose__"));
        assert!(is_internal(
            "__sluice_video__cam-1700000000000-0123456789abcdef"
        ));
        assert!(!is_internal("x__sluice_video__"));
    }
}
