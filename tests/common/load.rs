//! The steady load of the Redis Cluster fault tests
//! (tests/redis_cluster_faults.rs, tests/redis_cluster_outage.rs): one
//! sender and one subscriber per instance of a [`Cluster`], every one a
//! member of every load channel; rounds of one send per sender, each
//! acked message recorded, and every subscriber's `message`s checked one
//! by one (the next `seq` of its channel: no gap, no repeat, no
//! reordering).
//!
//! A client whose instance dies (a read or write fails) moves to another
//! running instance with connection state recovery, as socket.io-client
//! behind a load balancer does, and must get its session back; a send
//! whose ack was lost is sent again there with the same
//! `clientMessageId` (the server answers a stored one with the first
//! message), as tests/js/cluster/kill9.test.js's senders do.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::Client;
use super::cluster::Cluster;

/// How long the instances may take to deliver again after a fault: the
/// cluster's failover (cluster-node-timeout, an election), the read
/// timeout of a stopped node (block time plus the Redis timeout) and the
/// readers' backoff, generous for the shared CPU.
pub const RESUME: Duration = Duration::from_secs(60);

/// Channels the load rotates over.
pub const CHANNELS: usize = 6;

/// A client of the load: who it is and which instance it is on now.
pub struct Member {
    pub client: Client,
    pub user: String,
    pub instance: usize,
    /// Times it moved to another instance (each a recovered session).
    pub moves: u32,
}

/// Which list of the load a member is in.
#[derive(Clone, Copy)]
enum Kind {
    Sender,
    Subscriber,
}

pub struct Load {
    pub channels: Vec<String>,
    pub senders: Vec<Member>,
    pub subscribers: Vec<Member>,
    /// Per channel, the seqs acked so far (1, 2, …: only the load sends).
    pub acked: HashMap<String, Vec<u64>>,
    /// Per subscriber and channel, the last seq received.
    pub seen: Vec<HashMap<String, u64>>,
    /// Rounds sent and not yet received by every subscriber: (sent at,
    /// per channel the last seq of the round).
    pending: Vec<(Instant, HashMap<String, u64>)>,
    /// The longest a round took to reach every subscriber since it was
    /// last reset.
    pub slowest: Duration,
    next: usize,
    /// Each instance's port, and whether it is down (set by the test that
    /// killed it: no client moves there).
    ports: Vec<u16>,
    down: Vec<bool>,
    /// A token per user (one secret for every instance).
    tokens: HashMap<String, String>,
    moved: usize,
}

impl Load {
    /// A sender and a subscriber on each instance of `cluster`, members of
    /// [`CHANNELS`] new public channels.
    pub fn start(cluster: &Cluster) -> Load {
        let channels: Vec<String> = (0..CHANNELS)
            .map(|i| {
                cluster
                    .server(0)
                    .create_channel("owner", &format!("load{i}"), "public", &[])
            })
            .collect();
        let mut load = Load {
            acked: channels.iter().map(|c| (c.clone(), Vec::new())).collect(),
            seen: Vec::new(),
            channels,
            senders: Vec::new(),
            subscribers: Vec::new(),
            pending: Vec::new(),
            slowest: Duration::ZERO,
            next: 0,
            ports: (0..cluster.len())
                .map(|i| cluster.server(i).port())
                .collect(),
            down: vec![false; cluster.len()],
            tokens: HashMap::new(),
            moved: 0,
        };
        for i in 0..cluster.len() {
            load.add_sender(cluster, i, &format!("sender{i}"));
            load.add_subscriber(cluster, i, &format!("reader{i}"));
        }
        load
    }

    /// A member `user` on instance `i`, joined to every load channel;
    /// per channel the `lastSeq` of its join.
    fn join(&mut self, cluster: &Cluster, i: usize, user: &str) -> (Member, HashMap<String, u64>) {
        let token = cluster.token(user);
        let mut client = match Client::try_connect(cluster.server(i), &token) {
            super::client::Connect::Ok(c) => *c,
            super::client::Connect::Refused(r) => panic!("{user} refused on instance {i}: {r}"),
        };
        self.tokens.insert(user.to_owned(), token);
        let mut last = HashMap::new();
        for ch in &self.channels {
            let ack = client.call("join_channel", json!({ "channelId": ch }));
            assert_eq!(ack["ok"], true, "{ack}");
            last.insert(ch.clone(), ack["lastSeq"].as_u64().expect("lastSeq"));
        }
        let member = Member {
            client,
            user: user.to_owned(),
            instance: i,
            moves: 0,
        };
        (member, last)
    }

    /// One more sender, `user` on instance `i`.
    pub fn add_sender(&mut self, cluster: &Cluster, i: usize, user: &str) {
        let (member, _) = self.join(cluster, i, user);
        self.senders.push(member);
    }

    /// One more subscriber, `user` on instance `i`: it must get every
    /// message after its joins.
    pub fn add_subscriber(&mut self, cluster: &Cluster, i: usize, user: &str) {
        let (member, last) = self.join(cluster, i, user);
        self.subscribers.push(member);
        self.seen.push(last);
    }

    /// Instance `i` is gone (the test killed it): its clients move to the
    /// others when they notice.
    pub fn instance_down(&mut self, i: usize) {
        self.down[i] = true;
    }

    /// Instance `i` serves again.
    pub fn instance_up(&mut self, i: usize) {
        self.down[i] = false;
    }

    /// Messages acked so far, over every channel.
    pub fn acked_count(&self) -> usize {
        self.acked.values().map(Vec::len).sum()
    }

    /// Messages acked that subscriber `i` has not received yet.
    pub fn missing(&self, i: usize) -> u64 {
        self.acked
            .iter()
            .map(|(ch, seqs)| {
                let last = seqs.last().copied().unwrap_or(0);
                last.saturating_sub(self.seen[i].get(ch).copied().unwrap_or(0))
            })
            .sum()
    }

    /// One message from each sender, each to the next channel of the
    /// rotation; every one must be acked (the store commits whatever Redis
    /// does).
    pub fn round(&mut self) {
        self.round_with(|| {});
    }

    /// [`Load::round`] whose sends are all on the wire, none of their acks
    /// read, when `meanwhile` runs (a fault hitting sends in flight). A
    /// send whose connection broke is sent again, with its
    /// `clientMessageId`, once its sender moved.
    pub fn round_with(&mut self, meanwhile: impl FnOnce()) {
        let mut calls = Vec::new();
        for k in 0..self.senders.len() {
            let ch = self.channels[self.next % CHANNELS].clone();
            self.next += 1;
            let payload = json!({
                "channelId": ch,
                "content": format!("m{}", self.next),
                "clientMessageId": format!("{}-{}", self.senders[k].user, self.next),
            });
            let id = self.senders[k]
                .client
                .send_call("send_message", &payload)
                .ok();
            calls.push((k, ch, payload, id));
        }
        meanwhile();
        let mut last = HashMap::new();
        for (k, ch, payload, id) in calls {
            let ack = self.ack_of(k, id, &payload);
            assert_eq!(ack["ok"], true, "{ack}");
            let seq = ack["message"]["seq"].as_u64().expect("seq");
            let acked = self.acked.get_mut(&ch).expect("a load channel");
            assert_eq!(
                seq,
                acked.last().map_or(1, |l| l + 1),
                "acked seqs of {ch} are not consecutive"
            );
            acked.push(seq);
            last.insert(ch, seq);
        }
        self.pending.push((Instant::now(), last));
    }

    /// The ack of sender `k`'s call `id` (None: the send itself failed);
    /// while its connection is broken, the sender moves and sends
    /// `payload` again.
    fn ack_of(&mut self, k: usize, id: Option<u64>, payload: &Value) -> Value {
        let mut result = match id {
            Some(id) => self.senders[k].client.await_ack(id),
            None => Err(tungstenite::Error::ConnectionClosed),
        };
        for _ in 0..self.ports.len() {
            match result {
                Ok(ack) => return ack,
                Err(_) => {
                    self.move_member(Kind::Sender, k);
                    result = self.senders[k].client.try_call("send_message", payload);
                }
            }
        }
        result.unwrap_or_else(|e| panic!("{payload} never acked: {e}"))
    }

    /// Moves a member whose connection broke to the next running
    /// instance (in turn, so the moved clients spread), claiming its
    /// session; panics unless the session is recovered.
    fn move_member(&mut self, kind: Kind, k: usize) {
        let n = self.ports.len();
        self.moved += 1;
        let member = match kind {
            Kind::Sender => &mut self.senders[k],
            Kind::Subscriber => &mut self.subscribers[k],
        };
        let token = &self.tokens[&member.user];
        for step in 0..n {
            let to = (self.moved + step) % n;
            if self.down[to] || to == member.instance {
                continue;
            }
            match member.client.reconnect(self.ports[to], token) {
                Ok(recovered) => {
                    assert!(
                        recovered,
                        "{} moved from instance {} to {to} got a fresh session",
                        member.user, member.instance
                    );
                    member.instance = to;
                    member.moves += 1;
                    return;
                }
                Err(e) => eprintln!("{} could not move to instance {to}: {e}", member.user),
            }
        }
        panic!("{} found no instance to move to", member.user);
    }

    /// Reads the subscribers for up to `within` (each message checked: the
    /// next seq of its channel), and retires the rounds every subscriber
    /// has; true once none is pending.
    pub fn receive(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        for i in 0..self.subscribers.len() {
            while self.missing(i) > 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                let read = self.subscribers[i].client.next_event_where(
                    "message",
                    left.max(Duration::from_millis(1)),
                    |_| true,
                );
                let m = match read {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(_) => {
                        self.move_member(Kind::Subscriber, i);
                        continue;
                    }
                };
                let ch = m["channelId"].as_str().expect("channelId").to_owned();
                let seq = m["seq"].as_u64().expect("seq");
                let last = self.seen[i].entry(ch.clone()).or_insert(0);
                assert_eq!(
                    seq,
                    *last + 1,
                    "subscriber {i} got seq {seq} of {ch} after {last}: a gap, a repeat or \
                     out of order"
                );
                *last = seq;
            }
        }
        let seen = &self.seen;
        let slowest = &mut self.slowest;
        self.pending.retain(|(sent, last)| {
            let done = last
                .iter()
                .all(|(ch, seq)| seen.iter().all(|s| s.get(ch).copied().unwrap_or(0) >= *seq));
            if done {
                *slowest = (*slowest).max(sent.elapsed());
            }
            !done
        });
        self.pending.is_empty()
    }

    /// How long ago the oldest round not yet received by every subscriber
    /// was sent (None: every round arrived).
    pub fn oldest_pending(&self) -> Option<Duration> {
        self.pending.iter().map(|(sent, _)| sent.elapsed()).max()
    }

    /// Whether a round sent before `t` has not reached every subscriber.
    pub fn pending_before(&self, t: Instant) -> bool {
        self.pending.iter().any(|(sent, _)| *sent < t)
    }

    /// Waits until every subscriber has every acked message.
    pub fn settle(&mut self) {
        let deadline = Instant::now() + RESUME;
        while !self.receive(Duration::from_millis(500)) {
            assert!(
                Instant::now() < deadline,
                "messages not delivered within {RESUME:?}: seen {:?}, acked up to {:?}",
                self.seen,
                self.acked
                    .iter()
                    .map(|(c, s)| (c, s.last()))
                    .collect::<Vec<_>>()
            );
        }
    }

    /// Sender `from`'s typing reaches subscriber `to` (on another
    /// instance); typing is at most once, so it is sent again until seen.
    pub fn typing_between(&mut self, from: usize, to: usize) -> Duration {
        let start = Instant::now();
        let ch = self.channels[0].clone();
        let user = self.senders[from].user.clone();
        let mut typing = true;
        loop {
            let event = if typing {
                "typing_start"
            } else {
                "typing_stop"
            };
            self.senders[from]
                .client
                .emit(event, json!({ "channelId": ch }));
            let seen = self.subscribers[to].client.try_event_where(
                "typing",
                Duration::from_millis(300),
                |d| d["userId"] == user.as_str() && d["isTyping"] == typing,
            );
            if seen.is_some() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < RESUME,
                "typing of {user} did not reach subscriber {to} within {RESUME:?}"
            );
            typing = !typing;
        }
    }

    /// Sender 0's typing reaches subscriber 1 (another instance).
    pub fn typing_crosses(&mut self) -> Duration {
        self.typing_between(0, 1)
    }

    /// Every acked message once in MySQL, in its channel's seq order.
    pub fn check_mysql(&self, cluster: &Cluster) {
        let mut db = cluster.db();
        for (ch, seqs) in &self.acked {
            let stored: Vec<u64> = mysql::prelude::Queryable::exec(
                &mut db,
                "SELECT seq FROM messages WHERE channel_id = ? ORDER BY seq",
                (ch.as_bytes(),),
            )
            .expect("SELECT the channel's messages");
            assert_eq!(
                &stored, seqs,
                "{ch}: stored seqs differ from the acked ones"
            );
        }
    }
}

/// Per instance, a metric's value.
pub fn per_instance(cluster: &Cluster, name: &str) -> Vec<f64> {
    (0..cluster.len())
        .map(|i| cluster.metric(i, name))
        .collect()
}
