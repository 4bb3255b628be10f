//! The durability scenarios against MariaDB (the real binary with
//! `DATABASE_URL`): what was acked survives a `kill -9` of gatrix-chat, a
//! repeated clientMessageId across a restart returns the first message, and
//! when mariadbd itself goes away mid-load, sends are refused with
//! UNAVAILABLE (never acked) within a bounded time, nothing acked is lost,
//! service resumes by itself when mariadbd is back, and retries with the
//! same clientMessageIds store each message once with gapless seqs.
//!
//! Ignored without scripts/test's MariaDB (and failing, run without it).
//! The kill -9 scenarios are tests/durability.rs's (`common::durable`) on a
//! fresh database of the shared server; the outage tests stop and start a
//! mariadbd of their own (`common::mysql::Mariadb`), so that the other
//! tests' server stays up.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use common::chat::{
    NO_RATE_LIMIT, assert_gapless_and_unique, essentials, send_all, send_message_frame,
};
use common::durable::{self, with_backend};
use common::mysql::{Mariadb, NEEDS_MARIADB, mysql_db};
use common::raw::{Ws, call, connect, is_timeout, join, send_text};
use common::{TestServer, http_get};

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn acked_messages_survive_kill_9() {
    let db = mysql_db();
    durable::acked_messages_survive_kill_9(&[("DATABASE_URL", &db)]);
    assert_eq!(messages_in(&db), 301, "messages in MariaDB");
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn kill_9_while_sending_keeps_every_acked_message_once() {
    let db = mysql_db();
    durable::kill_9_while_sending_keeps_every_acked_message_once(&[("DATABASE_URL", &db)]);
    assert_eq!(messages_in(&db), 400, "messages in MariaDB");
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn repeated_client_message_id_across_restart_returns_the_first_message() {
    let db = mysql_db();
    durable::repeated_client_message_id_across_restart_returns_the_first_message(&[(
        "DATABASE_URL",
        &db,
    )]);
    assert_eq!(messages_in(&db), 3, "messages in MariaDB");
}

/// How many messages the database at `db` holds: that the server stored
/// them there (and not in a SQLite file under DATA_DIR).
fn messages_in(db: &str) -> u64 {
    let mut conn = common::mysql::connect(db).expect("connect to the test database");
    mysql::prelude::Queryable::query_first(&mut conn, "SELECT COUNT(*) FROM messages")
        .expect("count messages")
        .expect("a count")
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn mariadb_killed_mid_load_refuses_then_resumes_by_itself() {
    outage_mid_load(Signal::SIGKILL);
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn mariadb_shut_down_mid_load_refuses_then_resumes_by_itself() {
    outage_mid_load(Signal::SIGTERM);
}

/// Every send is answered within this while mariadbd is down (the store's
/// connect timeout is 3 s; a refused connection fails at once).
const ANSWERED_WITHIN: Duration = Duration::from_secs(15);
/// How long gatrix-chat may take to notice mariadbd is back (its reconnect
/// backoff is capped at 5 s).
const RESUMES_WITHIN: Duration = Duration::from_secs(30);
/// Messages acked before mariadbd is stopped.
const ACKED_BEFORE: usize = 150;
/// Refusals of messages sent after mariadbd is gone, before it comes back.
const REFUSED_WHILE_DOWN: usize = 60;
/// How long mariadbd stays down (at least).
const DOWN_FOR: Duration = Duration::from_secs(3);

/// A sender keeping WINDOW `send_message` in flight on one connection,
/// each with its own clientMessageId (`load-<i>`), and what became of them.
struct Load {
    ws: Ws,
    channel: String,
    /// Every message sent: (clientMessageId, content).
    sent: Vec<(String, String)>,
    /// Ack id (= index into `sent`) -> when it was sent.
    in_flight: HashMap<u64, Instant>,
    /// Acked ok: clientMessageId -> the message.
    acked: HashMap<String, Value>,
    /// Refused with UNAVAILABLE: indexes into `sent`.
    refused: Vec<usize>,
    /// Indexes from here on were sent after mariadbd was gone.
    down_from: Option<usize>,
    /// The longest wait for an answer to a send made while down.
    slowest_while_down: Duration,
}

const WINDOW: usize = 32;

impl Load {
    fn new(ws: Ws, channel: &str) -> Self {
        ws.get_ref()
            .set_read_timeout(Some(ANSWERED_WITHIN))
            .expect("read timeout");
        Load {
            ws,
            channel: channel.to_owned(),
            sent: Vec::new(),
            in_flight: HashMap::new(),
            acked: HashMap::new(),
            refused: Vec::new(),
            down_from: None,
            slowest_while_down: Duration::ZERO,
        }
    }

    /// Sends until `window` are in flight, then handles one answer.
    fn step(&mut self, window: usize) {
        while self.in_flight.len() < window {
            let i = self.sent.len();
            let cmid = format!("load-{i}");
            let content = format!("load message {i} 😀");
            send_message_frame(&mut self.ws, i as u64, &self.channel, &cmid, &content);
            self.sent.push((cmid, content));
            self.in_flight.insert(i as u64, Instant::now());
        }
        if self.in_flight.is_empty() {
            return;
        }
        let (id, ack) = self.recv_ack();
        let sent_at = self
            .in_flight
            .remove(&id)
            .unwrap_or_else(|| panic!("an ack for ack id {id}, not in flight: {ack}"));
        let i = id as usize;
        let took = sent_at.elapsed();
        assert!(
            took < ANSWERED_WITHIN,
            "send {i} answered after {took:?}: {ack}"
        );
        let after_down = self.down_from.is_some_and(|d| i >= d);
        if after_down {
            self.slowest_while_down = self.slowest_while_down.max(took);
        }
        if ack["ok"] == true {
            assert!(
                !after_down,
                "send {i}, made after mariadbd was gone, was acked ok: {ack}"
            );
            let m = ack["message"].clone();
            assert_eq!(m["clientMessageId"], self.sent[i].0.as_str(), "{ack}");
            assert!(self.acked.insert(self.sent[i].0.clone(), m).is_none());
        } else {
            assert_eq!(
                ack["error"]["code"], "UNAVAILABLE",
                "send {i} refused, but not as UNAVAILABLE: {ack}"
            );
            self.refused.push(i);
        }
    }

    /// The next ack, skipping events; panics when none comes in time.
    fn recv_ack(&mut self) -> (u64, Value) {
        loop {
            let packet = match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) if t.as_str() == "2" => {
                    send_text(&mut self.ws, "3");
                    continue;
                }
                Ok(tungstenite::Message::Text(t)) => t.as_str().to_owned(),
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => panic!(
                    "no answer within {ANSWERED_WITHIN:?}; {} sends in flight, {} acked, {} refused",
                    self.in_flight.len(),
                    self.acked.len(),
                    self.refused.len()
                ),
                Err(e) => panic!("sender connection: {e}"),
            };
            let Some(rest) = packet.strip_prefix("43") else {
                continue;
            };
            let at = rest.find('[').expect("ACK payload");
            let id = rest[..at].parse().expect("ACK id");
            let args: Value = serde_json::from_str(&rest[at..]).expect("ACK JSON");
            return (id, args[0].clone());
        }
    }

    fn refused_while_down(&self) -> usize {
        let from = self.down_from.unwrap_or(usize::MAX);
        self.refused.iter().filter(|&&i| i >= from).count()
    }

    /// Answers for everything still in flight, sending nothing new.
    fn drain(&mut self) {
        while !self.in_flight.is_empty() {
            self.step(0);
        }
    }
}

fn ready_status(server: &TestServer) -> u16 {
    http_get(server.port(), "/ready").map_or(0, |r| r.status)
}

fn outage_mid_load(signal: Signal) {
    let mut mariadb = Mariadb::private().expect(NEEDS_MARIADB);
    let db = mariadb.create_db();
    let server = TestServer::start_with(&with_backend(&NO_RATE_LIMIT, &[("DATABASE_URL", &db)]));
    let channel = server.create_channel("sender", "outage", "public", &[]);
    let mut sender = connect(&server, "sender");
    join(&mut sender, &channel);
    let mut load = Load::new(sender, &channel);

    // Load, then mariadbd goes away while WINDOW sends are in flight.
    while load.acked.len() < ACKED_BEFORE {
        load.step(WINDOW);
    }
    assert!(load.refused.is_empty(), "refusals before the outage");
    let stopped = Instant::now();
    mariadb.stop(signal);
    load.down_from = Some(load.sent.len());
    println!(
        "mariadbd stopped with {signal} after {} acks ({} in flight), in {:?}",
        load.acked.len(),
        load.in_flight.len(),
        stopped.elapsed()
    );

    // Sends made now are refused, each within the bound, none acked. The
    // outage lasts a while (one send every 20 ms), so that gatrix-chat's
    // reconnect backoff grows.
    load.drain();
    while load.refused_while_down() < REFUSED_WHILE_DOWN || stopped.elapsed() < DOWN_FOR {
        load.step(1);
        std::thread::sleep(Duration::from_millis(20));
    }
    load.drain();
    assert_eq!(ready_status(&server), 503, "/ready while mariadbd is down");
    println!(
        "{} refused while down, the slowest answered in {:?}; {} acked, {} refused in all",
        load.refused_while_down(),
        load.slowest_while_down,
        load.acked.len(),
        load.refused.len()
    );

    // mariadbd back (same datadir, same port): gatrix-chat resumes by
    // itself. Probes go one at a time until one is acked.
    mariadb.start();
    let back = Instant::now();
    let mut probes: Vec<(String, String)> = Vec::new();
    let mut resumed = false;
    while !resumed {
        assert!(
            back.elapsed() < RESUMES_WITHIN,
            "sends still refused {RESUMES_WITHIN:?} after mariadbd came back"
        );
        let (cmid, content) = (format!("probe-{}", probes.len()), "probe".to_owned());
        let ack = call(
            &mut load.ws,
            100_000 + probes.len() as u64,
            "send_message",
            json!({ "channelId": channel, "content": content, "clientMessageId": cmid }),
        );
        if ack["ok"] == true {
            load.acked.insert(cmid.clone(), ack["message"].clone());
            resumed = true;
        } else {
            assert_eq!(ack["error"]["code"], "UNAVAILABLE", "probe: {ack}");
            std::thread::sleep(Duration::from_millis(200));
        }
        probes.push((cmid, content));
    }
    println!(
        "sends acked again {:?} after mariadbd started ({} probes)",
        back.elapsed(),
        probes.len()
    );
    // Reads work again too, at once: `/ready` pings the store on a reader
    // thread (STORE_READERS of them, taken in turn by whoever is free).
    let failed_reads: Vec<u16> = (0..6)
        .map(|_| ready_status(&server))
        .filter(|&status| status != 200)
        .collect();
    // (Waits for reads before going on, so that the checks below run even
    // when the ones above failed; they are reported at the end.)
    while ready_status(&server) != 200 {
        assert!(
            back.elapsed() < RESUMES_WITHIN,
            "/ready still not 200 {RESUMES_WITHIN:?} after mariadbd came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Everything again, with the same clientMessageIds: what was acked
    // comes back unchanged, the rest is stored now; each once.
    let mut everything = load.sent.clone();
    everything.extend(probes.iter().cloned());
    let acks = send_all(&mut load.ws, &channel, 200_000, &everything);
    let mut by_cmid: HashMap<String, Value> = HashMap::new();
    for ((cmid, _), ack) in everything.iter().zip(&acks) {
        assert_eq!(ack["ok"], true, "retry of {cmid} after the outage: {ack}");
        let m = ack["message"].clone();
        assert_eq!(m["clientMessageId"], cmid.as_str());
        if let Some(first) = load.acked.get(cmid) {
            assert_eq!(
                essentials(&m),
                essentials(first),
                "{cmid}: the retry of an acked message is not that message"
            );
        }
        by_cmid.insert(cmid.clone(), m);
    }
    let seqs: HashSet<u64> = by_cmid
        .values()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs.len(), everything.len(), "two messages with one seq");

    // History: every message once, seqs 1..=n, acked ones as acked.
    let history = server.history("sender", &channel);
    let stored = assert_gapless_and_unique(&history);
    assert_eq!(
        history.len(),
        everything.len(),
        "history holds {} messages for {} clientMessageIds",
        history.len(),
        everything.len()
    );
    for (cmid, m) in &by_cmid {
        let h = stored
            .get(cmid)
            .unwrap_or_else(|| panic!("{cmid} missing from history"));
        assert_eq!(essentials(h), essentials(m), "{cmid}");
    }
    for (cmid, m) in &load.acked {
        assert_eq!(
            essentials(&stored[cmid]),
            essentials(m),
            "acked {cmid} changed"
        );
    }
    // New messages keep going.
    let ack = call(
        &mut load.ws,
        9,
        "send_message",
        json!({ "channelId": channel, "content": "after" }),
    );
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["message"]["seq"], history.len() as u64 + 1, "{ack}");
    let log = server.log();
    assert!(
        !log.contains("panicked"),
        "gatrix-chat panicked during the outage:\n{log}"
    );
    assert!(
        failed_reads.is_empty(),
        "after mariadbd was back and sends were acked again, {} of 6 GET /ready answered \
         {failed_reads:?}: a store reader whose connection the outage broke fails the next \
         read with it instead of reconnecting",
        failed_reads.len()
    );
}
