//! A video stream as Sluice keeps it, and a fragment as the index knows it.
//!
//! The persisted form of a stream is JSON (serde) in `<data-dir>/video/` (see `store`); a field added
//! here must be optional or defaulted so that older files still load.
//!
//! Fragments live in the stream's internal Kinesis stream ([`StreamDefinition::internal_stream`]):
//! shard [`DATA_SHARD`] holds each fragment as one or more records (its MKV header and cluster,
//! split at [`PART_BYTES_MAX`]); shard [`INDEX_SHARD`] holds one [`FragmentEntry`] per fragment,
//! appended after the fragment's data is durable. A fragment's number is allocated when its
//! Cluster starts (see `fragments::StreamIndex::allocate`): unique per stream, increasing in
//! ingest order, a decimal string like AWS's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The shard of the internal stream that holds fragment data.
pub const DATA_SHARD: u32 = 0;
/// The shard of the internal stream that holds one index entry per fragment.
pub const INDEX_SHARD: u32 = 1;
/// A fragment's data is stored in records of at most this many bytes (the Kinesis record limit).
pub const PART_BYTES_MAX: usize = 1024 * 1024 - 64;

/// What CreateStream, UpdateStream, UpdateDataRetention and the tag calls set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDefinition {
    pub name: String,
    pub arn: String,
    #[serde(default)]
    pub device_name: Option<String>,
    #[serde(default)]
    pub media_type: Option<String>,
    /// AWS answers its own managed key (`alias/aws/kinesisvideo`) when none was given.
    pub kms_key_id: String,
    /// 0: fragments are kept only as a short host buffer (GetMedia); HLS, clips and
    /// ListFragments answer NoDataRetentionException.
    pub data_retention_hours: u32,
    /// Opaque; changes on every update; Update* and DeleteStream must quote it.
    pub version: String,
    pub creation_time_ms: u64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// HOT or WARM (StreamStorageConfiguration.DefaultStorageTier).
    #[serde(default = "default_storage_tier")]
    pub storage_tier: String,
    /// The internal Kinesis stream that holds this stream's fragments (unique per incarnation,
    /// so a stream deleted and created again never sees the old fragments).
    pub internal_stream: String,
    /// UpdateImageGenerationConfiguration's `ImageGenerationConfiguration`, as validated and
    /// stored (this appliance keeps it as a setting; it does not generate images by itself).
    #[serde(default)]
    pub image_generation: Option<serde_json::Value>,
    /// UpdateNotificationConfiguration's `NotificationConfiguration`, as validated and stored.
    #[serde(default)]
    pub notification: Option<serde_json::Value>,
}

fn default_storage_tier() -> String {
    "HOT".to_owned()
}

/// StreamInfo.Status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStatus {
    Creating,
    Active,
    Updating,
    Deleting,
}

impl StreamStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Active => "ACTIVE",
            Self::Updating => "UPDATING",
            Self::Deleting => "DELETING",
        }
    }
}

/// A video stream as the registry answers it: its definition and its current status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoStream {
    pub definition: StreamDefinition,
    pub status: StreamStatus,
}

/// One stored fragment, as ListFragments reports it and as the readers find it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentEntry {
    /// The fragment number (decimal), allocated when the fragment began arriving.
    pub number: String,
    /// The position of its first data record in [`DATA_SHARD`].
    pub data_position: u64,
    /// How many data records hold it.
    pub parts: u32,
    /// Producer timestamp of the fragment's start, epoch milliseconds.
    pub producer_ms: u64,
    /// When the server began receiving the fragment, epoch milliseconds.
    pub server_ms: u64,
    pub duration_ms: u64,
    /// The size of the stored fragment (its cluster), bytes.
    pub size_bytes: u64,
}
