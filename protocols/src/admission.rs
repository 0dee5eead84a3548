//! Admission control for the front ends: a per-core memory budget for request and response
//! bytes in flight, and the counters that make it visible on `/metrics`.
//!
//! A request asks the budget for the bytes it will hold (its body, what decoding it takes, its
//! answer) before its body is read. While the budget is spent the request waits, its body stays
//! unread in the socket, and TCP's flow control slows the client down: memory stays bounded
//! instead of growing with the number of clients. A request that waits longer than the
//! front end's deadline is answered with a retryable error instead (HTTP 503), never dropped.
//!
//! Invariants:
//! - `in_flight_bytes <= bytes_max` at all times: a grant happens only when it fits, and a
//!   request larger than the whole budget is charged the whole budget (it runs alone).
//! - Waiters are granted in arrival order (FIFO), so a large request is not starved by a stream
//!   of small ones.
//! - A permit gives its bytes back when dropped, whatever happened to the request.
//!
//! The budget lives on one core (`Rc`, no locks); its counters are atomics registered
//! process-wide so that `/metrics`, scraped on any core, shows every core. Both wires of a core
//! (HTTP and the binary protocol) share one [`Admission`], so the `frontend_*` metrics of a core
//! count the requests and connections of both: they have no `wire` label.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The admission control of one core's front ends, shared by its HTTP and binary listeners
/// (clones share the budget and the counters).
#[derive(Clone, Debug)]
pub struct Admission {
    /// Request bytes in flight on this core; a request waits for room before it is read.
    pub budget: MemoryBudget,
    /// How long a request may wait for budget before it is refused as busy (HTTP 503, binary
    /// `ServerBusy`).
    pub queue_timeout: Duration,
    /// Open connections this core serves at most, over both wires; more are refused and closed.
    pub connections_max: u64,
}

impl Admission {
    /// Counts a new connection, or `None` (and counts a refusal) when the core is at its limit.
    /// Checked and counted before the next accept, so the limit holds however fast clients come.
    pub fn open_connection(&self) -> Option<OpenConnection> {
        let stats = self.budget.stats();
        if stats.connections.load(Ordering::Relaxed) >= self.connections_max {
            stats
                .connections_refused_total
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(OpenConnection::new(stats))
    }

    /// Waits for `charge` bytes of budget, or until `deadline` completes: then the request is
    /// counted as refused and `None` is returned, to be answered as busy.
    pub async fn admit(
        &self,
        charge: u64,
        deadline: impl Future<Output = ()>,
    ) -> Option<BudgetPermit> {
        let acquire = self.budget.acquire(charge);
        let permit = futures_lite::future::or(async { Some(acquire.await) }, async {
            deadline.await;
            None
        })
        .await;
        if permit.is_none() {
            self.budget
                .stats()
                .requests_refused_total
                .fetch_add(1, Ordering::Relaxed);
        }
        permit
    }
}

/// What a request is charged against the budget, on either wire: the bytes it carries (a
/// request body, or the most a read may answer), about as much again for what handling it
/// makes (decoded records, base64 turned to bytes, a read's batch beside its encoded answer),
/// and a floor for the answer and the parsing state of small calls.
pub const fn request_charge(carried_bytes: u64) -> u64 {
    carried_bytes
        .saturating_mul(2)
        .saturating_add(REQUEST_CHARGE_FLOOR_BYTES)
}

/// The smallest charge of a request (a control-plane call, a small read's answer).
pub const REQUEST_CHARGE_FLOOR_BYTES: u64 = 16 * 1024;

/// What an HTTP GetRecords reserves before it reads, and the answer that reservation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadReservation {
    /// Bytes to acquire from the budget.
    pub charge: u64,
    /// The most records the answer may carry.
    pub records_max: u32,
    /// The most data bytes the answer may carry (at least one record is always returned, and
    /// a record is at most 1 MiB, which the charge's floor and slack cover).
    pub bytes_max: usize,
}

/// Bytes one record of a GetRecords answer costs besides its data, at worst: its partition key
/// in the read batch and in the JSON answer (256 bytes each), its sequence number, timestamp,
/// field names and punctuation.
const ANSWER_RECORD_OVERHEAD_BYTES: u64 = 768;

/// What a GetRecords may reserve: enough for the API's largest answer (10,000 records,
/// 10 MiB of data held once in the read batch and once base64-encoded in the answer, 7/3 of
/// it), or half of a smaller budget, the answer's caps scaled down to fit. A capped answer is
/// only shorter: the client reads on with the next iterator, as the API allows.
pub fn get_records_reservation(budget_bytes_max: u64) -> ReadReservation {
    const RECORDS_API_MAX: u64 = 10_000;
    const BYTES_API_MAX: u64 = 10 * 1024 * 1024;
    let full = RECORDS_API_MAX * ANSWER_RECORD_OVERHEAD_BYTES + BYTES_API_MAX * 7 / 3;
    let share = (budget_bytes_max / 2).min(full);
    // Both caps scaled by the same factor, so their answer fits the share.
    let records_max = (RECORDS_API_MAX * share / full).clamp(1, RECORDS_API_MAX);
    let bytes_max = (BYTES_API_MAX * share / full).clamp(1, BYTES_API_MAX);
    ReadReservation {
        charge: request_charge(0) + share,
        records_max: records_max as u32,
        bytes_max: bytes_max as usize,
    }
}

/// Counts an open connection in `frontend_connections` for as long as it lives.
#[derive(Debug)]
pub struct OpenConnection(Arc<FrontEndStats>);

impl OpenConnection {
    fn new(stats: Arc<FrontEndStats>) -> Self {
        stats.connections.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The counters of one core's front ends (HTTP and binary together), readable from any thread.
#[derive(Debug, Default)]
pub struct FrontEndStats {
    pub core_id: usize,
    /// Bytes granted to requests in flight now.
    pub bytes_in_flight: AtomicU64,
    /// The budget.
    pub bytes_max: AtomicU64,
    /// Requests waiting for budget now.
    pub requests_waiting: AtomicU64,
    /// Open connections now.
    pub connections: AtomicU64,
    /// Connections refused because the core was at its connection limit.
    pub connections_refused_total: AtomicU64,
    /// Requests refused as busy (HTTP 503, binary `ServerBusy`) because they waited for budget
    /// past the deadline.
    pub requests_refused_total: AtomicU64,
    /// Requests that had to wait for budget (whether or not they got it in time).
    pub requests_delayed_total: AtomicU64,
}

static REGISTRY: LazyLock<Mutex<Vec<Arc<FrontEndStats>>>> = LazyLock::new(Mutex::default);

impl FrontEndStats {
    /// The stats of `core_id`, registered for [`render`] (one entry per core; a second call for
    /// the same core, as in tests that start several servers, replaces nothing and adds one).
    pub fn register(core_id: usize) -> Arc<Self> {
        let stats = Arc::new(Self {
            core_id,
            ..Self::default()
        });
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stats.clone());
        stats
    }
}

/// One metric: name, Prometheus type, help text, and the counter it reads.
type MetricRow = (
    &'static str,
    &'static str,
    &'static str,
    fn(&FrontEndStats) -> &AtomicU64,
);

/// Prometheus text for every registered core's front end.
pub fn render() -> String {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut out = String::new();
    let metrics: [MetricRow; 7] = [
        (
            "frontend_bytes_in_flight",
            "gauge",
            "Request and response bytes held by requests in flight (HTTP and binary).",
            |s| &s.bytes_in_flight,
        ),
        (
            "frontend_bytes_budget",
            "gauge",
            "The per-core memory budget for requests in flight, shared by HTTP and binary.",
            |s| &s.bytes_max,
        ),
        (
            "frontend_requests_waiting",
            "gauge",
            "Requests waiting for memory budget (their bodies unread; HTTP and binary).",
            |s| &s.requests_waiting,
        ),
        (
            "frontend_connections",
            "gauge",
            "Open connections (HTTP and binary).",
            |s| &s.connections,
        ),
        (
            "frontend_connections_refused_total",
            "counter",
            "Connections refused at the per-core connection limit (HTTP and binary).",
            |s| &s.connections_refused_total,
        ),
        (
            "frontend_requests_refused_total",
            "counter",
            "Requests refused as busy (HTTP 503, binary ServerBusy) after waiting for memory budget past the deadline.",
            |s| &s.requests_refused_total,
        ),
        (
            "frontend_requests_delayed_total",
            "counter",
            "Requests that waited for memory budget (HTTP and binary).",
            |s| &s.requests_delayed_total,
        ),
    ];
    for (name, kind, help, field) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        // Several servers in one process (tests) register the same core twice: sum them.
        let mut per_core = std::collections::BTreeMap::<usize, u64>::new();
        for stats in &registry {
            *per_core.entry(stats.core_id).or_default() += field(stats).load(Ordering::Relaxed);
        }
        for (core, value) in per_core {
            let _ = writeln!(out, "{name}{{core=\"{core}\"}} {value}");
        }
    }
    out
}

struct Waiter {
    id: u64,
    bytes: u64,
    granted: bool,
    waker: Option<Waker>,
}

struct Inner {
    bytes_max: u64,
    in_flight: u64,
    next_id: u64,
    waiting: VecDeque<Waiter>,
    stats: Arc<FrontEndStats>,
}

impl Inner {
    /// Grants waiters from the front while they fit.
    fn grant(&mut self) {
        for waiter in self.waiting.iter_mut() {
            if waiter.granted {
                continue;
            }
            if self.in_flight + waiter.bytes > self.bytes_max {
                break;
            }
            self.in_flight += waiter.bytes;
            waiter.granted = true;
            if let Some(waker) = waiter.waker.take() {
                waker.wake();
            }
        }
        assert!(self.in_flight <= self.bytes_max);
        self.publish();
    }

    fn publish(&self) {
        self.stats
            .bytes_in_flight
            .store(self.in_flight, Ordering::Relaxed);
        let waiting = self.waiting.iter().filter(|w| !w.granted).count() as u64;
        self.stats
            .requests_waiting
            .store(waiting, Ordering::Relaxed);
    }
}

/// One core's memory budget. Cheap to clone; `!Send` (it lives on its core).
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Rc<RefCell<Inner>>,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("MemoryBudget")
            .field("bytes_max", &inner.bytes_max)
            .field("in_flight", &inner.in_flight)
            .finish()
    }
}

impl MemoryBudget {
    pub fn new(bytes_max: u64, stats: Arc<FrontEndStats>) -> Self {
        assert!(bytes_max > 0);
        stats.bytes_max.store(bytes_max, Ordering::Relaxed);
        Self {
            inner: Rc::new(RefCell::new(Inner {
                bytes_max,
                in_flight: 0,
                next_id: 0,
                waiting: VecDeque::new(),
                stats,
            })),
        }
    }

    pub fn stats(&self) -> Arc<FrontEndStats> {
        self.inner.borrow().stats.clone()
    }

    /// The budget's size.
    pub fn bytes_max(&self) -> u64 {
        self.inner.borrow().bytes_max
    }

    /// Waits until `bytes` (at most the whole budget) fit, then holds them until the permit is
    /// dropped. Dropping the future before it resolves leaves the queue.
    pub fn acquire(&self, bytes: u64) -> Acquire {
        let mut inner = self.inner.borrow_mut();
        let bytes = bytes.clamp(1, inner.bytes_max);
        let id = inner.next_id;
        inner.next_id += 1;
        let nobody_waits = inner.waiting.iter().all(|w| w.granted);
        if nobody_waits && inner.in_flight + bytes <= inner.bytes_max {
            inner.in_flight += bytes;
            inner.publish();
            return Acquire {
                budget: self.clone(),
                id,
                bytes,
                state: AcquireState::Ready,
            };
        }
        inner.waiting.push_back(Waiter {
            id,
            bytes,
            granted: false,
            waker: None,
        });
        inner
            .stats
            .requests_delayed_total
            .fetch_add(1, Ordering::Relaxed);
        inner.publish();
        Acquire {
            budget: self.clone(),
            id,
            bytes,
            state: AcquireState::Queued,
        }
    }

    fn release(&self, bytes: u64) {
        let mut inner = self.inner.borrow_mut();
        assert!(inner.in_flight >= bytes);
        inner.in_flight -= bytes;
        inner.grant();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AcquireState {
    /// Granted at once; not in the queue.
    Ready,
    /// In the queue (granted or not).
    Queued,
    /// Turned into a permit.
    Done,
}

/// The future of [`MemoryBudget::acquire`].
pub struct Acquire {
    budget: MemoryBudget,
    id: u64,
    bytes: u64,
    state: AcquireState,
}

impl std::fmt::Debug for Acquire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acquire")
            .field("bytes", &self.bytes)
            .field("state", &self.state)
            .finish()
    }
}

impl Future for Acquire {
    type Output = BudgetPermit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BudgetPermit> {
        match self.state {
            AcquireState::Ready => {
                self.state = AcquireState::Done;
                Poll::Ready(BudgetPermit {
                    budget: self.budget.clone(),
                    bytes: self.bytes,
                })
            }
            AcquireState::Queued => {
                let mut inner = self.budget.inner.borrow_mut();
                let id = self.id;
                let position = inner
                    .waiting
                    .iter()
                    .position(|w| w.id == id)
                    .expect("a queued acquire stays in the queue until it is done");
                if inner.waiting[position].granted {
                    inner.waiting.remove(position);
                    inner.publish();
                    drop(inner);
                    self.state = AcquireState::Done;
                    Poll::Ready(BudgetPermit {
                        budget: self.budget.clone(),
                        bytes: self.bytes,
                    })
                } else {
                    inner.waiting[position].waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
            AcquireState::Done => panic!("Acquire polled after it resolved"),
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        match self.state {
            AcquireState::Done => {}
            // Granted at once but never polled: give the bytes back.
            AcquireState::Ready => self.budget.release(self.bytes),
            AcquireState::Queued => {
                let mut inner = self.budget.inner.borrow_mut();
                let id = self.id;
                if let Some(position) = inner.waiting.iter().position(|w| w.id == id) {
                    let waiter = inner
                        .waiting
                        .remove(position)
                        .expect("position is in range");
                    if waiter.granted {
                        assert!(inner.in_flight >= waiter.bytes);
                        inner.in_flight -= waiter.bytes;
                    }
                    // Leaving the queue may let the ones behind proceed.
                    inner.grant();
                }
            }
        }
    }
}

/// Bytes held by one request; given back when dropped.
pub struct BudgetPermit {
    budget: MemoryBudget,
    bytes: u64,
}

impl std::fmt::Debug for BudgetPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetPermit")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl BudgetPermit {
    /// The bytes this permit holds.
    pub const fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Gives back what the permit holds beyond `bytes` (a reservation turned out larger than
    /// the answer); never grows it.
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.budget.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::task::Wake;

    use super::*;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn poll(acquire: &mut Acquire, flag: &Arc<Flag>) -> Option<BudgetPermit> {
        let waker = Waker::from(flag.clone());
        match Pin::new(acquire).poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(permit) => Some(permit),
            Poll::Pending => None,
        }
    }

    fn budget(bytes_max: u64) -> MemoryBudget {
        MemoryBudget::new(bytes_max, Arc::new(FrontEndStats::default()))
    }

    #[test]
    fn requests_wait_while_the_budget_is_spent_and_proceed_in_arrival_order() {
        let budget = budget(100);
        let flag = Arc::new(Flag(false.into()));
        let first = poll(&mut budget.acquire(60), &flag).expect("fits at once");
        let mut second = budget.acquire(60);
        let mut third = budget.acquire(10);
        assert!(poll(&mut second, &flag).is_none());
        assert!(
            poll(&mut third, &flag).is_none(),
            "a small request does not overtake a waiting large one"
        );
        let stats = budget.stats();
        assert_eq!(stats.requests_waiting.load(Ordering::SeqCst), 2);
        assert_eq!(stats.bytes_in_flight.load(Ordering::SeqCst), 60);
        drop(first);
        assert!(flag.0.load(Ordering::SeqCst), "the release woke the waiter");
        let second = poll(&mut second, &flag).expect("granted after the release");
        let third = poll(&mut third, &flag).expect("fits beside the second");
        assert_eq!(stats.bytes_in_flight.load(Ordering::SeqCst), 70);
        assert_eq!(stats.requests_waiting.load(Ordering::SeqCst), 0);
        assert_eq!(stats.requests_delayed_total.load(Ordering::SeqCst), 2);
        drop((second, third));
        assert_eq!(stats.bytes_in_flight.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_request_larger_than_the_budget_runs_alone_and_a_cancelled_wait_gives_its_place_back() {
        let budget = budget(100);
        let flag = Arc::new(Flag(false.into()));
        let small = poll(&mut budget.acquire(10), &flag).expect("fits");
        let mut huge = budget.acquire(1_000);
        let mut after = budget.acquire(10);
        assert!(poll(&mut huge, &flag).is_none());
        assert!(poll(&mut after, &flag).is_none());
        drop(huge);
        let after = poll(&mut after, &flag).expect("the cancelled waiter no longer blocks");
        drop((small, after));
        let whole = poll(&mut budget.acquire(1_000), &flag).expect("clamped to the budget");
        assert_eq!(budget.stats().bytes_in_flight.load(Ordering::SeqCst), 100);
        drop(whole);
        assert_eq!(budget.stats().bytes_in_flight.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_granted_but_abandoned_wait_gives_its_bytes_back() {
        let budget = budget(100);
        let flag = Arc::new(Flag(false.into()));
        let first = poll(&mut budget.acquire(100), &flag).expect("fits");
        let mut waiting = budget.acquire(50);
        assert!(poll(&mut waiting, &flag).is_none());
        drop(first);
        assert_eq!(budget.stats().bytes_in_flight.load(Ordering::SeqCst), 50);
        drop(waiting);
        assert_eq!(budget.stats().bytes_in_flight.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn shrinking_a_permit_lets_a_waiter_in_and_never_grows_it() {
        let budget = budget(100);
        let flag = Arc::new(Flag(false.into()));
        let mut reserved = poll(&mut budget.acquire(90), &flag).expect("fits");
        let mut waiting = budget.acquire(50);
        assert!(poll(&mut waiting, &flag).is_none());
        reserved.shrink_to(40);
        assert_eq!(reserved.bytes(), 40);
        let waiting = poll(&mut waiting, &flag).expect("the shrink made room");
        reserved.shrink_to(80);
        assert_eq!(reserved.bytes(), 40, "shrink_to never grows a permit");
        assert_eq!(budget.stats().bytes_in_flight.load(Ordering::SeqCst), 90);
        drop((reserved, waiting));
        assert_eq!(budget.stats().bytes_in_flight.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_get_records_reservation_covers_the_full_answer_on_a_large_budget_and_half_a_small_one() {
        let large = get_records_reservation(1 << 30);
        assert_eq!(large.records_max, 10_000);
        assert_eq!(large.bytes_max, 10 * 1024 * 1024);
        assert!(large.charge < 64 << 20, "{large:?}");
        // The answer it allows fits its charge: data held twice (batch, base64), overheads.
        let answer = |r: ReadReservation| {
            u64::from(r.records_max) * ANSWER_RECORD_OVERHEAD_BYTES + r.bytes_max as u64 * 7 / 3
        };
        assert!(answer(large) <= large.charge);
        let small = get_records_reservation(4 << 20);
        assert!(
            small.charge <= (2 << 20) + REQUEST_CHARGE_FLOOR_BYTES,
            "{small:?}"
        );
        assert!(
            small.bytes_max < 1 << 20 && small.records_max < 10_000,
            "{small:?}"
        );
        assert!(answer(small) <= small.charge);
        let tiny = get_records_reservation(1);
        assert_eq!((tiny.records_max, tiny.bytes_max), (1, 1));
    }
}
