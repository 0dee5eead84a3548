//! Kinesis JSON 1.1 request bodies: whatever the body and whichever operation it is sent to, the
//! front end answers with a well-formed response (an HTTP status and, for errors, a JSON body
//! with `__type`) and never panics. Behind it is a fresh in-memory model (`sluice_protocols::model`)
//! holding one stream, `fuzz`, of two shards, so a body that decodes also reaches the operation
//! and the encoding of its result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_protocols::kinesis::MODEL_OPERATIONS;
use sluice_protocols::model::Model;
use sluice_protocols::{HttpRequest, handle_kinesis};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let operation = MODEL_OPERATIONS[usize::from(selector) % MODEL_OPERATIONS.len()];
    let target = format!("Kinesis_20131202.{operation}");
    let request = HttpRequest {
        method: "POST",
        path: "/",
        target: Some(&target),
        content_type: Some("application/x-amz-json-1.1"),
        has_auth: true,
        authorization: Some(
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        ),
        query: None,
        has_date: true,
        origin: None,
        access_control_request_headers: None,
        access_control_request_method: None,
        headers: &[],
        body,
    };
    // A fresh model per input, so that every input replays alone.
    let model = Model::with_stream("fuzz", 2);
    let response = futures_lite::future::block_on(handle_kinesis(&model, request));
    assert!((200..600).contains(&response.status));
    if response.status >= 400 && !response.body.is_empty() {
        let text = std::str::from_utf8(&response.body).expect("error bodies are UTF-8");
        assert!(text.contains("__type"), "error body without __type: {text}");
    }
});
