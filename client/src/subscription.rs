//! [`Subscription`]: records the server pushes from one shard as they commit, under
//! credit-based flow control. One credit is one record. The subscription opens with a window
//! of credits; as the consumer takes events off the subscription, the records it has taken are
//! granted back once they add up to half the window, so at most one window of records is ever
//! buffered on the client and the server never sends faster than the consumer drains.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sluice_protocols::binary::{Body, Frame, WireCredit, WireUnsubscribe};
use tokio::sync::mpsc;

use crate::connection::{Connection, Reply, SubscriptionItem};
use crate::error::ClientError;
use crate::types::Records;

/// A push subscription to one shard. Use [`Subscription::next`] or the `futures_core::Stream`
/// implementation. It ends (`None`) when the shard is closed and fully delivered, or after
/// yielding the error that ended it (a lost connection among them: subscriptions are not
/// resumed on reconnect; subscribe again from the last `next_position`).
///
/// Dropping it unsubscribes in the background.
pub struct Subscription {
    connection: Arc<Connection>,
    subscription_id: u64,
    items: mpsc::UnboundedReceiver<SubscriptionItem>,
    credits_window: u32,
    consumed_ungranted: u32,
    ended: bool,
    request_timeout: Option<Duration>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("subscription_id", &self.subscription_id)
            .field("credits_window", &self.credits_window)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Subscription {
    pub(crate) fn new(
        connection: Arc<Connection>,
        subscription_id: u64,
        items: mpsc::UnboundedReceiver<SubscriptionItem>,
        credits_window: u32,
        request_timeout: Option<Duration>,
    ) -> Self {
        Self {
            connection,
            subscription_id,
            items,
            credits_window,
            consumed_ungranted: 0,
            ended: false,
            request_timeout,
        }
    }

    /// The subscription id: the request id of the Subscribe that opened it.
    pub fn id(&self) -> u64 {
        self.subscription_id
    }

    /// The next batch of records; `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<Result<Records, ClientError>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Records, ClientError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.items.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(SubscriptionItem::Records(records))) => {
                self.consumed(records.records.len());
                Poll::Ready(Some(Ok(records)))
            }
            Poll::Ready(Some(SubscriptionItem::Ended(Ok(())))) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(SubscriptionItem::Ended(Err(error)))) => {
                self.ended = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(Some(Err(ClientError::ConnectionLost {
                    addr: self.connection.addr(),
                })))
            }
        }
    }

    /// Counts records taken by the consumer and grants them back in chunks of half a window,
    /// so that Credit frames stay rare while the pipeline never runs dry.
    fn consumed(&mut self, records: usize) {
        let records = u32::try_from(records).unwrap_or(u32::MAX);
        self.consumed_ungranted = self.consumed_ungranted.saturating_add(records);
        let threshold = (self.credits_window / 2).max(1);
        if self.consumed_ungranted >= threshold {
            let credit = WireCredit {
                subscription_id: self.subscription_id,
                credits: self.consumed_ungranted,
            };
            // A lost connection shows up as the subscription's next item; nothing to do here.
            let _ = self.connection.send_oneway(&Frame {
                request_id: 0,
                body: Body::Credit(credit),
            });
            self.consumed_ungranted = 0;
        }
    }

    /// Ends the subscription and waits for the server to confirm. Records pushed meanwhile are
    /// dropped.
    pub async fn unsubscribe(mut self) -> Result<(), ClientError> {
        self.ended = true;
        let subscription_id = self.subscription_id;
        let body = Body::Unsubscribe(WireUnsubscribe { subscription_id });
        let pending = self
            .connection
            .start(|request_id| Frame { request_id, body })?;
        let result = pending.wait(self.request_timeout).await;
        self.connection.forget_subscription(subscription_id);
        match result? {
            Reply::UnsubscribeOk => Ok(()),
            other => Err(ClientError::Protocol {
                addr: self.connection.addr(),
                reason: format!("unexpected answer {other:?}"),
            }),
        }
    }
}

impl futures_core::Stream for Subscription {
    type Item = Result<Records, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.connection.forget_subscription(self.subscription_id);
        let body = Body::Unsubscribe(WireUnsubscribe {
            subscription_id: self.subscription_id,
        });
        // The answer is not awaited; the reader drops it when it comes.
        let _ = self
            .connection
            .start(|request_id| Frame { request_id, body });
    }
}
