//! Push subscriptions: Subscribe, Credit and Unsubscribe, and the task that reads a shard
//! through the storage face and pushes RecordsEvents while the subscription has credits (one
//! credit is one record).
//!
//! Invariants: SubscribeOk is written before the task's first push; no push follows an
//! UnsubscribeOk or a SubscriptionEnded, because the task checks for cancellation and appends
//! to the outbox with no await in between.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use sluice_core::api::RecordBatch as _;
use sluice_core::shard_id::format_shard_id;
use sluice_core::storage::{ReadLimits, ReadStart, RecordLog, ShardAddress};
use sluice_core::{KinesisApi, KinesisError};

use super::outbox::Event;
use super::requests::{read_start, write_records};
use super::{Connection, Runtime};
use crate::binary::limits::{READ_BYTES_MAX, READ_RECORDS_MAX, SUBSCRIPTION_CREDITS_MAX};
use crate::binary::{
    Body, Opcode, RecordsWriter, StatusCode, WireCredit, WireStatus, WireSubscribe,
    WireSubscriptionEnded, WireUnsubscribe,
};

/// How long one wait of a subscription for new records lasts. When it passes the subscription
/// reads again, which finds a deleted stream, and waits anew; it is not a polling interval, as
/// records wake the wait the moment they commit.
const SUBSCRIPTION_WAIT: Duration = Duration::from_secs(1);

/// The read that checks a Subscribe's start before it is answered: one record at most, and
/// its records are not pushed (the subscription reads them again from the resolved start).
const START_CHECK_LIMITS: ReadLimits = ReadLimits {
    records_max: 1,
    bytes_max: 1,
};

/// One open subscription's shared state.
#[derive(Default)]
pub(super) struct Subscription {
    credits: Cell<u32>,
    cancelled: Cell<bool>,
    /// Credits were added or the subscription was cancelled.
    changed: Event,
}

impl Subscription {
    pub(super) fn cancel(&self) {
        self.cancelled.set(true);
        self.changed.notify();
    }

    fn add_credits(&self, credits: u32) {
        // The balance never exceeds the protocol's cap; credits beyond it are dropped.
        let balance = self
            .credits
            .get()
            .saturating_add(credits)
            .min(SUBSCRIPTION_CREDITS_MAX);
        self.credits.set(balance);
        self.changed.notify();
    }

    async fn cancelled(&self) {
        while !self.cancelled.get() {
            self.changed.wait().await;
        }
    }
}

impl<A, L, R> Connection<A, L, R>
where
    A: KinesisApi + 'static,
    L: RecordLog,
    R: Runtime,
{
    pub(super) fn on_credit(&self, credit: WireCredit) {
        // Credit for a subscription that just ended is ignored, as the protocol says.
        if let Some(subscription) = self.subscriptions.borrow().get(&credit.subscription_id) {
            subscription.add_credits(credit.credits);
        }
    }

    pub(super) fn on_unsubscribe(&self, request_id: u64, unsubscribe: WireUnsubscribe) {
        let removed = self
            .subscriptions
            .borrow_mut()
            .remove(&unsubscribe.subscription_id);
        match removed {
            Some(subscription) => {
                subscription.cancel();
                self.respond(request_id, Body::UnsubscribeOk);
            }
            None => self.respond_error(
                request_id,
                Opcode::Unsubscribe.code(),
                StatusCode::UnknownSubscription,
                &format!(
                    "No subscription {} is open on this connection.",
                    unsubscribe.subscription_id
                ),
            ),
        }
    }

    pub(super) fn on_subscribe(
        self: &Rc<Self>,
        subscription_id: u64,
        subscribe: &WireSubscribe<'_>,
    ) {
        let start = read_start(subscribe.start);
        let subscription = {
            let mut subscriptions = self.subscriptions.borrow_mut();
            if subscriptions.contains_key(&subscription_id) {
                drop(subscriptions);
                self.respond_error(
                    subscription_id,
                    Opcode::Subscribe.code(),
                    StatusCode::SubscriptionExists,
                    &format!("Subscription {subscription_id} is already open on this connection."),
                );
                return;
            }
            let subscription = Rc::new(Subscription::default());
            subscription.add_credits(subscribe.credits);
            subscriptions.insert(subscription_id, subscription.clone());
            subscription
        };
        let shard = ShardAddress::new(subscribe.stream_name, subscribe.shard_index);
        self.spawn(move |c| async move {
            let opened = c.open_subscription(&shard, start).await;
            let start = match opened {
                Ok(start) => start,
                Err(error) => {
                    c.forget_subscription(subscription_id, &subscription);
                    c.respond_kinesis_error(subscription_id, Opcode::Subscribe, &error);
                    return;
                }
            };
            // Written before the task's first push, so the answer precedes every RecordsEvent.
            c.respond(subscription_id, Body::SubscribeOk);
            c.run_subscription(subscription_id, &subscription, shard, start)
                .await;
        });
    }

    /// Checks a Subscribe before it is answered: its stream's policy, its start position, and
    /// that the shard can be read from there (GetShardIterator's checks and messages). Returns
    /// the start resolved to a position, so that LATEST means the tip when the Subscribe was
    /// answered rather than whenever the first read runs.
    async fn open_subscription(
        &self,
        shard: &ShardAddress,
        start: Result<ReadStart, KinesisError>,
    ) -> Result<ReadStart, KinesisError> {
        self.check_policy(Opcode::Subscribe, &shard.stream_name)
            .await?;
        let batch = self
            .server
            .log
            .read(shard, start?, START_CHECK_LIMITS, None)
            .await
            .map_err(|error| self.read_error(error))?;
        Ok(ReadStart::AtPosition(batch.start_position))
    }

    /// Removes the subscription from the connection's table unless an Unsubscribe (or a newer
    /// subscription with the same id) already replaced it.
    fn forget_subscription(&self, subscription_id: u64, subscription: &Rc<Subscription>) {
        let mut subscriptions = self.subscriptions.borrow_mut();
        if subscriptions
            .get(&subscription_id)
            .is_some_and(|s| Rc::ptr_eq(s, subscription))
        {
            subscriptions.remove(&subscription_id);
        }
    }

    /// Pushes records while credits last, until the subscription is cancelled, the shard is
    /// closed and fully delivered, or an error ends it.
    async fn run_subscription(
        &self,
        subscription_id: u64,
        subscription: &Rc<Subscription>,
        shard: ShardAddress,
        mut start: ReadStart,
    ) {
        let log = &self.server.log;
        let ended = loop {
            while subscription.credits.get() == 0 && !subscription.cancelled.get() {
                subscription.changed.wait().await;
            }
            if subscription.cancelled.get() {
                return;
            }
            self.outbox.wait_room().await;
            if self.outbox.is_closed() {
                return;
            }
            let limits = ReadLimits {
                records_max: subscription.credits.get().min(READ_RECORDS_MAX) as usize,
                bytes_max: READ_BYTES_MAX as usize,
            };
            let read = futures_lite::future::or(
                async {
                    Some(
                        log.read(&shard, start, limits, Some(SUBSCRIPTION_WAIT))
                            .await,
                    )
                },
                async {
                    subscription.cancelled().await;
                    None
                },
            )
            .await;
            // From here to the push there is no await, so an Unsubscribe answered meanwhile is
            // seen and no push follows its answer.
            let Some(read) = read else { return };
            if subscription.cancelled.get() {
                return;
            }
            let batch = match read {
                Ok(batch) => batch,
                Err(error) => break Err(self.read_error(error)),
            };
            if batch.is_empty() {
                match batch.next_position {
                    None => break Ok(()),
                    // The wait ran out: read again, which also finds a deleted stream.
                    Some(position) => {
                        start = ReadStart::AtPosition(position);
                        continue;
                    }
                }
            }
            let mut sent = (0, None);
            self.outbox.push_with(|buf| {
                let origin = batch.origin();
                let writer = RecordsWriter::records_event(
                    buf,
                    subscription_id,
                    origin.created_s,
                    origin.shard_index,
                );
                sent = write_records(writer, &batch, limits);
            });
            let (count, next_position) = sent;
            let count =
                u32::try_from(count).expect("a records frame holds at most READ_RECORDS_MAX");
            subscription
                .credits
                .set(subscription.credits.get().saturating_sub(count));
            match next_position {
                Some(position) => start = ReadStart::AtPosition(position),
                None => break Ok(()),
            }
        };
        if subscription.cancelled.get() {
            return;
        }
        self.forget_subscription(subscription_id, subscription);
        let (status, message) = match &ended {
            Ok(()) => (
                WireStatus::OK,
                format!(
                    "Shard {} is closed and every record was delivered.",
                    format_shard_id(shard.shard_index)
                ),
            ),
            Err(error) => (
                StatusCode::from_error_kind(error.kind).into(),
                error.message.clone(),
            ),
        };
        self.respond(
            subscription_id,
            Body::SubscriptionEnded(WireSubscriptionEnded {
                status,
                message: &message,
            }),
        );
    }
}
