//! A connection's outbox: one buffer that every answer and push is encoded into, and the
//! writer that sends it with one write per burst. Nothing else writes to the socket, so frames
//! never interleave, and pipelined answers cost one system call per burst rather than one per
//! frame.
//!
//! Invariant: the buffer holds at most about [`OUTBOX_BYTES_MAX`] unsent bytes plus one frame;
//! producers wait for room ([`Outbox::wait_room`]) before they read more requests or records.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

use futures_lite::{AsyncWrite, AsyncWriteExt as _};

use crate::admission::BudgetPermit;
use crate::binary::{Body, Frame, StatusCode, WireError, encode_frame};

/// Unsent bytes a connection may queue before it stops taking requests and pushing records.
pub(super) const OUTBOX_BYTES_MAX: usize = 8 * 1024 * 1024;

/// A single-threaded notification: [`Event::wait`] completes after the next
/// [`Event::notify`]. Callers check their condition, then wait, in one poll, so no
/// notification is lost between the two.
#[derive(Default)]
pub(super) struct Event {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Event {
    pub(super) fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    pub(super) fn wait(&self) -> impl Future<Output = ()> + '_ {
        let start = self.generation.get();
        std::future::poll_fn(move |cx| {
            if self.generation.get() != start {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            // A task polled again without being notified (it waits on several things at once)
            // is registered once, so the list stays as long as the number of waiting tasks.
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// Frames waiting for the writer task.
#[derive(Default)]
pub(super) struct Outbox {
    buf: RefCell<Vec<u8>>,
    /// Budget held by answers queued in `buf`, given back once the burst holding them has been
    /// written (or the connection ended).
    held: RefCell<Vec<BudgetPermit>>,
    closed: Cell<bool>,
    /// Bytes were queued or the outbox closed: wakes the writer.
    queued: Event,
    /// The writer took the queued bytes, or the outbox closed: wakes producers waiting for room.
    drained: Event,
}

impl Outbox {
    pub(super) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Appends `frame`. A frame the codec cannot encode (a string past the wire's limit) is
    /// answered with InternalFailure instead, so the peer is never left without an answer.
    pub(super) fn push(&self, frame: &Frame<'_>) {
        if self.closed.get() {
            return;
        }
        let encoded = encode_frame(frame, &mut self.buf.borrow_mut());
        if let Err(error) = encoded {
            tracing::warn!(%error, request_id = frame.request_id, "An answer could not be encoded.");
            let message = format!("The answer could not be encoded: {error}");
            let opcode = frame.body.opcode_and_flags().0;
            let fallback = Frame {
                request_id: frame.request_id,
                body: Body::Error(WireError {
                    opcode,
                    status: StatusCode::InternalFailure.into(),
                    message: &message,
                }),
            };
            encode_frame(&fallback, &mut self.buf.borrow_mut())
                .expect("an error frame with a short message always encodes");
        }
        self.queued.notify();
    }

    /// Appends bytes a caller encodes itself (records frames), then wakes the writer.
    pub(super) fn push_with(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        if self.closed.get() {
            return;
        }
        encode(&mut self.buf.borrow_mut());
        self.queued.notify();
    }

    /// Keeps `permit` until what is queued now has been written to the socket: an answer's
    /// budget covers it until it has left the process.
    pub(super) fn hold(&self, permit: BudgetPermit) {
        if self.closed.get() {
            return;
        }
        self.held.borrow_mut().push(permit);
    }

    pub(super) fn close(&self) {
        self.closed.set(true);
        self.held.borrow_mut().clear();
        self.queued.notify();
        self.drained.notify();
    }

    /// Waits until the outbox has room (or is closed).
    pub(super) async fn wait_room(&self) {
        loop {
            if self.closed.get() || self.buf.borrow().len() < OUTBOX_BYTES_MAX {
                return;
            }
            self.drained.wait().await;
        }
    }
}

/// Sends what the outbox queues, one write per burst, until the outbox is closed and empty.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(mut socket: W, outbox: Rc<Outbox>) {
    let mut sending = Vec::new();
    let mut held = Vec::new();
    loop {
        loop {
            if !outbox.buf.borrow().is_empty() {
                break;
            }
            if outbox.closed.get() {
                outbox.held.borrow_mut().clear();
                let _ = socket.close().await;
                return;
            }
            outbox.queued.wait().await;
        }
        std::mem::swap(&mut *outbox.buf.borrow_mut(), &mut sending);
        std::mem::swap(&mut *outbox.held.borrow_mut(), &mut held);
        outbox.drained.notify();
        if let Err(error) = socket.write_all(&sending).await {
            tracing::debug!(%error, "A binary connection's write failed; closing it.");
            outbox.close();
            outbox.held.borrow_mut().clear();
            return;
        }
        held.clear();
        sending.clear();
        // A burst of a huge push should not keep its memory for the connection's lifetime:
        // it goes to the pool of large buffers, which gives it back to the allocator when
        // no answer takes it within a second.
        if sending.capacity() > OUTBOX_BYTES_MAX {
            sluice_core::large_buffers::give_back(std::mem::take(&mut sending));
        }
    }
}
