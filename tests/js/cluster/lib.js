// Helpers for the scenarios of several gatrix-chat instances on one database
// and one Redis, run by tests/multi_instance.rs (tests/common/cluster.rs
// starts the instances). It passes, besides ../lib.js's GATRIX_URL (the
// first instance) and JWT_SECRET:
//   GATRIX_URLS         every instance's URL, comma-separated, by index
//   GATRIX_CONTROL_URL  where to ask the test for faults (`control`)
//   GATRIX_ACKED_FILE   where to write every acked message, one JSON per
//                       line: the test then finds each in MySQL exactly once

import assert from "node:assert/strict";
import { appendFileSync } from "node:fs";

import { WAIT_MS, connect, join, newChannel, sleep, uid } from "../lib.js";

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/multi_instance.rs`);
  return value;
}

export const URLS = required("GATRIX_URLS").split(",");
const CONTROL_URL = required("GATRIX_CONTROL_URL");
const ACKED_FILE = required("GATRIX_ACKED_FILE");

/** How long the test may take for a fault (a restart waits for readiness). */
const CONTROL_TIMEOUT_MS = 120_000;

/**
 * Asks the test for a fault and resolves once it is done: `kill9/<i>`,
 * `restart/<i>`, `redis/stop`, `redis/start`, `redis/kill9`, `redis/pause`,
 * `redis/resume`.
 */
export async function control(request) {
  const response = await fetch(`${CONTROL_URL}/${request}`, {
    signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS),
  });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`control ${request}: ${response.status} ${body}`);
  return body;
}

/**
 * Instance `i` modulo the cluster's size: the scenarios are written for
 * three instances and also run against one (tests/multi_instance.rs).
 */
export const instance = (i) => i % URLS.length;
/** The URL of instance `i` (modulo the cluster's size). */
export const urlOf = (i) => URLS[instance(i)];

/** Connects as `sub` to instance `i`; `socket.instance` remembers which. */
export async function connectTo(i, sub, opts = {}) {
  const socket = await connect(sub, { url: urlOf(i), ...opts });
  socket.instance = instance(i);
  socket.sub = sub;
  return socket;
}

/** Reconnection after a fixed delay, as in ../recovery.test.js. */
export const RECONNECT_DELAY_MS = 600;

/**
 * Connects to instance `i` with socket.io-client's reconnection (and so its
 * connection state recovery) on: a dropped client reconnects by itself
 * with its `pid` and last offset. `socket.recoveries` counts reconnections
 * that were recovered, `socket.fresh` the ones that were not.
 */
export async function connectRecoverable(i, sub) {
  const socket = await connectTo(i, sub, {
    reconnection: true,
    reconnectionDelay: RECONNECT_DELAY_MS,
    reconnectionDelayMax: RECONNECT_DELAY_MS,
    randomizationFactor: 0,
  });
  socket.recoveries = 0;
  socket.fresh = 0;
  socket.on("connect", () => {
    if (socket.recovered) socket.recoveries += 1;
    else socket.fresh += 1;
  });
  return socket;
}

/**
 * Makes the next reconnection of `socket` go to instance `i`, as a load
 * balancer would send it anywhere: socket.io-client's Manager opens each
 * new transport on `io.uri`.
 */
export function moveTo(socket, i) {
  socket.io.uri = urlOf(i);
  socket.instance = instance(i);
}

/** Drops the transport without a namespace disconnect (no `41`). */
export function dropTransport(socket) {
  return new Promise((resolve) => {
    socket.once("disconnect", (reason) => resolve(reason));
    socket.io.engine.close();
  });
}

/** Resolves on the next `connect` of `socket` (a reconnection). */
export function reconnected(socket, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${socket.sub}: no reconnection within ${timeoutMs} ms`)), timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Writes an acked message to GATRIX_ACKED_FILE for the test's MySQL check. */
export function recordAcked(message) {
  const { id, channelId, seq, userId, clientMessageId } = message;
  appendFileSync(ACKED_FILE, `${JSON.stringify({ id, channelId, seq, userId, clientMessageId })}\n`);
}

let nextCmid = 0;
/** A clientMessageId no other send of this process uses. */
export const cmid = (prefix) => `${prefix}-${process.pid}-${nextCmid++}`;

/**
 * Sends with a fresh clientMessageId and requires an ok ack within
 * `ackMs`: no retry. Records and resolves with the message.
 */
export async function sendOnce(socket, channelId, content, ackMs = WAIT_MS, extra = {}) {
  const clientMessageId = cmid(socket.sub);
  const ack = await socket.timeout(ackMs).emitWithAck("send_message", { channelId, content, clientMessageId, ...extra });
  assert.equal(ack?.ok, true, `send_message ${clientMessageId} on instance ${socket.instance}: ${JSON.stringify(ack)}`);
  assert.equal(ack.message.clientMessageId, clientMessageId);
  recordAcked(ack.message);
  return ack.message;
}

/**
 * Sends until acked, as a careful client does when its instance dies: on a
 * missing ack (timeout, dropped connection) or `UNAVAILABLE` it waits for
 * the connection and sends again with the same clientMessageId, which the
 * server answers with the first message if it was stored. Any other
 * refusal fails. Records and resolves with the message.
 */
export async function sendUntilAcked(socket, channelId, content, deadlineMs = 90_000) {
  const clientMessageId = cmid(socket.sub);
  const until = Date.now() + deadlineMs;
  let last = "not sent";
  while (Date.now() < until) {
    if (!socket.connected) {
      await sleep(50);
      continue;
    }
    let ack;
    try {
      ack = await socket.timeout(WAIT_MS).emitWithAck("send_message", { channelId, content, clientMessageId });
    } catch (e) {
      last = e.message;
      continue;
    }
    if (ack?.ok) {
      assert.equal(ack.message.clientMessageId, clientMessageId);
      recordAcked(ack.message);
      return ack.message;
    }
    last = JSON.stringify(ack);
    // A FORBIDDEN here after a reconnection means the session (and its
    // channels) was not recovered: say so.
    assert.equal(
      ack?.error?.code,
      "UNAVAILABLE",
      `send_message ${clientMessageId} on instance ${socket.instance} (recovered reconnections ${socket.recoveries}, fresh ${socket.fresh}): ${last}`,
    );
    await sleep(200);
  }
  throw new Error(`send_message ${clientMessageId} not acked within ${deadlineMs} ms: ${last}`);
}

/**
 * Watches a socket's `message` events from its creation on, across its
 * reconnections: per channel, each must be the previous seq + 1 (the
 * first 1), so a gap, a repeat or a reordering is recorded in `errors` as
 * it happens. `waitFor` resolves once a channel reached a seq.
 */
export class SeqWatch {
  constructor(socket, name = socket.sub) {
    this.name = name;
    this.last = new Map(); // channelId -> last seq seen
    this.ids = new Map(); // channelId -> [id of seq 1, id of seq 2, …]
    this.errors = [];
    this.waiters = new Set();
    socket.on("message", (m) => this.see(m));
  }

  see(m) {
    const last = this.last.get(m.channelId) ?? 0;
    if (m.seq !== last + 1) {
      this.errors.push(`${this.name}: channel ${m.channelId} seq ${m.seq} after ${last}`);
    }
    if (m.seq > last) {
      this.last.set(m.channelId, m.seq);
      const ids = this.ids.get(m.channelId) ?? [];
      ids[m.seq - 1] = m.id;
      this.ids.set(m.channelId, ids);
    }
    for (const wake of this.waiters) wake();
  }

  /** Resolves once `channelId` reached `seq`; rejects after `timeoutMs`. */
  waitFor(channelId, seq, timeoutMs = 30_000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if ((this.last.get(channelId) ?? 0) < seq) return false;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${this.name}: channel ${channelId} at seq ${this.last.get(channelId) ?? 0}, not ${seq}, after ${timeoutMs} ms; errors: ${this.errors.join("; ")}`));
      }, timeoutMs);
      if (!check()) this.waiters.add(check);
    });
  }
}

/**
 * `acked` (messages, retries of one message counted once) per channel must
 * be seqs 1..N with no gap; returns channelId -> [id of seq 1, …].
 */
export function ackedBySeq(acked) {
  const byChannel = new Map();
  for (const m of acked) {
    const ids = byChannel.get(m.channelId) ?? [];
    assert.ok(ids[m.seq - 1] === undefined || ids[m.seq - 1] === m.id, `two messages acked with seq ${m.seq} in ${m.channelId}`);
    ids[m.seq - 1] = m.id;
    byChannel.set(m.channelId, ids);
  }
  for (const [channelId, ids] of byChannel) {
    const missing = [...ids.keys()].filter((i) => ids[i] === undefined).map((i) => i + 1);
    assert.deepEqual(missing, [], `channel ${channelId}: seqs ${missing} were never acked (acked up to ${ids.length})`);
  }
  return byChannel;
}

/**
 * Every watch receives, for every channel of `expected` (from
 * `ackedBySeq`), exactly seqs 1..N with the acked ids, in order, no gap,
 * no duplicate, within `timeoutMs`.
 */
export async function assertAllDelivered(watches, expected, timeoutMs = 60_000) {
  await Promise.all(
    watches.flatMap((w) => [...expected].map(([channelId, ids]) => w.waitFor(channelId, ids.length, timeoutMs))),
  );
  for (const w of watches) {
    assert.deepEqual(w.errors, [], `${w.name} saw gaps, repeats or reorderings`);
    for (const [channelId, ids] of expected) {
      assert.deepEqual(w.ids.get(channelId), ids, `${w.name}: ids of channel ${channelId} by seq`);
    }
  }
}

/** `chat_connections_active` of instance `i` (summed over its shards). */
export async function connectionsActive(i) {
  const response = await fetch(`${URLS[i]}/metrics`, { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(response.status, 200);
  const text = await response.text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("chat_connections_active{") || l.startsWith("chat_connections_active "))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

/**
 * Waits until the instances' `chat_connections_active` add up to
 * `expected` (a disconnect is counted once the server has seen it).
 */
export async function waitConnectionsTotal(expected, instances = URLS.map((_, i) => i), timeoutMs = 20_000) {
  const until = Date.now() + timeoutMs;
  let counts = [];
  while (Date.now() < until) {
    counts = await Promise.all(instances.map(connectionsActive));
    if (counts.reduce((a, b) => a + b, 0) === expected) return counts;
    await sleep(100);
  }
  assert.fail(`chat_connections_active per instance ${JSON.stringify(counts)}, not ${expected} in total, after ${timeoutMs} ms`);
}

/** Resolves once `acked` holds at least `n` messages. */
export async function ackedAtLeast(acked, n, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  while (acked.length < n) {
    if (acked.stopped) assert.fail("the senders stopped");
    if (Date.now() > until) assert.fail(`${acked.length} messages acked, not ${n}, after ${timeoutMs} ms`);
    await sleep(20);
  }
}

/**
 * Load: each sender sends, one at a time, to the channels in turn with
 * `send(socket, channelId, content)`, pausing `intervalMs` between sends,
 * until `during(acked)` resolves (it causes the fault and waits for what it
 * needs). Resolves with every acked message; fails as soon as a sender
 * fails.
 */
export async function underLoad({ senders, channels, intervalMs, send, during }) {
  const acked = [];
  // Set when the load ends (normally or because a sender failed), so that
  // `ackedAtLeast` in a `during` still running gives up at once.
  acked.stopped = false;
  const loops = Promise.all(
    senders.map(async (s, n) => {
      for (let k = 0; !acked.stopped; k++) {
        acked.push(await send(s, channels[(n + k) % channels.length], `${s.sub}@${s.instance}: ${k}`));
        await sleep(intervalMs);
      }
    }),
  );
  try {
    await Promise.race([
      during(acked),
      loops.then(() => assert.fail("the senders stopped before the scenario ended")),
    ]);
  } finally {
    acked.stopped = true;
  }
  await loops;
  return acked;
}

/**
 * The layout of the fault scenarios: two channels; on every instance
 * `subscribersPerInstance` recoverable subscribers and one recoverable
 * sender (which subscribes too), all joined to both channels and watched.
 */
export async function faultLayout(subscribersPerInstance = 2) {
  const channels = [await newChannel(), await newChannel()];
  const subscribers = [];
  const senders = [];
  for (let i = 0; i < URLS.length; i++) {
    for (let k = 0; k < subscribersPerInstance; k++) subscribers.push(await connectRecoverable(i, uid(`sub${i}`)));
    senders.push(await connectRecoverable(i, uid(`send${i}`)));
  }
  const everyone = [...subscribers, ...senders];
  const watches = everyone.map((s) => new SeqWatch(s, `${s.sub}@${s.instance}`));
  for (const s of everyone) for (const c of channels) await join(s, c);
  return { channels, subscribers, senders, everyone, watches };
}

/**
 * Redis made unavailable under load for `faultMs` by `begin` and back by
 * `end` (control requests): every send is acked within `ackMs` all along
 * (Redis is not on the path to the ack), more than `minDuring` of them
 * while Redis is away, and afterwards every subscriber on every instance
 * has every channel's seqs 1..N in order.
 */
export async function redisFaultUnderLoad({ begin, end, faultMs, ackMs = 10_000, minDuring = 10 }) {
  const { channels, senders, everyone, watches } = await faultLayout();
  let duringFault = 0;
  const acked = await underLoad({
    senders,
    channels,
    intervalMs: 250,
    send: (s, c, content) => sendOnce(s, c, content, ackMs),
    during: async (acked) => {
      await ackedAtLeast(acked, 30);
      await control(begin);
      const before = acked.length;
      await sleep(faultMs);
      duringFault = acked.length - before;
      await control(end);
      await ackedAtLeast(acked, acked.length + 30);
    },
  });
  assert.ok(duringFault >= minDuring, `only ${duringFault} sends acked while Redis was away`);
  await assertAllDelivered(watches, ackedBySeq(acked), 120_000);
  for (const s of everyone) assert.equal(s.fresh, 0, `${s.sub} reconnected without recovery`);
}
