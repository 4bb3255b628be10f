//! What the three Redis users share: the bus (`bus::publisher`,
//! `bus::reader`), the recovery sessions (`chat::recovery::shared`) and
//! presence (`chat::cluster`'s worker and subscriber).
//!
//! - [`Target`]: the configured Redis, opened once from the `Config`;
//!   [`Target::connect`] makes a command connection ([`Conn`]) with
//!   [`Timeouts`], so a Redis that stops answering is an error within the
//!   timeout, never a thread stuck for good; [`Target::pubsub`] a
//!   subscriber's connection.
//! - [`Backoff`]: the reconnect backoff every thread uses.
//! - [`Fault`]: what kind of failure a Redis error is, for the logs.
//! - [`slots`]: Redis Cluster's hash slots, and the hash tags that spread
//!   the partitions' keys over its masters.
//! - [`topology`]: which master serves which slot (CLUSTER SLOTS, read by
//!   us), for the bus reader's blocking reads, one per slot on its master
//!   ([`Target::by_node`]).
//!
//! Only code is shared: each thread keeps its own connection and its own
//! reconnect loop, so a slow or broken one never stalls another.

mod backoff;
mod conn;
mod fault;
pub(crate) mod resp;
pub(crate) mod slots;
mod target;
pub(crate) mod topology;

pub(crate) use backoff::Backoff;
pub(crate) use conn::Conn;
pub(crate) use fault::Fault;
pub(crate) use target::{NodeGroup, Target, Timeouts};
