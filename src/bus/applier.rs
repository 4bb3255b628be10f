//! The applier thread: every batch of every partition, strictly in `pos`
//! order, to every shard of this instance.
//!
//! Batches come from this instance's writer (the fast path, in-process),
//! from the log ([`super::reader`]) and from the store; [`Order`] lets each
//! `pos` through once, in order. A gap is read from the store (its own
//! connection) once it has been open for the gap wait: a parked batch
//! waiting for its predecessor, or the database ahead of what was applied
//! for that long (a writer that died between commit and append, an entry
//! lost in a failover, a trimmed stream). What it reads it re-publishes
//! through the script, which ignores what the log has. While Redis is away
//! it polls the store by `pos` instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use super::batch::{Batch, Item};
use super::fanout::{Local, post_acks};
use super::order::{Order, Verdict};
use super::reader::Event;
use crate::chat::mail::{Committed, Mail};
use crate::mailbox::Mesh;
use crate::metrics::BusMetrics;
use crate::protocol::deflate::Settings;
use crate::store::{Store, StoreError};

/// How often the loop looks at the stop flag, at least.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// Opens the applier's own store connection (again after an error).
pub(crate) type OpenStore = Box<dyn FnMut() -> Result<Box<dyn Store>, StoreError> + Send>;

#[derive(Debug, Clone, Copy)]
pub(crate) struct ApplierSettings {
    pub gap_wait: Duration,
    pub poll_interval: Duration,
    /// Messages per read from the store.
    pub page: usize,
    pub max_parked: usize,
    pub compression: Settings,
}

pub(crate) struct Applier {
    pub mesh: Arc<Mesh<Mail>>,
    pub local: Receiver<Local>,
    pub events: Receiver<Event>,
    pub publish: super::queue::PublishTx,
    pub open_store: OpenStore,
    pub store: Option<Box<dyn Store>>,
    /// Per partition, shared with the reader.
    pub applied: Arc<[AtomicU64]>,
    pub settings: ApplierSettings,
    pub metrics: BusMetrics,
    pub stop: Arc<AtomicBool>,
}

/// The applier's moving parts, apart from its inputs.
struct State {
    orders: Vec<Order<Batch>>,
    /// What was applied of each partition: with several, each message's
    /// recovery offset ([`render_offsets`]).
    positions: Vec<u64>,
    /// Per partition: the database's last `pos` when it was first seen
    /// ahead of what was applied, and when.
    behind: Vec<Option<(u64, Instant)>>,
    up: bool,
    next_tick: Instant,
    /// No gap fill before this (after a failed read of the store).
    retry_at: Instant,
}

impl Applier {
    pub(crate) fn run(mut self) {
        let s = &self.settings;
        let mut state = State {
            orders: self
                .applied
                .iter()
                .map(|a| Order::new(a.load(Ordering::Relaxed), s.max_parked))
                .collect(),
            positions: self
                .applied
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            behind: vec![None; self.applied.len()],
            up: false,
            next_tick: Instant::now(),
            retry_at: Instant::now(),
        };
        self.metrics.polling.set(1);
        let (mut local, mut events) = (self.local.clone(), self.events.clone());
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut wake = state.next_tick.min(now + STOP_CHECK);
            for o in &state.orders {
                if let Some(d) = o.gap_deadline(self.settings.gap_wait) {
                    wake = wake.min(d.max(state.retry_at));
                }
            }
            let timeout = wake.saturating_duration_since(now);
            select! {
                recv(local) -> b => match b {
                    Ok(l) => self.offer(&mut state, Arc::unwrap_or_clone(l.batch), l.acks),
                    // The writer stopped: only the stop flag is left.
                    Err(_) => local = crossbeam_channel::never(),
                },
                recv(events) -> e => match e {
                    Ok(Event::Batch(b)) => self.offer(&mut state, b, Vec::new()),
                    Ok(Event::Up) => {
                        state.up = true;
                        self.metrics.polling.set(0);
                        tracing::info!("bus: connected to Redis");
                    }
                    Ok(Event::Down) => {
                        state.up = false;
                        self.metrics.polling.set(1);
                        self.metrics.polling_fallbacks.inc();
                        // Poll at once, then every poll interval.
                        state.next_tick = Instant::now();
                    }
                    Err(_) => events = crossbeam_channel::never(),
                },
                default(timeout) => {}
            }
            let now = Instant::now();
            for p in 0..state.orders.len() {
                if now >= state.retry_at
                    && let Some((_, to)) = state.orders[p].gap(now, self.settings.gap_wait)
                {
                    let filled = self.fill(&mut state, p, to);
                    // The store unreachable, or the gap still open: again
                    // in a poll interval, not in a loop.
                    if !filled || state.orders[p].gap(now, self.settings.gap_wait).is_some() {
                        state.retry_at = now + self.settings.poll_interval;
                    }
                }
            }
            if now >= state.next_tick {
                self.tick(&mut state, now);
                state.next_tick = Instant::now() + self.settings.poll_interval;
            }
        }
    }

    /// Once per poll interval: how far behind the database this instance
    /// is; while Redis is away, catch up by reading the store; otherwise a
    /// lag that outlasts the gap wait is a gap too.
    fn tick(&mut self, state: &mut State, now: Instant) {
        let mut lag = 0;
        for p in 0..state.orders.len() {
            let Some(last) = self.with_store(|s| s.last_pos(p as u32)) else {
                return;
            };
            let applied = state.orders[p].applied();
            lag += last.saturating_sub(applied);
            if p + 1 == state.orders.len() {
                self.metrics.lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
            if !state.up {
                if last > applied {
                    self.fill(state, p, last);
                }
                state.behind[p] = None;
                continue;
            }
            state.behind[p] = match state.behind[p] {
                _ if last <= applied => None,
                // Applied what was seen then: a new observation.
                Some((seen, _)) if applied >= seen => Some((last, now)),
                Some((seen, since))
                    if now.saturating_duration_since(since) >= self.settings.gap_wait =>
                {
                    self.fill(state, p, seen);
                    None
                }
                Some(b) => Some(b),
                None => Some((last, now)),
            };
        }
    }

    /// Reads partition `p`'s messages after what was applied, up to `to`,
    /// from the store, applies them and (Redis up) re-publishes them.
    /// False when the store could not be read: retried a poll interval
    /// later, not in a loop.
    fn fill(&mut self, state: &mut State, p: usize, to: u64) -> bool {
        if state.up {
            self.metrics.gap_fills.inc();
        }
        while state.orders[p].applied() < to {
            let after = state.orders[p].applied();
            let page = self.settings.page;
            let Some(rows) = self.with_store(|s| s.partition_messages(p as u32, after, page))
            else {
                return false;
            };
            let Some(first) = rows.first().map(|m| m.pos) else {
                return true; // nothing after `after` yet, as this read sees
            };
            if first > after + 1 {
                // Positions the store no longer has (retention dropped
                // their month): nothing to deliver, nothing to wait for.
                let gone = first.min(to + 1) - 1;
                tracing::warn!(
                    partition = p,
                    from = after + 1,
                    to = gone,
                    "bus: positions gone from the store, skipped"
                );
                self.skip_through(state, p, gone);
            }
            let items: Vec<Item> = rows
                .iter()
                .take_while(|m| m.pos <= to)
                .map(|m| {
                    // Several partitions: compressed once its offset is in.
                    let c = self.settings.compression;
                    let multi = state.positions.len() > 1;
                    Item::of_record(
                        m,
                        Settings {
                            enabled: c.enabled && !multi,
                            ..c
                        },
                    )
                })
                .collect();
            let Some(batch) = Batch::new(p as u32, items) else {
                return true;
            };
            if state.up {
                // Only when it was missing from the log, as far as this
                // instance knows; the script ignores it otherwise.
                let _ = self.publish.try_send(Arc::new(batch.clone()));
            }
            self.offer(state, batch, Vec::new());
            if state.orders[p].applied() <= after {
                return true; // nothing moved (cannot happen: pos is gapless)
            }
        }
        true
    }

    /// Counts the positions up to `to` as applied, and applies what that
    /// unblocks.
    fn skip_through(&self, state: &mut State, p: usize, to: u64) {
        let mut out = Vec::new();
        state.orders[p].skip_through(to, Instant::now(), &mut out);
        let applied = state.orders[p].applied();
        self.apply(p, out, Vec::new(), applied, &mut state.positions);
    }

    /// Offers a batch; applies what it can. `acks` (this instance's
    /// commit) follow the batch's messages if it is applied at once, and
    /// go alone, now, otherwise.
    fn offer(&self, state: &mut State, batch: Batch, mut acks: Vec<Committed>) {
        let p = batch.partition as usize;
        let State {
            orders, positions, ..
        } = state;
        let Some(order) = orders.get_mut(p) else {
            post_acks(&self.mesh, acks);
            return; // a partition this instance does not run
        };
        let mut out = Vec::new();
        let verdict = order.offer(batch, Instant::now(), &mut out);
        if verdict == Verdict::Duplicate {
            self.metrics.duplicates_dropped.inc();
        }
        if verdict != Verdict::Applied {
            post_acks(&self.mesh, std::mem::take(&mut acks));
        }
        let applied = order.applied();
        self.apply(p, out, acks, applied, positions);
    }

    /// Posts `out` to every shard, in order (`acks` after the first), now
    /// that partition `p` is applied up to `applied`.
    fn apply(
        &self,
        p: usize,
        out: Vec<Batch>,
        mut acks: Vec<Committed>,
        applied: u64,
        positions: &mut [u64],
    ) {
        for mut b in out {
            self.metrics.batches_applied.inc();
            if positions.len() > 1 {
                render_offsets(&mut b, positions, self.settings.compression);
            }
            let mut committed = b.into_committed();
            committed.append(&mut acks);
            let committed = Arc::new(committed);
            for shard in 0..self.mesh.shards() {
                self.mesh
                    .post_external(shard, Mail::Committed(committed.clone()));
            }
        }
        if let Some(at) = positions.get_mut(p) {
            *at = (*at).max(applied); // also over positions skipped
        }
        self.applied[p].store(applied, Ordering::Relaxed);
        self.metrics.set_applied(p, applied);
    }

    /// Runs `f` on the applier's store connection, opening it first if
    /// needed; on an error the connection is dropped (opened again next
    /// time) and `None` is returned.
    fn with_store<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError>,
    ) -> Option<T> {
        if self.store.is_none() {
            match (self.open_store)() {
                Ok(s) => self.store = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "bus applier: store unreachable");
                    return None;
                }
            }
        }
        let store = self.store.as_deref_mut()?;
        match f(store) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "bus applier: store read failed");
                self.store = None;
                None
            }
        }
    }
}

/// With several sequencing partitions: each message's offset is what this
/// instance has applied of every partition once it is applied (instances
/// interleave partitions differently, so only the applier can say), put
/// into the frame here, which is then compressed here too: once per
/// message per instance (with one partition the writer's frame, offset
/// and compression, goes as it is).
fn render_offsets(batch: &mut Batch, positions: &mut [u64], compression: Settings) {
    let p = batch.partition as usize;
    for item in &mut batch.items {
        if let Some(at) = positions.get_mut(p) {
            *at = (*at).max(item.pos);
        }
        match crate::chat::message::with_offset(item.text(), positions) {
            Some(text) => item.frame = crate::chat::commit::broadcast(text, compression),
            // Not a frame this server makes: as it came.
            None => tracing::warn!(pos = item.pos, "bus: a message frame without an offset"),
        }
    }
}
