//! Engine tests that need the owning core's internals (seals and in-flight appends).

use super::*;

fn records(n: usize) -> Vec<AppendRecord> {
    (0..n)
        .map(|i| AppendRecord {
            partition_key: format!("k{i}"),
            data: vec![1; 10].into(),
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

fn put_input(count: usize) -> PutRecordsInput {
    PutRecordsInput {
        stream_name: "s".into(),
        records: (0..count)
            .map(|i| PutRecordsEntry {
                data: vec![7; 10].into(),
                partition_key: format!("k{i}"),
                explicit_hash_key: None,
            })
            .collect(),
    }
}

/// Runs `body` on a one-core engine whose logs take their faults from `faults`, with a
/// one-shard stream `s`, and waits for it to finish.
fn with_faulty_engine<F, Fut>(faults: Arc<crate::log::FaultPlan>, body: F)
where
    F: Fn(Engine) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = EngineConfig::new(dir.path().join("data"));
    config.cores = 1;
    config.pin_cores = false;
    config.segment_bytes = 1 << 20;
    config.catalog.create_delay_ms = 0;
    config.faults = Some(faults);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    run(config, move |engine| {
        let done_tx = done_tx.clone();
        let body = body.clone();
        async move {
            let input = CreateStreamInput {
                stream_name: "s".into(),
                shard_count: Some(1),
                stream_mode: None,
                tags: Vec::new(),
            };
            engine.create_stream(input).await.expect("stream created");
            body(engine).await;
            done_tx.send(()).expect("the test waits");
        }
    })
    .expect("the engine runs");
    done_rx
        .recv_timeout(Duration::from_secs(1))
        .expect("the test body ran");
}

/// Guards against an I/O error that nobody sees: after a segment write fails with EIO the log
/// is poisoned, and that must show as InternalFailure on every later record and as a degraded
/// `/health` naming the log, its core and the failure, and `io_log_poisoned 1` on `/metrics`.
#[test]
fn an_eio_on_a_segment_write_fails_every_later_put_and_degrades_health_and_metrics() {
    let faults = Arc::new(crate::log::FaultPlan::default());
    let armed = faults.clone();
    with_faulty_engine(faults, move |engine| {
        let armed = armed.clone();
        async move {
            let ok = engine.put_records(put_input(2)).await.expect("put");
            assert!(ok.records.iter().all(Result::is_ok));
            assert!(engine.health().json.starts_with(r#"{"status":"ok""#));
            armed.fail_next(crate::log::FaultOp::Write, libc::EIO);
            for _ in 0..2 {
                let out = engine.put_records(put_input(3)).await.expect("put");
                for entry in &out.records {
                    let error = entry.as_ref().expect_err("the write failed");
                    assert_eq!(error.kind, sluice_core::ErrorKind::InternalFailure);
                }
            }
            let health = engine.health();
            assert!(health.degraded);
            assert!(
                health.json.contains(r#""status":"degraded""#)
                    && health
                        .json
                        .contains(r#""log_id":0,"core":0,"state":"poisoned""#)
                    && health.json.contains("writing segment 1"),
                "{}",
                health.json
            );
            let metrics = engine.render_metrics();
            assert!(
                metrics.contains(r#"io_log_poisoned{core="0",log="0"} 1"#),
                "{metrics}"
            );
            assert!(
                metrics
                    .contains(r#"io_log_write_errors_total{core="0",log="0",error_type="io"} 1"#),
                "{metrics}"
            );
        }
    });
}

/// Guards against a full disk poisoning the engine or answering with the wrong shape: while the
/// disk is full each record gets InternalFailure saying so and `/health` says `disk_full`; the
/// next write after space returns succeeds and health is `ok` again, with no restart.
#[test]
fn a_full_disk_fails_puts_with_internal_failure_and_the_next_put_succeeds() {
    let faults = Arc::new(crate::log::FaultPlan::default());
    let armed = faults.clone();
    with_faulty_engine(faults, move |engine| {
        let armed = armed.clone();
        async move {
            armed.fail_next(crate::log::FaultOp::Write, libc::ENOSPC);
            let out = engine.put_records(put_input(2)).await.expect("put");
            for entry in &out.records {
                let error = entry.as_ref().expect_err("the disk is full");
                assert_eq!(error.kind, sluice_core::ErrorKind::InternalFailure);
                assert!(error.message.contains("disk"), "{}", error.message);
            }
            let health = engine.health();
            assert!(health.degraded);
            assert!(
                health.json.contains(r#""state":"disk_full""#),
                "{}",
                health.json
            );
            assert!(engine.render_metrics().contains(
                r#"io_log_write_errors_total{core="0",log="0",error_type="disk_full"} 1"#
            ));
            let out = engine.put_records(put_input(2)).await.expect("put");
            assert!(out.records.iter().all(Result::is_ok), "{out:?}");
            assert!(!engine.health().degraded);
            assert!(
                engine
                    .render_metrics()
                    .contains(r#"io_log_disk_full{core="0",log="0"} 0"#)
            );
        }
    });
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec, and CLOCK_THREAD_CPUTIME_ID exists on every
    // Linux this runs on.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(
        u64::try_from(now.tv_sec).expect("a thread's CPU time is not negative"),
        u32::try_from(now.tv_nsec).expect("nanoseconds fit u32"),
    )
}

/// glommio silently drops `spin_before_park` for an executor with no CPU binding, so
/// `--idle-spin-us` once did nothing under `--pin-cores false`. An unpinned shard core asked to
/// spin must poll while it waits (its thread burns CPU through 300 ms of idle timers); one not
/// asked to must park (and burn next to none).
#[test]
fn an_unpinned_shard_core_asked_to_spin_polls_while_idle() {
    fn cpu_while_idle(idle_spin_us: u64) -> Duration {
        let placement = startup::shard_core_placement(0, false, idle_spin_us);
        let mut builder = LocalExecutorBuilder::new(placement).io_memory(1 << 20);
        if idle_spin_us > 0 {
            builder = builder.spin_before_park(Duration::from_micros(idle_spin_us));
        }
        builder
            .spawn(|| async move {
                let before = thread_cpu_time();
                for _ in 0..6 {
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
                thread_cpu_time() - before
            })
            .expect("an executor can be spawned")
            .join()
            .expect("the executor ran to the end")
    }
    let spinning = cpu_while_idle(1_000_000);
    let parked = cpu_while_idle(0);
    // A spinning thread shares its CPU with the rest of a parallel test run, so it is only
    // required to get a tenth of the 300 ms; a parked one uses well under a millisecond.
    assert!(
        spinning >= Duration::from_millis(30),
        "an unpinned core asked to spin used only {spinning:?} of CPU in 300 ms of idle timers"
    );
    assert!(
        parked * 4 < spinning,
        "a core not asked to spin used {parked:?} of CPU while idle, against {spinning:?} spinning"
    );
}
