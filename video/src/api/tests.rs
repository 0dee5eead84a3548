//! The control plane driven through `handle_control` against the in-memory Kinesis model: what
//! these guard against is an answer whose shape, status or error name differs from the
//! `kinesisvideo` model, a version check that lets a stale update through, and an internal
//! stream that does not follow its video stream (created with two shards, retention kept,
//! deleted with it).

use std::time::{Duration, SystemTime};

use futures_lite::future::block_on;
use serde_json::{Value, json};
use sluice_core::KinesisApi as _;
use sluice_protocols::model::Model;

use super::*;
use crate::store::tests::temp_dir;

const ENDPOINT: &str = "http://127.0.0.1:4567";

struct Harness {
    dir: std::path::PathBuf,
    registry: Registry,
    api: Model,
    auth: AuthConfig,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn harness() -> Harness {
    let dir = temp_dir();
    let registry = Registry::open(&dir).expect("opened");
    Harness {
        dir,
        registry,
        api: Model::default(),
        auth: AuthConfig::accept_any(),
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
}

impl Harness {
    fn raw(&self, path: &str, body: &Value, has_auth: bool) -> HttpResponse {
        let body = body.to_string();
        let req = HttpRequest {
            method: "POST",
            path,
            has_auth,
            body: body.as_bytes(),
            ..HttpRequest::default()
        };
        block_on(handle_control(
            &self.registry,
            &self.api,
            req,
            &self.auth,
            ENDPOINT,
            now(),
        ))
    }

    fn call(&self, path: &str, body: Value) -> Value {
        let response = self.raw(path, &body, true);
        assert_eq!(
            response.status,
            200,
            "{path} {body}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert!(response.header("x-amzn-RequestId").is_some());
        serde_json::from_slice(&response.body).expect("json")
    }

    /// The error name and status of a call that must fail.
    fn fail(&self, path: &str, body: Value) -> (String, u16) {
        let response = self.raw(path, &body, true);
        assert_ne!(response.status, 200, "{path} {body} succeeded");
        let parsed: Value = serde_json::from_slice(&response.body).expect("json");
        let name = response
            .header("x-amzn-ErrorType")
            .expect("error type header")
            .to_owned();
        assert_eq!(parsed["__type"], name.as_str());
        (name, response.status)
    }

    fn create(&self, name: &str, retention: u32) -> String {
        self.call(
            "/createStream",
            json!({ "StreamName": name, "DataRetentionInHours": retention, "MediaType": "video/h264" }),
        )["StreamARN"]
            .as_str()
            .expect("arn")
            .to_owned()
    }

    fn info(&self, name: &str) -> Value {
        self.call("/describeStream", json!({ "StreamName": name }))["StreamInfo"].clone()
    }

    fn internal_retention(&self, name: &str) -> u32 {
        let VideoStream { definition, .. } = self.registry.get(name).expect("stream");
        block_on(self.api.describe_stream_summary(definition.internal_stream))
            .expect("internal stream")
            .retention_period_hours
    }
}

#[test]
fn create_then_describe_answers_an_active_stream_backed_by_a_two_shard_internal_stream() {
    let h = harness();
    let arn = h.create("cam-1", 0);
    assert_eq!(
        arn,
        "arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam-1/1700000000123"
    );
    let info = h.info("cam-1");
    assert_eq!(info["Status"], "ACTIVE");
    assert_eq!(info["StreamARN"], arn.as_str());
    assert_eq!(info["MediaType"], "video/h264");
    assert_eq!(info["DataRetentionInHours"], 0);
    assert_eq!(
        info["KmsKeyId"],
        "arn:aws:kms:us-east-1:000000000000:alias/aws/kinesisvideo"
    );
    assert_eq!(info["CreationTime"], json!(1_700_000_000.123));
    assert!(info.get("DeviceName").is_none());
    let VideoStream { definition, .. } = h.registry.get("cam-1").expect("stream");
    assert!(definition.internal_stream.starts_with(VIDEO_PREFIX));
    let summary = block_on(h.api.describe_stream_summary(definition.internal_stream))
        .expect("internal stream");
    assert_eq!(summary.open_shard_count, 2);
    assert_eq!(summary.retention_period_hours, 24);
    assert_eq!(
        h.call("/describeStream", json!({ "StreamARN": arn }))["StreamInfo"]["StreamName"],
        "cam-1"
    );
}

#[test]
fn create_validates_its_input_and_refuses_a_name_in_use() {
    let h = harness();
    h.create("cam", 48);
    assert_eq!(h.internal_retention("cam"), 48);
    let invalid = ("InvalidArgumentException".to_owned(), 400);
    assert_eq!(
        h.fail("/createStream", json!({ "StreamName": "cam" })),
        ("ResourceInUseException".to_owned(), 400)
    );
    assert_eq!(h.fail("/createStream", json!({})), invalid);
    assert_eq!(
        h.fail("/createStream", json!({ "StreamName": "a b" })),
        invalid
    );
    assert_eq!(
        h.fail("/createStream", json!({ "StreamName": "x".repeat(257) })),
        invalid
    );
    assert_eq!(
        h.fail(
            "/createStream",
            json!({ "StreamName": "n", "DataRetentionInHours": -1 })
        ),
        invalid
    );
    assert_eq!(
        h.fail(
            "/createStream",
            json!({ "StreamName": "n", "MediaType": "h264" })
        ),
        invalid
    );
    assert_eq!(
        h.fail(
            "/createStream",
            json!({ "StreamName": "n", "StreamStorageConfiguration": { "DefaultStorageTier": "COLD" } })
        ),
        invalid
    );
    let tags: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(
        h.fail("/createStream", json!({ "StreamName": "n", "Tags": tags })),
        ("TagsPerResourceExceededLimitException".to_owned(), 400)
    );
    assert_eq!(
        h.fail(
            "/createStream",
            json!({ "StreamName": "n", "DataRetentionInHours": "x" })
        ),
        ("SerializationException".to_owned(), 400)
    );
    assert!(h.registry.get("n").is_none());
}

#[test]
fn names_that_are_dots_or_256_characters_long_work_end_to_end() {
    let h = harness();
    let long = "v".repeat(256);
    for name in [".", "..", long.as_str()] {
        h.create(name, 0);
        assert_eq!(h.info(name)["StreamName"], name);
        let VideoStream { definition, .. } = h.registry.get(name).expect("stream");
        assert!(definition.internal_stream.len() <= sluice_core::limits::STREAM_NAME_CHARS_MAX);
    }
    let reopened = Registry::open(&h.dir).expect("reopened");
    assert_eq!(reopened.len(), 3);
}

#[test]
fn list_streams_pages_by_max_results_and_filters_by_prefix() {
    let h = harness();
    for name in ["cam-a", "cam-b", "cam-c", "door-a"] {
        h.create(name, 0);
    }
    let names = |page: &Value| -> Vec<String> {
        page["StreamInfoList"]
            .as_array()
            .expect("list")
            .iter()
            .map(|i| i["StreamName"].as_str().expect("name").to_owned())
            .collect()
    };
    let all = h.call("/listStreams", json!({}));
    assert_eq!(names(&all), ["cam-a", "cam-b", "cam-c", "door-a"]);
    assert!(all.get("NextToken").is_none());

    let condition = json!({ "ComparisonOperator": "BEGINS_WITH", "ComparisonValue": "cam-" });
    let first = h.call(
        "/listStreams",
        json!({ "MaxResults": 2, "StreamNameCondition": condition }),
    );
    assert_eq!(names(&first), ["cam-a", "cam-b"]);
    let token = first["NextToken"].as_str().expect("more").to_owned();
    let second = h.call(
        "/listStreams",
        json!({ "MaxResults": 2, "NextToken": token, "StreamNameCondition": condition }),
    );
    assert_eq!(names(&second), ["cam-c"]);
    assert!(second.get("NextToken").is_none());

    let invalid = ("InvalidArgumentException".to_owned(), 400);
    assert_eq!(h.fail("/listStreams", json!({ "MaxResults": 0 })), invalid);
    assert_eq!(
        h.fail("/listStreams", json!({ "MaxResults": 10_001 })),
        invalid
    );
    assert_eq!(
        h.fail("/listStreams", json!({ "NextToken": "!!" })),
        invalid
    );
    assert_eq!(
        h.fail(
            "/listStreams",
            json!({ "StreamNameCondition": { "ComparisonOperator": "EQUALS", "ComparisonValue": "x" } })
        ),
        invalid
    );
}

#[test]
fn update_stream_needs_the_current_version_and_changes_it() {
    let h = harness();
    h.create("cam", 0);
    let version = h.info("cam")["Version"]
        .as_str()
        .expect("version")
        .to_owned();
    assert_eq!(
        h.fail(
            "/updateStream",
            json!({ "StreamName": "cam", "CurrentVersion": "stale1", "DeviceName": "d" })
        ),
        ("VersionMismatchException".to_owned(), 400)
    );
    assert_eq!(
        h.fail("/updateStream", json!({ "StreamName": "cam" })),
        ("InvalidArgumentException".to_owned(), 400)
    );
    h.call(
        "/updateStream",
        json!({ "StreamName": "cam", "CurrentVersion": version, "DeviceName": "dev-1", "MediaType": "video/h265" }),
    );
    let info = h.info("cam");
    assert_eq!(info["DeviceName"], "dev-1");
    assert_eq!(info["MediaType"], "video/h265");
    assert_ne!(info["Version"], version.as_str());
    // The old version is stale now.
    assert_eq!(
        h.fail(
            "/updateStream",
            json!({ "StreamName": "cam", "CurrentVersion": version })
        )
        .0,
        "VersionMismatchException"
    );
    assert_eq!(
        h.fail(
            "/updateStream",
            json!({ "StreamName": "nope", "CurrentVersion": version })
        ),
        ("ResourceNotFoundException".to_owned(), 404)
    );
}

#[test]
fn data_retention_moves_by_the_change_and_the_internal_stream_follows() {
    let h = harness();
    h.create("cam", 0);
    let version = |h: &Harness| h.info("cam")["Version"].as_str().expect("v").to_owned();
    h.call(
        "/updateDataRetention",
        json!({ "StreamName": "cam", "CurrentVersion": version(&h), "Operation": "INCREASE_DATA_RETENTION", "DataRetentionChangeInHours": 72 }),
    );
    assert_eq!(h.info("cam")["DataRetentionInHours"], 72);
    assert_eq!(h.internal_retention("cam"), 72);
    h.call(
        "/updateDataRetention",
        json!({ "StreamName": "cam", "CurrentVersion": version(&h), "Operation": "DECREASE_DATA_RETENTION", "DataRetentionChangeInHours": 70 }),
    );
    assert_eq!(h.info("cam")["DataRetentionInHours"], 2);
    assert_eq!(h.internal_retention("cam"), 24);
    assert_eq!(
        h.fail(
            "/updateDataRetention",
            json!({ "StreamName": "cam", "CurrentVersion": version(&h), "Operation": "DECREASE_DATA_RETENTION", "DataRetentionChangeInHours": 3 })
        ),
        ("InvalidArgumentException".to_owned(), 400)
    );
    assert_eq!(
        h.fail(
            "/updateDataRetention",
            json!({ "StreamName": "cam", "CurrentVersion": "old1", "Operation": "INCREASE_DATA_RETENTION", "DataRetentionChangeInHours": 1 })
        ),
        ("VersionMismatchException".to_owned(), 400)
    );
    assert_eq!(
        h.fail(
            "/updateDataRetention",
            json!({ "StreamName": "cam", "CurrentVersion": version(&h), "Operation": "GROW", "DataRetentionChangeInHours": 1 })
        ),
        ("InvalidArgumentException".to_owned(), 400)
    );
}

#[test]
fn tags_are_set_listed_and_removed_by_name_and_by_arn() {
    let h = harness();
    let arn = h.create("cam", 0);
    h.call(
        "/tagStream",
        json!({ "StreamName": "cam", "Tags": { "team": "vision", "env": "test" } }),
    );
    h.call(
        "/TagResource",
        json!({ "ResourceARN": arn, "Tags": [{ "Key": "owner", "Value": "ops" }] }),
    );
    let tags = h.call("/listTagsForStream", json!({ "StreamARN": arn }))["Tags"].clone();
    assert_eq!(
        tags,
        json!({ "team": "vision", "env": "test", "owner": "ops" })
    );
    h.call(
        "/untagStream",
        json!({ "StreamName": "cam", "TagKeyList": ["env"] }),
    );
    h.call(
        "/UntagResource",
        json!({ "ResourceARN": arn, "TagKeyList": ["owner"] }),
    );
    assert_eq!(
        h.call("/ListTagsForResource", json!({ "ResourceARN": arn }))["Tags"],
        json!({ "team": "vision" })
    );
    let many: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(
        h.fail("/tagStream", json!({ "StreamName": "cam", "Tags": many })),
        ("TagsPerResourceExceededLimitException".to_owned(), 400)
    );
    assert_eq!(
        h.fail("/TagResource", json!({ "ResourceARN": "arn:aws:kinesisvideo:us-east-1:000000000000:stream/none/1", "Tags": [{ "Key": "a", "Value": "b" }] })),
        ("ResourceNotFoundException".to_owned(), 404)
    );
    assert_eq!(
        h.fail(
            "/ListTagsForResource",
            json!({ "ResourceARN": "not-an-arn" })
        ),
        ("InvalidArgumentException".to_owned(), 400)
    );
}

#[test]
fn get_data_endpoint_answers_the_endpoint_for_every_api_name() {
    let h = harness();
    h.create("cam", 0);
    for api_name in API_NAMES {
        assert_eq!(
            h.call(
                "/getDataEndpoint",
                json!({ "StreamName": "cam", "APIName": api_name })
            ),
            json!({ "DataEndpoint": ENDPOINT })
        );
    }
    assert_eq!(
        h.fail(
            "/getDataEndpoint",
            json!({ "StreamName": "cam", "APIName": "PUT_IMAGES" })
        ),
        ("InvalidArgumentException".to_owned(), 400)
    );
    assert_eq!(
        h.fail("/getDataEndpoint", json!({ "APIName": "GET_MEDIA" })),
        ("InvalidArgumentException".to_owned(), 400)
    );
    assert_eq!(
        h.fail(
            "/getDataEndpoint",
            json!({ "StreamName": "gone", "APIName": "GET_MEDIA" })
        ),
        ("ResourceNotFoundException".to_owned(), 404)
    );
}

#[test]
fn delete_stream_by_arn_checks_the_version_and_removes_the_internal_stream() {
    let h = harness();
    let arn = h.create("cam", 24);
    let VideoStream { definition, .. } = h.registry.get("cam").expect("stream");
    assert_eq!(
        h.fail("/deleteStream", json!({ "StreamName": "cam" })),
        ("InvalidArgumentException".to_owned(), 400)
    );
    assert_eq!(
        h.fail(
            "/deleteStream",
            json!({ "StreamARN": arn, "CurrentVersion": "stale1" })
        ),
        ("VersionMismatchException".to_owned(), 400)
    );
    h.call("/deleteStream", json!({ "StreamARN": arn }));
    assert_eq!(
        h.fail("/describeStream", json!({ "StreamName": "cam" })),
        ("ResourceNotFoundException".to_owned(), 404)
    );
    assert!(
        block_on(
            h.api
                .describe_stream_summary(definition.internal_stream.clone())
        )
        .is_err()
    );
    assert!(Registry::open(&h.dir).expect("reopened").is_empty());
    // A new stream of the same name is a new incarnation: the old ARN names nothing.
    h.create("cam", 0);
    let VideoStream {
        definition: again, ..
    } = h.registry.get("cam").expect("stream");
    assert_ne!(again.internal_stream, definition.internal_stream);
    assert_ne!(again.arn, arn);
    assert_eq!(
        h.fail("/describeStream", json!({ "StreamARN": arn })),
        ("ResourceNotFoundException".to_owned(), 404)
    );
}

#[test]
fn storage_tier_and_stored_settings_round_trip() {
    let h = harness();
    h.create("cam", 0);
    let described = h.call(
        "/describeStreamStorageConfiguration",
        json!({ "StreamName": "cam" }),
    );
    assert_eq!(
        described["StreamStorageConfiguration"],
        json!({ "DefaultStorageTier": "HOT" })
    );
    let version = h.info("cam")["Version"].as_str().expect("v").to_owned();
    h.call(
        "/updateStreamStorageConfiguration",
        json!({ "StreamName": "cam", "CurrentVersion": version, "StreamStorageConfiguration": { "DefaultStorageTier": "WARM" } }),
    );
    assert_eq!(
        h.call(
            "/describeStreamStorageConfiguration",
            json!({ "StreamName": "cam" })
        )["StreamStorageConfiguration"]["DefaultStorageTier"],
        "WARM"
    );

    assert_eq!(
        h.call(
            "/describeNotificationConfiguration",
            json!({ "StreamName": "cam" })
        ),
        json!({})
    );
    let notification = json!({ "Status": "ENABLED", "DestinationConfig": { "Uri": "arn:aws:sns:us-east-1:000000000000:topic" } });
    // Enabling needs retention.
    assert_eq!(
        h.fail(
            "/updateNotificationConfiguration",
            json!({ "StreamName": "cam", "NotificationConfiguration": notification })
        ),
        ("NoDataRetentionException".to_owned(), 400)
    );
    let image = json!({
        "Status": "DISABLED", "ImageSelectorType": "SERVER_TIMESTAMP",
        "DestinationConfig": { "Uri": "s3://bucket/prefix", "DestinationRegion": "us-east-1" },
        "SamplingInterval": 3000, "Format": "JPEG", "FormatConfig": { "JPEGQuality": "80" },
        "WidthPixels": 640,
    });
    h.call(
        "/updateImageGenerationConfiguration",
        json!({ "StreamName": "cam", "ImageGenerationConfiguration": image }),
    );
    assert_eq!(
        h.call(
            "/describeImageGenerationConfiguration",
            json!({ "StreamName": "cam" })
        )["ImageGenerationConfiguration"],
        image
    );
}

#[test]
fn unserved_operations_answer_clear_errors_and_listings_answer_empty() {
    let h = harness();
    assert!(is_control_path("/createStream"));
    assert!(is_control_path("/TagResource"));
    assert!(!is_control_path("/putMedia"));
    assert!(!is_control_path("/getMedia"));
    assert!(!is_control_path("/tagresource"));
    assert_eq!(
        h.call("/listSignalingChannels", json!({})),
        json!({ "ChannelInfoList": [] })
    );
    let (name, status) = h.fail("/createSignalingChannel", json!({ "ChannelName": "c" }));
    assert_eq!((name.as_str(), status), ("InvalidArgumentException", 400));
    assert_eq!(
        h.fail("/describeSignalingChannel", json!({ "ChannelName": "c" })),
        ("ResourceNotFoundException".to_owned(), 404)
    );
}

#[test]
fn a_request_without_credentials_is_refused_before_anything_else() {
    let h = harness();
    let response = h.raw("/listStreams", &json!({}), false);
    assert_eq!(response.status, 403);
    assert_eq!(
        response.header("x-amzn-ErrorType"),
        Some("MissingAuthenticationTokenException")
    );
}

#[test]
fn a_definition_saved_before_a_crash_gets_its_internal_stream_on_first_use() {
    let h = harness();
    let definition = StreamDefinition {
        name: "cam".to_owned(),
        arn: h.registry.stream_arn("cam", 5),
        device_name: None,
        media_type: None,
        kms_key_id: "k".to_owned(),
        data_retention_hours: 100,
        version: "v1".to_owned(),
        creation_time_ms: 5,
        tags: BTreeMap::new(),
        storage_tier: "HOT".to_owned(),
        internal_stream: internal_stream_name("cam", 5),
        image_generation: None,
        notification: None,
    };
    block_on(async {
        let control = h.registry.lock_control().await;
        h.registry
            .save(&control, definition, StreamStatus::Creating)
            .await
            .expect("saved");
    });
    let reopened = Registry::open(&h.dir).expect("reopened");
    let h = Harness {
        dir: temp_dir(),
        registry: reopened,
        api: Model::default(),
        auth: AuthConfig::accept_any(),
    };
    assert_eq!(h.info("cam")["Status"], "ACTIVE");
    assert_eq!(h.internal_retention("cam"), 100);
}

#[test]
fn internal_stream_names_fit_kinesis_and_differ_per_incarnation_and_name() {
    let long_a = format!("{}a", "x".repeat(255));
    let long_b = format!("{}b", "x".repeat(255));
    let a = internal_stream_name(&long_a, 1_700_000_000_000);
    assert!(a.len() <= sluice_core::limits::STREAM_NAME_CHARS_MAX, "{a}");
    assert_ne!(a, internal_stream_name(&long_b, 1_700_000_000_000));
    assert_ne!(a, internal_stream_name(&long_a, 1_700_000_000_000));
    assert!(sluice_core::internal_stream::is_internal(&a));
}
