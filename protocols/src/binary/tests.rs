//! Round trips of every frame type, split-anywhere decoding, and the decoder's refusal of
//! malformed input without panicking.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::binary::limits::{self, FRAME_BYTES_MAX, HEADER_BYTES, MAGIC};
use crate::binary::*;

fn encode(frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(frame, &mut out).expect("test frames are within limits");
    out
}

fn decode_whole(bytes: &[u8]) -> Frame<'_> {
    let (frame, n) = decode_frame(bytes)
        .expect("valid frame")
        .expect("complete frame");
    assert_eq!(n, bytes.len());
    frame
}

/// Owned strings and byte buffers the strategies produce; frames borrow from them.
#[derive(Clone, Debug)]
struct Texts {
    names: Vec<String>,
    datas: Vec<Vec<u8>>,
}

fn texts() -> impl Strategy<Value = Texts> {
    (vec(".{0,12}", 1..6), vec(vec(any::<u8>(), 0..40), 1..6))
        .prop_map(|(names, datas)| Texts { names, datas })
}

fn sequence_number() -> impl Strategy<Value = WireSequenceNumber> {
    (any::<u64>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
        |(shard_created_s, shard_index, position, arrival_s)| WireSequenceNumber {
            shard_created_s,
            shard_index,
            position,
            arrival_s,
        },
    )
}

fn hash_range() -> impl Strategy<Value = WireHashRange> {
    (any::<u128>(), any::<u128>()).prop_map(|(starting, ending)| WireHashRange { starting, ending })
}

fn start() -> impl Strategy<Value = WireStartPosition> {
    prop_oneof![
        Just(WireStartPosition::TrimHorizon),
        Just(WireStartPosition::Latest),
        any::<u64>().prop_map(|timestamp_ms| WireStartPosition::AtTimestamp { timestamp_ms }),
        sequence_number().prop_map(WireStartPosition::AtSequenceNumber),
        sequence_number().prop_map(WireStartPosition::AfterSequenceNumber),
        any::<u64>().prop_map(WireStartPosition::AtPosition),
    ]
}

fn status() -> impl Strategy<Value = WireStatus> {
    any::<u16>().prop_map(WireStatus)
}

/// 32 bytes that differ with `seed`, for nonces and signatures.
fn bytes_32(seed: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&seed.rotate_left(i as u32 * 13).to_le_bytes());
    }
    bytes
}

/// Every body, with strings and data drawn from `t`. The `selector` picks names and data by
/// index so that the frames can borrow from `t`.
fn body<'a>(t: &'a Texts, choice: u8, sel: &Selection) -> Body<'a> {
    let name = |i: usize| t.names[i % t.names.len()].as_str();
    let data = |i: usize| t.datas[i % t.datas.len()].as_slice();
    match choice % 27 {
        0 => Body::Hello(WireClientHello {
            magic: MAGIC,
            versions: sel.versions.clone(),
        }),
        1 => Body::HelloOk(WireServerHello {
            version: sel.a16,
            core_count: sel.b16,
            core_id: sel.c16,
            core_ports: sel.versions.clone(),
            challenge: (sel.a16 >= limits::AUTH_VERSION_MIN).then(|| WireAuthChallenge {
                auth_required: sel.a32.is_multiple_of(2),
                server_nonce: bytes_32(sel.a64),
            }),
            ingest_credit_bytes: (sel.a16 >= limits::INGEST_CREDIT_VERSION_MIN).then_some(sel.b32),
        }),
        2 => Body::Ping,
        3 => Body::Pong,
        4 => Body::CreateStream(WireCreateStream {
            stream_name: name(0),
            shard_count: sel.a32,
        }),
        5 => Body::CreateStreamOk,
        6 => Body::DescribeStream(WireStreamName {
            stream_name: name(1),
        }),
        7 => Body::DescribeStreamOk(WireStreamDescription {
            stream_name: name(0),
            stream_status: [
                WireStreamStatus::Creating,
                WireStreamStatus::Deleting,
                WireStreamStatus::Active,
                WireStreamStatus::Updating,
            ][usize::from(sel.c16 % 4)],
            stream_mode: if sel.a32.is_multiple_of(2) {
                WireStreamMode::Provisioned
            } else {
                WireStreamMode::OnDemand
            },
            retention_period_hours: sel.a32,
            stream_creation_timestamp_ms: sel.a64,
            shards: sel
                .shards
                .iter()
                .map(
                    |(index, parent, adjacent, range, core, starting, ending)| WireShard {
                        shard_index: *index,
                        parent_shard_index: *parent,
                        adjacent_parent_shard_index: *adjacent,
                        hash_range: *range,
                        core_id: *core,
                        starting_sequence_number: *starting,
                        ending_sequence_number: *ending,
                    },
                )
                .collect(),
        }),
        8 => Body::ListStreams(WireListStreams {
            exclusive_start_stream_name: Some(name(2)).filter(|n| !n.is_empty()),
            limit: sel.a32,
        }),
        9 => Body::ListStreamsOk(WireStreamList {
            stream_names: t.names.iter().map(String::as_str).collect(),
            has_more_streams: sel.a32 % 2 == 1,
        }),
        10 => Body::GetShardMap(WireStreamName {
            stream_name: name(3),
        }),
        11 => Body::GetShardMapOk(WireShardMap {
            shards: sel
                .shards
                .iter()
                .map(
                    |(shard_index, _, _, hash_range, core_id, _, _)| WireShardMapEntry {
                        shard_index: *shard_index,
                        hash_range: *hash_range,
                        core_id: *core_id,
                    },
                )
                .collect(),
        }),
        12 => Body::PutBatch(WirePutBatch {
            stream_name: name(0),
            records: sel
                .routes
                .iter()
                .enumerate()
                .map(|(i, route)| WirePutRecord {
                    route: *route,
                    partition_key: name(i),
                    data: data(i),
                })
                .collect(),
        }),
        13 => Body::PutBatchOk(WirePutBatchResult {
            records: sel
                .results
                .iter()
                .map(|r| match r {
                    Ok(s) => Ok(*s),
                    // Zero means success on the wire, so a failure carries a non-zero code.
                    Err(status) => Err(WireStatus(status.0.max(1))),
                })
                .collect(),
        }),
        14 => Body::Read(WireRead {
            stream_name: name(1),
            shard_index: sel.a32,
            start: sel.start,
            records_max: sel.a32,
            bytes_max: sel.b32,
        }),
        15 | 16 => {
            let records = WireRecords {
                shard_created_s: sel.a64,
                shard_index: sel.a32,
                records: sel
                    .positions
                    .iter()
                    .enumerate()
                    .map(|(i, (position, arrival_s, arrival_ms))| WireRecord {
                        position: *position,
                        arrival_s: *arrival_s,
                        approximate_arrival_timestamp_ms: *arrival_ms,
                        partition_key: name(i),
                        data: data(i),
                    })
                    .collect(),
                next_position: sel.next_position,
                millis_behind_latest: sel.a64,
            };
            if choice % 27 == 15 {
                Body::ReadOk(records)
            } else {
                Body::RecordsEvent(records)
            }
        }
        17 => Body::Subscribe(WireSubscribe {
            stream_name: name(2),
            shard_index: sel.b32,
            start: sel.start,
            credits: sel.a32,
        }),
        18 => Body::SubscribeOk,
        19 => Body::Credit(WireCredit {
            subscription_id: sel.a64,
            credits: sel.b32,
        }),
        20 => Body::Unsubscribe(WireUnsubscribe {
            subscription_id: sel.a64,
        }),
        21 => Body::UnsubscribeOk,
        23 => Body::Auth(WireAuth {
            access_key_id: name(3),
            signature: bytes_32(sel.a64 ^ u64::from(sel.b32)),
        }),
        24 => Body::AuthOk,
        22 => Body::Error(WireError {
            opcode: sel.a16,
            status: sel.status,
            message: name(4),
        }),
        25 => Body::SubscriptionEnded(WireSubscriptionEnded {
            status: sel.status,
            message: name(0),
        }),
        _ => Body::IngestCredit(WireIngestCredit { bytes: sel.b32 }),
    }
}

type ShardTuple = (
    u32,
    Option<u32>,
    Option<u32>,
    WireHashRange,
    u16,
    WireSequenceNumber,
    Option<WireSequenceNumber>,
);

#[derive(Clone, Debug)]
struct Selection {
    a16: u16,
    b16: u16,
    c16: u16,
    a32: u32,
    b32: u32,
    a64: u64,
    versions: Vec<u16>,
    shards: Vec<ShardTuple>,
    routes: Vec<WireRoute>,
    results: Vec<Result<WireSequenceNumber, WireStatus>>,
    positions: Vec<(u64, u64, u64)>,
    next_position: Option<u64>,
    start: WireStartPosition,
    status: WireStatus,
}

fn selection() -> impl Strategy<Value = Selection> {
    let route = prop_oneof![
        Just(WireRoute::PartitionKey),
        any::<u128>().prop_map(WireRoute::ExplicitHashKey),
        any::<u32>().prop_map(WireRoute::ShardIndex),
    ];
    let shard = (
        any::<u32>(),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
        hash_range(),
        any::<u16>(),
        sequence_number(),
        proptest::option::of(sequence_number()),
    );
    (
        (
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
        ),
        vec(any::<u16>(), 0..16),
        vec(shard, 0..5),
        vec(route, 0..6),
        vec(
            prop_oneof![sequence_number().prop_map(Ok), status().prop_map(Err)],
            0..6,
        ),
        vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..6),
        any::<Option<u64>>(),
        start(),
        status(),
    )
        .prop_map(
            |(
                (a16, b16, c16, a32, b32, a64),
                versions,
                shards,
                routes,
                results,
                positions,
                next_position,
                start,
                status,
            )| Selection {
                a16,
                b16,
                c16,
                a32,
                b32,
                a64,
                versions,
                shards,
                routes,
                results,
                positions,
                next_position,
                start,
                status,
            },
        )
}

proptest! {
    #[test]
    fn every_frame_type_round_trips(t in texts(), sel in selection(), request_id in any::<u64>(), choice in 0u8..27) {
        let frame = Frame { request_id, body: body(&t, choice, &sel) };
        let bytes = encode(&frame);
        prop_assert_eq!(bytes.len(), u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize);
        prop_assert_eq!(decode_whole(&bytes), frame);
    }

    #[test]
    fn decoding_split_at_any_point_equals_decoding_whole(
        t in texts(), sel in selection(), choices in vec(0u8..24, 1..5), cuts in vec(any::<prop::sample::Index>(), 0..6)
    ) {
        let frames: Vec<Frame<'_>> = choices.iter().enumerate().map(|(i, c)| Frame { request_id: i as u64, body: body(&t, *c, &sel) }).collect();
        let mut stream = Vec::new();
        for frame in &frames {
            encode_frame(frame, &mut stream).expect("within limits");
        }
        let mut cut_points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cut_points.push(0);
        cut_points.push(stream.len());
        cut_points.sort_unstable();
        let mut decoder = FrameDecoder::new();
        let mut seen = Vec::new();
        // Every frame's shared bytes, held while later frames arrive (as a put's records are
        // held until stored): what comes after must never overwrite them.
        let mut held = Vec::new();
        for pair in cut_points.windows(2) {
            decoder.push(&stream[pair[0]..pair[1]]);
            while let Some((frame, bytes)) = decoder.next_frame_shared().expect("valid stream") {
                // Re-encode to own the frame beyond the decoder's borrow.
                seen.push(encode(&frame));
                held.push(bytes);
            }
        }
        let expected: Vec<Vec<u8>> = frames.iter().map(encode).collect();
        prop_assert_eq!(&seen, &expected);
        let held: Vec<Vec<u8>> = held.iter().map(|b| b.to_vec()).collect();
        prop_assert_eq!(held, expected);
        prop_assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes);
        let mut decoder = FrameDecoder::new();
        decoder.push(&bytes);
        for _ in 0..64 {
            match decoder.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn arbitrary_payloads_behind_a_valid_header_never_panic(opcode in 0u16..0x50, flag_bits in 0u16..8, payload in vec(any::<u8>(), 0..256)) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((HEADER_BYTES + payload.len()) as u32).to_le_bytes());
        bytes.extend_from_slice(&opcode.to_le_bytes());
        bytes.extend_from_slice(&flag_bits.to_le_bytes());
        bytes.extend_from_slice(&7u64.to_le_bytes());
        bytes.extend_from_slice(&payload);
        match decode_frame(&bytes) {
            Ok(Some((frame, n))) => {
                prop_assert_eq!(n, bytes.len());
                // Each frame has one encoding, so whatever decodes re-encodes to the same bytes.
                prop_assert_eq!(encode(&frame), bytes);
            }
            Ok(None) => prop_assert!(false, "a whole frame is present"),
            Err(error) => {
                prop_assert!(!error.is_fatal());
                prop_assert_eq!(error.request_id(), Some(7));
            }
        }
    }

    #[test]
    fn a_valid_frame_with_one_byte_changed_never_panics_and_stays_canonical(
        t in texts(), sel in selection(), choice in 0u8..24, at in any::<prop::sample::Index>(), value in any::<u8>()
    ) {
        let mut bytes = encode(&Frame { request_id: 1, body: body(&t, choice, &sel) });
        let at = at.index(bytes.len());
        bytes[at] = value;
        if let Ok(Some((frame, n))) = decode_frame(&bytes) {
            prop_assert_eq!(encode(&frame), &bytes[..n]);
        }
        let mut decoder = FrameDecoder::new();
        decoder.push(&bytes);
        let _ = decoder.next_frame();
    }

    #[test]
    fn truncating_a_valid_frame_asks_for_more_bytes(t in texts(), sel in selection(), choice in 0u8..24, cut in any::<prop::sample::Index>()) {
        let bytes = encode(&Frame { request_id: 1, body: body(&t, choice, &sel) });
        let cut = cut.index(bytes.len());
        prop_assert_eq!(decode_frame(&bytes[..cut]), Ok(None));
    }

    #[test]
    fn records_writer_output_equals_encoding_the_collected_frame(t in texts(), sel in selection(), event in any::<bool>()) {
        let expected_body = body(&t, if event { 16 } else { 15 }, &sel);
        let (Body::ReadOk(records) | Body::RecordsEvent(records)) = &expected_body else {
            panic!("choices 15 and 16 are records bodies")
        };
        let mut out = vec![0xAA];
        let mut writer = if event {
            RecordsWriter::records_event(&mut out, 9, records.shard_created_s, records.shard_index)
        } else {
            RecordsWriter::read_response(&mut out, 9, records.shard_created_s, records.shard_index)
        };
        for r in &records.records {
            writer.push(r.position, r.arrival_s, r.approximate_arrival_timestamp_ms, r.partition_key, r.data).expect("fits");
        }
        writer.finish(records.next_position, records.millis_behind_latest);
        let mut expected = vec![0xAA];
        encode_frame(&Frame { request_id: 9, body: expected_body.clone() }, &mut expected).expect("fits");
        prop_assert_eq!(out, expected);
    }
}

#[test]
fn a_length_below_the_header_is_fatal_and_sticks() {
    let mut decoder = FrameDecoder::new();
    decoder.push(&[3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let error = decoder.next_frame().expect_err("length 3 is impossible");
    assert!(error.is_fatal());
    assert_eq!(error.status(), StatusCode::BadFrame);
    decoder.push(&encode(&Frame {
        request_id: 1,
        body: Body::Ping,
    }));
    assert_eq!(decoder.next_frame().expect_err("still poisoned"), error);
}

#[test]
fn a_length_above_the_limit_is_fatal_without_waiting_for_the_bytes() {
    let mut bytes = ((FRAME_BYTES_MAX + 1) as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0x20, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
    let error = decode_frame(&bytes).expect_err("too large");
    assert_eq!(error.status(), StatusCode::FrameTooLarge);
    assert!(error.is_fatal());
}

#[test]
fn a_skipped_frame_is_dropped_as_it_arrives_and_the_next_frame_decodes() {
    let big = encode(&Frame {
        request_id: 1,
        body: Body::PutBatch(WirePutBatch {
            stream_name: "s",
            records: vec![WirePutRecord {
                route: WireRoute::ShardIndex(0),
                partition_key: "",
                data: &[7; 1000],
            }],
        }),
    });
    let ping = encode(&Frame {
        request_id: 2,
        body: Body::Ping,
    });
    let mut decoder = FrameDecoder::new();
    decoder.push(&big[..100]);
    let header = decoder.peek_header().expect("the header has arrived");
    assert_eq!(header.frame_bytes as usize, big.len());
    assert_eq!(header.opcode, Opcode::PutBatch.code());
    decoder.skip_frame();
    assert_eq!(decoder.buffered_bytes(), 0);
    assert_eq!(
        decoder.peek_header(),
        None,
        "still inside the skipped frame"
    );
    decoder.push(&big[100..600]);
    assert_eq!(
        decoder.buffered_bytes(),
        0,
        "the skipped payload is never kept"
    );
    let mut rest = big[600..].to_vec();
    rest.extend_from_slice(&ping);
    decoder.push(&rest);
    let frame = decoder.next_frame().expect("decodes").expect("complete");
    assert_eq!(frame.request_id, 2);
    assert_eq!(frame.body, Body::Ping);
}

#[test]
fn an_unknown_opcode_is_skipped_and_answerable() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&20u32.to_le_bytes());
    bytes.extend_from_slice(&0x7777u16.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&42u64.to_le_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 4]);
    bytes.extend_from_slice(&encode(&Frame {
        request_id: 43,
        body: Body::Ping,
    }));
    let mut decoder = FrameDecoder::new();
    decoder.push(&bytes);
    let error = decoder.next_frame().expect_err("unknown opcode");
    assert_eq!(
        error,
        DecodeError::UnknownOperation {
            request_id: 42,
            opcode: 0x7777,
            flags: 0
        }
    );
    assert!(!error.is_fatal());
    let next = decoder
        .next_frame()
        .expect("decoding continues")
        .expect("the ping follows");
    assert_eq!(
        next,
        Frame {
            request_id: 43,
            body: Body::Ping
        }
    );
}

#[test]
fn an_error_answer_to_an_unknown_opcode_decodes() {
    let frame = Frame {
        request_id: 5,
        body: Body::Error(WireError {
            opcode: 0x7777,
            status: StatusCode::UnknownOperation.into(),
            message: "no",
        }),
    };
    assert_eq!(decode_whole(&encode(&frame)), frame);
}

#[test]
fn reserved_flag_bits_are_refused() {
    let mut bytes = encode(&Frame {
        request_id: 1,
        body: Body::Ping,
    });
    bytes[6] = 0x80;
    let error = decode_frame(&bytes).expect_err("reserved flag");
    assert!(
        matches!(
            error,
            DecodeError::BadFrame {
                reason: BodyError::BadFlags { flags: 0x80 },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_hello_without_the_magic_is_refused() {
    let mut bytes = encode(&Frame {
        request_id: 1,
        body: Body::Hello(WireClientHello {
            magic: MAGIC,
            versions: vec![1],
        }),
    });
    bytes[HEADER_BYTES] = b'X';
    let error = decode_frame(&bytes).expect_err("bad magic");
    assert!(
        matches!(
            error,
            DecodeError::BadFrame {
                reason: BodyError::BadMagic,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn trailing_bytes_after_a_payload_are_refused() {
    let mut bytes = encode(&Frame {
        request_id: 1,
        body: Body::Ping,
    });
    bytes.push(0);
    bytes[0] += 1;
    let error = decode_frame(&bytes).expect_err("trailing byte");
    assert!(
        matches!(
            error,
            DecodeError::BadFrame {
                reason: BodyError::TrailingBytes { bytes: 1 },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_forged_record_count_does_not_allocate() {
    // A PutBatch claiming 10,000 records in a payload of a few bytes.
    let mut payload = Vec::new();
    payload.extend_from_slice(&1u16.to_le_bytes());
    payload.push(b's');
    payload.extend_from_slice(&10_000u32.to_le_bytes());
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&((HEADER_BYTES + payload.len()) as u32).to_le_bytes());
    bytes.extend_from_slice(&Opcode::PutBatch.code().to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&payload);
    let error = decode_frame(&bytes).expect_err("count exceeds the payload");
    assert!(
        matches!(
            error,
            DecodeError::BadFrame {
                reason: BodyError::Truncated { .. },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn invalid_utf8_in_a_stream_name_is_refused() {
    let mut bytes = encode(&Frame {
        request_id: 1,
        body: Body::DescribeStream(WireStreamName { stream_name: "ab" }),
    });
    bytes[HEADER_BYTES + 2] = 0xFF;
    let error = decode_frame(&bytes).expect_err("not UTF-8");
    assert!(
        matches!(
            error,
            DecodeError::BadFrame {
                reason: BodyError::InvalidUtf8 { .. },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn an_oversized_string_is_an_encode_error_that_leaves_the_buffer_alone() {
    let long = "x".repeat(70_000);
    let mut out = vec![1, 2, 3];
    let error = encode_frame(
        &Frame {
            request_id: 1,
            body: Body::DescribeStream(WireStreamName { stream_name: &long }),
        },
        &mut out,
    )
    .expect_err("too long");
    assert!(matches!(error, EncodeError::TooLong { .. }));
    assert_eq!(out, vec![1, 2, 3]);
}

#[test]
fn a_records_writer_dropped_unfinished_leaves_no_partial_frame() {
    let mut out = vec![9];
    {
        let mut writer = RecordsWriter::read_response(&mut out, 1, 2, 3);
        writer.push(0, 1, 1000, "k", b"data").expect("fits");
    }
    assert_eq!(out, vec![9]);
}

#[test]
fn a_records_writer_reserved_for_its_records_writes_them_into_one_allocation() {
    let key = "0123456789abcdef0123456789abcdef";
    let data = vec![7u8; 1000];
    let count = 2_000;
    let mut out = Vec::new();
    let mut writer = RecordsWriter::read_response(&mut out, 1, 2, 3);
    writer.reserve(count, count * (key.len() + data.len()));
    let reserved = writer.buffer();
    for position in 0..count as u64 {
        writer.push(position, 1, 1, key, &data).expect("fits");
        assert_eq!(
            writer.buffer(),
            reserved,
            "the buffer grew at record {position}"
        );
    }
    writer.finish(None, 0);
    let Body::ReadOk(records) = decode_whole(&out).body else {
        panic!("a read response")
    };
    assert_eq!(records.records.len(), count);
    // A reservation never asks for more than one frame may hold (a buffer from the pool of
    // large buffers may be a little bigger than that, never more than the pool keeps).
    let mut out = Vec::new();
    let mut writer = RecordsWriter::read_response(&mut out, 1, 2, 3);
    writer.reserve(limits::READ_RECORDS_MAX as usize, 1 << 40);
    let capacity = writer.buffer().1;
    assert!(capacity >= FRAME_BYTES_MAX - HEADER_BYTES);
    assert!(
        capacity
            <= sluice_core::large_buffers::POOLED_BYTES_MAX.max(FRAME_BYTES_MAX + HEADER_BYTES)
    );
}

#[test]
fn a_put_batch_is_encoded_into_one_allocation_of_its_exact_size() {
    let data = vec![7u8; 1000];
    let keys: Vec<String> = (0..500).map(|i| format!("key-{i}")).collect();
    let routes = [
        WireRoute::PartitionKey,
        WireRoute::ExplicitHashKey(u128::MAX / 3),
        WireRoute::ShardIndex(4),
    ];
    let body = Body::PutBatch(WirePutBatch {
        stream_name: "orders",
        records: keys
            .iter()
            .enumerate()
            .map(|(i, key)| WirePutRecord {
                route: routes[i % routes.len()],
                partition_key: key,
                data: &data[..i % data.len()],
            })
            .collect(),
    });
    let mut out = Vec::new();
    encode_frame(
        &Frame {
            request_id: 9,
            body: body.clone(),
        },
        &mut out,
    )
    .expect("fits");
    assert_eq!(
        out.capacity(),
        out.len(),
        "reserved exactly what was written"
    );
    assert_eq!(decode_whole(&out).body, body);
}

#[test]
fn a_records_writer_refuses_a_record_that_would_overflow_the_frame() {
    let mut out = Vec::new();
    let mut writer = RecordsWriter::read_response(&mut out, 1, 2, 3);
    let big = vec![0u8; FRAME_BYTES_MAX / 2];
    writer.push(0, 1, 1, "k", &big).expect("half a frame fits");
    assert!(!writer.fits(1, big.len()));
    let error = writer
        .push(1, 1, 1, "k", &big)
        .expect_err("a second half does not");
    assert!(matches!(error, EncodeError::FrameTooLarge { .. }));
    assert_eq!(writer.len(), 1);
    writer.finish(Some(1), 0);
    let frame = decode_whole(&out);
    let Body::ReadOk(records) = frame.body else {
        panic!("a read response")
    };
    assert_eq!(records.records.len(), 1);
    assert_eq!(records.next_position, Some(1));
}

#[test]
fn a_server_chooses_the_highest_common_version() {
    let hello = WireClientHello {
        magic: MAGIC,
        versions: vec![3, 1, 2],
    };
    assert_eq!(hello.choose_version(&[1, 2]), Some(2));
    assert_eq!(hello.choose_version(&[4]), None);
}

#[test]
fn an_absent_field_that_is_not_zero_is_refused() {
    let records = WireRecords {
        shard_created_s: 1,
        shard_index: 2,
        records: vec![],
        next_position: None,
        millis_behind_latest: 0,
    };
    let mut bytes = encode(&Frame {
        request_id: 1,
        body: Body::ReadOk(records),
    });
    // The next position follows shard_created_s (8), shard_index (4) and has_next (1).
    bytes[HEADER_BYTES + 13] = 1;
    let error = decode_frame(&bytes).expect_err("non-canonical");
    assert!(
        matches!(
            error,
            DecodeError::BadFrame {
                reason: BodyError::NonZeroAbsent { .. },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn the_header_layout_is_length_opcode_flags_request_id() {
    let bytes = encode(&Frame {
        request_id: 0x0102_0304_0506_0708,
        body: Body::Pong,
    });
    assert_eq!(bytes, [16, 0, 0, 0, 2, 0, 1, 0, 8, 7, 6, 5, 4, 3, 2, 1]);
}

#[test]
fn the_specification_examples_encode_as_documented() {
    // The hex in docs/binary-protocol.md, section Examples.
    let hex = |s: &str| -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
            .collect()
    };
    assert_eq!(
        encode(&Frame {
            request_id: 1,
            body: Body::Ping
        }),
        hex("10 00 00 00  02 00  00 00  01 00 00 00 00 00 00 00")
    );
    assert_eq!(
        encode(&Frame {
            request_id: 1,
            body: Body::Pong
        }),
        hex("10 00 00 00  02 00  01 00  01 00 00 00 00 00 00 00")
    );
    assert_eq!(
        encode(&Frame {
            request_id: 7,
            body: Body::CreateStream(WireCreateStream {
                stream_name: "s",
                shard_count: 2
            })
        }),
        hex("17 00 00 00  10 00  00 00  07 00 00 00 00 00 00 00  01 00 73  02 00 00 00")
    );
    let refused = WireError {
        opcode: Opcode::CreateStream.code(),
        status: StatusCode::ResourceInUse.into(),
        message: "exists",
    };
    assert_eq!(
        encode(&Frame {
            request_id: 7,
            body: Body::Error(refused)
        }),
        hex("1a 00 00 00  10 00  03 00  07 00 00 00 00 00 00 00  02 00  06 00 65 78 69 73 74 73")
    );
}

#[test]
fn a_server_hello_carries_the_challenge_from_version_2_on_and_the_ingest_credit_from_version_3_on()
{
    let hello = |version, challenge, ingest_credit_bytes| {
        Body::HelloOk(WireServerHello {
            version,
            core_count: 1,
            core_id: 0,
            core_ports: vec![4568],
            challenge,
            ingest_credit_bytes,
        })
    };
    let challenge = WireAuthChallenge {
        auth_required: true,
        server_nonce: [9; 32],
    };
    let v1 = encode(&Frame {
        request_id: 0,
        body: hello(1, None, None),
    });
    let v2 = encode(&Frame {
        request_id: 0,
        body: hello(2, Some(challenge), None),
    });
    let v3 = encode(&Frame {
        request_id: 0,
        body: hello(3, Some(challenge), Some(0x0200_0000)),
    });
    // version, core count, core id, port count, one port; then auth_required and the nonce;
    // then the ingest credit.
    assert_eq!(v1.len(), HEADER_BYTES + 10);
    assert_eq!(v2.len(), HEADER_BYTES + 10 + 1 + 32);
    assert_eq!(v3.len(), HEADER_BYTES + 10 + 1 + 32 + 4);
    // After the length and the version each version only appends to the one before.
    let after_version = HEADER_BYTES + 2;
    assert_eq!(
        v2[after_version..v1.len()],
        v1[after_version..],
        "version 2 only appends"
    );
    assert_eq!(
        v3[after_version..v2.len()],
        v2[after_version..],
        "version 3 only appends"
    );
    assert_eq!(v2[4..HEADER_BYTES], v1[4..HEADER_BYTES]);
    assert_eq!(v2[HEADER_BYTES + 10], 1);
    assert_eq!(v2[HEADER_BYTES + 11..], [9; 32]);
    assert_eq!(v3[v2.len()..], [0x00, 0x00, 0x00, 0x02]);
    assert_eq!(decode_whole(&v2).body, hello(2, Some(challenge), None));
    assert_eq!(
        decode_whole(&v3).body,
        hello(3, Some(challenge), Some(0x0200_0000))
    );

    for (version, challenge) in [(1, Some(challenge)), (2, None)] {
        let mut out = Vec::new();
        let error = encode_frame(
            &Frame {
                request_id: 0,
                body: hello(version, challenge, None),
            },
            &mut out,
        )
        .expect_err("the challenge must match the version");
        assert_eq!(error, EncodeError::HelloChallengeMismatch { version });
        assert!(
            out.is_empty(),
            "a failed encode leaves the buffer as it was"
        );
    }
    for (version, credit) in [(2, Some(1)), (3, None)] {
        let mut out = Vec::new();
        let error = encode_frame(
            &Frame {
                request_id: 0,
                body: hello(version, Some(challenge), credit),
            },
            &mut out,
        )
        .expect_err("the ingest credit must match the version");
        assert_eq!(error, EncodeError::HelloIngestCreditMismatch { version });
        assert!(out.is_empty());
    }
}

#[test]
fn an_ingest_credit_is_a_push_with_one_u32() {
    let bytes = encode(&Frame {
        request_id: 0,
        body: Body::IngestCredit(WireIngestCredit { bytes: 0x0102_0304 }),
    });
    assert_eq!(
        bytes,
        [
            0x14, 0, 0, 0, 0x21, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x04, 0x03, 0x02, 0x01
        ]
    );
    assert_eq!(
        decode_whole(&bytes).body,
        Body::IngestCredit(WireIngestCredit { bytes: 0x0102_0304 })
    );
}

#[test]
fn an_auth_is_its_access_key_id_then_the_32_byte_signature() {
    let bytes = encode(&Frame {
        request_id: 3,
        body: Body::Auth(WireAuth {
            access_key_id: "AK",
            signature: [0xab; 32],
        }),
    });
    let mut expected = vec![52, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
    expected.extend_from_slice(&[2, 0, b'A', b'K']);
    expected.extend_from_slice(&[0xab; 32]);
    assert_eq!(bytes, expected);
    let answer = encode(&Frame {
        request_id: 3,
        body: Body::AuthOk,
    });
    assert_eq!(answer, [16, 0, 0, 0, 3, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
}
