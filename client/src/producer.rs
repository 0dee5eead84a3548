//! [`Producer`]: batching with linger. `send` queues a record at once and returns a future of
//! its sequence number. A background task gathers queued records into a batch and sends it
//! when it reaches `batch_records_max` records or `batch_bytes_max` bytes, or `linger` after
//! its first record, whichever comes first; up to `in_flight_batches_max` batches are in
//! flight at once. The queue itself is unbounded: a caller that produces faster than the
//! server accepts should bound the sends it has outstanding.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sluice_core::sequence_number::SequenceNumber;
use sluice_protocols::binary::limits::{FRAME_BYTES_MAX, PUT_BATCH_RECORDS_MAX};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::ClientError;
use crate::types::PutRecord;

#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// Clamped to `1..=PUT_BATCH_RECORDS_MAX`.
    pub batch_records_max: usize,
    /// Partition key plus data bytes; clamped to half the frame limit so a batch always fits.
    pub batch_bytes_max: usize,
    /// How long the first record of a batch waits for company.
    pub linger: Duration,
    pub in_flight_batches_max: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            batch_records_max: 500,
            batch_bytes_max: 1024 * 1024,
            linger: Duration::from_millis(5),
            in_flight_batches_max: 8,
        }
    }
}

struct Queued {
    partition_key: String,
    data: Vec<u8>,
    done: oneshot::Sender<Result<SequenceNumber, ClientError>>,
}

enum Command {
    Send(Queued),
    Flush(oneshot::Sender<()>),
}

/// A batching producer for one stream; see the module docs. Dropping it still delivers what
/// was sent before.
#[derive(Debug)]
pub struct Producer {
    commands: mpsc::UnboundedSender<Command>,
}

/// The sequence number of one sent record, once its batch is acknowledged.
#[derive(Debug)]
pub struct SendFuture {
    receiver: oneshot::Receiver<Result<SequenceNumber, ClientError>>,
}

impl Future for SendFuture {
    type Output = Result<SequenceNumber, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::ProducerClosed)))
    }
}

impl Producer {
    pub(crate) fn spawn(client: Client, stream_name: String, config: ProducerConfig) -> Self {
        let config = ProducerConfig {
            batch_records_max: config.batch_records_max.clamp(1, PUT_BATCH_RECORDS_MAX),
            batch_bytes_max: config.batch_bytes_max.clamp(1, FRAME_BYTES_MAX / 2),
            linger: config.linger,
            in_flight_batches_max: config.in_flight_batches_max.max(1),
        };
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(client, Arc::from(stream_name), config, receiver));
        Producer { commands }
    }

    /// Queues one record routed by its partition key. The future resolves to its sequence
    /// number, or to `RecordFailed` / the batch's error.
    pub fn send(&self, partition_key: impl Into<String>, data: impl Into<Vec<u8>>) -> SendFuture {
        let (done, receiver) = oneshot::channel();
        let queued = Queued {
            partition_key: partition_key.into(),
            data: data.into(),
            done,
        };
        // If the task is gone the sender is dropped with the command and the future reports
        // `ProducerClosed`.
        let _ = self.commands.send(Command::Send(queued));
        SendFuture { receiver }
    }

    /// Sends the current batch now and waits until every batch sent so far is answered.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (done, receiver) = oneshot::channel();
        self.commands
            .send(Command::Flush(done))
            .map_err(|_| ClientError::ProducerClosed)?;
        receiver.await.map_err(|_| ClientError::ProducerClosed)
    }
}

struct Batch {
    records: Vec<Queued>,
    bytes: usize,
    deadline: Option<Instant>,
}

async fn run(
    client: Client,
    stream_name: Arc<str>,
    config: ProducerConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let permits = Arc::new(Semaphore::new(config.in_flight_batches_max));
    let mut in_flight = JoinSet::new();
    let mut batch = Batch {
        records: Vec::new(),
        bytes: 0,
        deadline: None,
    };
    let dispatch = async |batch: &mut Batch, in_flight: &mut JoinSet<()>| {
        batch.deadline = None;
        batch.bytes = 0;
        if batch.records.is_empty() {
            return;
        }
        let records = std::mem::take(&mut batch.records);
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the producer never closes its semaphore");
        let (client, stream_name) = (client.clone(), stream_name.clone());
        in_flight.spawn(async move {
            put(&client, &stream_name, records).await;
            drop(permit);
        });
    };
    loop {
        let command = match batch.deadline {
            Some(deadline) => tokio::select! {
                command = commands.recv() => Some(command),
                () = tokio::time::sleep_until(deadline) => None,
            },
            None => Some(commands.recv().await),
        };
        match command {
            // The linger of the oldest queued record ran out.
            None => dispatch(&mut batch, &mut in_flight).await,
            Some(None) => {
                dispatch(&mut batch, &mut in_flight).await;
                while in_flight.join_next().await.is_some() {}
                return;
            }
            Some(Some(Command::Send(queued))) => {
                let bytes = queued.partition_key.len() + queued.data.len();
                if !batch.records.is_empty() && batch.bytes + bytes > config.batch_bytes_max {
                    dispatch(&mut batch, &mut in_flight).await;
                }
                if batch.records.is_empty() {
                    batch.deadline = Some(Instant::now() + config.linger);
                }
                batch.records.push(queued);
                batch.bytes += bytes;
                if batch.records.len() >= config.batch_records_max
                    || batch.bytes >= config.batch_bytes_max
                {
                    dispatch(&mut batch, &mut in_flight).await;
                }
            }
            Some(Some(Command::Flush(done))) => {
                dispatch(&mut batch, &mut in_flight).await;
                while in_flight.join_next().await.is_some() {}
                let _ = done.send(());
            }
        }
        while in_flight.try_join_next().is_some() {}
    }
}

async fn put(client: &Client, stream_name: &str, queued: Vec<Queued>) {
    let records: Vec<PutRecord<'_>> = queued
        .iter()
        .map(|q| PutRecord::new(&q.partition_key, &q.data))
        .collect();
    let outcome = client.put_batch(stream_name, &records).await;
    drop(records);
    match outcome {
        Ok(results) => {
            for (queued, result) in queued.into_iter().zip(results) {
                let _ = queued
                    .done
                    .send(result.map_err(|status| ClientError::RecordFailed { status }));
            }
        }
        Err(error) => {
            for queued in queued {
                let _ = queued.done.send(Err(error.duplicate()));
            }
        }
    }
}
