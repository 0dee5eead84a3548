//! Engine tests that need the owning core's internals (seals and in-flight appends).

use super::*;

fn records(n: usize) -> Vec<AppendRecord> {
    (0..n)
        .map(|i| AppendRecord {
            partition_key: format!("k{i}"),
            data: vec![1; 10],
        })
        .collect()
}

/// The seal of a reshard must report a tip that no accepted append moves afterwards, or a
/// record acknowledged to its writer would land past the parent's closing position and never
/// be read. So a seal waits for the appends already accepted on the shard, and refuses the
/// ones that come after it (handing their records back for rerouting).
#[test]
fn a_seal_waits_for_appends_in_flight_and_refuses_later_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = EngineConfig::new(dir.path().join("data"));
    config.cores = 1;
    config.pin_cores = false;
    config.segment_bytes = 1 << 20;
    config.catalog.create_delay_ms = 0;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    run(config, move |engine| {
        let done_tx = done_tx.clone();
        async move {
            let input = CreateStreamInput {
                stream_name: "s".into(),
                shard_count: Some(1),
                stream_mode: None,
                tags: Vec::new(),
            };
            engine.create_stream(input).await.expect("stream created");
            let target = {
                let catalog = engine.catalog_read();
                let stream = catalog.live_stream("s", now_ms()).expect("stream exists");
                engine.resolve_target(stream, stream.shard(0).expect("shard 0"))
            };
            let first = engine
                .append_on_owner(target.log_id, target.key.to_key(), records(2))
                .await;
            assert!(
                matches!(
                    first,
                    Ok(LogAppended {
                        first_position: 0,
                        ..
                    })
                ),
                "{first:?}"
            );
            // Accepted (counted in flight) but not yet committed when the seal arrives.
            let in_flight = engine.append_on_owner(target.log_id, target.key.to_key(), records(3));
            let tips = engine
                .seal_on_owner(vec![(target.log_id, target.key.clone())])
                .await;
            let LogAppended { first_position, .. } = in_flight
                .await
                .expect("an append accepted before the seal is stored");
            assert_eq!(first_position, 2);
            assert_eq!(
                tips,
                vec![5],
                "the tip includes the append that was in flight"
            );
            match engine
                .append_on_owner(target.log_id, target.key.to_key(), records(4))
                .await
            {
                Err(AppendFailure::Sealed(back)) => {
                    assert_eq!(back.len(), 4, "the records come back")
                }
                other => panic!("an append after the seal must be refused, got {other:?}"),
            }
            let again = engine
                .seal_on_owner(vec![(target.log_id, target.key.clone())])
                .await;
            assert_eq!(again, vec![5], "sealing again reports the same tip");
            done_tx.send(()).expect("the test waits");
        }
    })
    .expect("the engine runs");
    done_rx
        .recv_timeout(Duration::from_secs(1))
        .expect("the test body ran");
}
