// Connection state recovery, as socket.io-client 4.6+ does it by itself:
// the CONNECT reply carries a `pid`, every `message` carries its offset as a
// last argument, and a client whose transport dropped reconnects with
// `{pid, offset}` in its auth. Within RECOVERY_WINDOW_MS it gets the same
// pid back (`socket.recovered`), its channels, and every missed message, in
// order, before live ones. After `socket.disconnect()` nothing is kept.

import assert from "node:assert/strict";
import { once } from "node:events";
import { describe, test } from "node:test";

import { WAIT_MS, call, connect, join, newChannel, send, sleep, uid } from "./lib.js";

/** How long a dropped client waits before it reconnects by itself. */
const RECONNECT_DELAY_MS = 600;

/**
 * Connects with socket.io-client's default recovery behaviour and automatic
 * reconnection after a fixed delay. Records the CONNECT replies the client
 * decodes (`{sid, pid}`) in `socket.connectReplies`.
 */
async function connectRecoverable(sub) {
  const socket = await connect(sub, {
    reconnection: true,
    reconnectionDelay: RECONNECT_DELAY_MS,
    reconnectionDelayMax: RECONNECT_DELAY_MS,
    randomizationFactor: 0,
  });
  // The first CONNECT reply was decoded before we could listen: the client
  // keeps its pid (this is what it sends back on reconnection).
  socket.connectReplies = [{ sid: socket.id, pid: socket._pid }];
  socket.io.on("packet", (packet) => {
    if (packet.type === 0 && packet.nsp === "/") socket.connectReplies.push(packet.data);
  });
  return socket;
}

/** Drops the transport without a namespace disconnect (no `41`). */
function dropTransport(socket) {
  const disconnected = once(socket, "disconnect");
  socket.io.engine.close();
  return disconnected;
}

/** Resolves on the next `connect` of `socket` (a reconnection). */
function reconnected(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no reconnection within ${WAIT_MS + RECONNECT_DELAY_MS} ms`)),
      WAIT_MS + RECONNECT_DELAY_MS,
    );
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Asserts `messages` have exactly the seqs `from..=to`, in order. */
function assertSeqs(messages, from, to, what) {
  const seqs = messages.map((m) => m.seq);
  const expected = Array.from({ length: to - from + 1 }, (_, i) => from + i);
  assert.deepEqual(seqs, expected, `${what}: seqs ${JSON.stringify(seqs)}`);
}

describe("connection state recovery", () => {
  test("the CONNECT reply carries a pid and messages an offset", async () => {
    const socket = await connectRecoverable(uid("alice"));
    assert.equal(typeof socket._pid, "string", "the client kept no pid: the CONNECT reply had none");
    assert.notEqual(socket._pid, "");
    assert.equal(socket.recovered, false);
    const channelId = await newChannel();
    await join(socket, channelId);
    const sent = await send(socket, channelId, "with an offset");
    const event = await socket.inbox.nextEvent("message", (m) => m.id === sent.id);
    assert.equal(typeof event.args[1], "string");
    // socket.io-client keeps the last offset it saw, to send it back.
    assert.equal(socket._lastOffset, event.args[1]);
  });

  test("a dropped transport is recovered: same pid, missed messages replayed in order before live ones", async () => {
    const channelId = await newChannel();
    const aliceId = uid("alice");
    const alice = await connectRecoverable(aliceId);
    const bob = await connect(uid("bob"));
    await join(alice, channelId);
    await join(bob, channelId);

    const first = await send(bob, channelId, "before the drop");
    const firstEvent = await alice.inbox.nextEvent("message", (m) => m.id === first.id);
    assert.deepEqual(firstEvent.data, first);
    const pid = alice._pid;
    const sidBefore = alice.id;

    const [reason] = await dropTransport(alice);
    assert.notEqual(reason, "io client disconnect");
    assert.equal(alice.connected, false);
    const back = reconnected(alice);

    // Sent and acked while alice is down.
    const missed = [];
    for (let i = 0; i < 8; i++) missed.push(await send(bob, channelId, `missed ${i}`));
    assert.equal(alice.connected, false, "alice reconnected before the missed messages were acked");
    assertSeqs(missed, first.seq + 1, first.seq + 8, "missed acks");

    await back;
    assert.equal(alice.recovered, true, "the session was not recovered");
    assert.equal(alice._pid, pid, "a recovered session keeps its pid");
    assert.notEqual(alice.id, sidBefore, "a new connection has a new sid");
    const reply = alice.connectReplies.at(-1);
    assert.equal(reply.pid, pid, `CONNECT reply ${JSON.stringify(reply)}`);

    // Live messages right after the reconnection come after the replay.
    const live = [];
    for (let i = 0; i < 3; i++) live.push(await send(bob, channelId, `live ${i}`));
    // The subscription came back with the session: no join needed to send.
    live.push(await send(alice, channelId, "alice is back"));

    const events = await alice.inbox.takeEvents(
      "message",
      missed.length + live.length,
      (m) => m.channelId === channelId,
    );
    assert.deepEqual(
      events.map((e) => e.data),
      [...missed, ...live],
      "alice did not get exactly the missed messages, in order, then the live ones",
    );
    for (const e of events) assert.equal(typeof e.args[1], "string");
    assert.equal(new Set(events.map((e) => e.args[1])).size, events.length, "repeated offsets");
    await sleep(300);
    assert.deepEqual(alice.inbox.peek("message"), [], "duplicates after the live messages");
  });

  test("a continuous sender through the drop: every seq once, in order", async () => {
    const channelId = await newChannel();
    const alice = await connectRecoverable(uid("alice"));
    const bob = await connect(uid("bob"));
    await join(alice, channelId);
    await join(bob, channelId);

    // Bob sends one message every few ms from before the drop until well
    // after alice is back: some reach her live, some while she is down,
    // some while her session is being restored.
    let stop = false;
    const sent = [];
    let sentWhileDown = 0;
    const sender = (async () => {
      while (!stop) {
        sent.push(await send(bob, channelId, `stream ${sent.length}`));
        if (!alice.connected) sentWhileDown++;
        await sleep(5);
      }
    })();
    await sleep(100);
    await dropTransport(alice);
    await reconnected(alice);
    assert.equal(alice.recovered, true);
    await sleep(300);
    stop = true;
    await sender;
    assert.ok(sentWhileDown > 0, "nothing was sent while alice was down");

    const received = await alice.inbox.take(
      "message",
      sent.length,
      (m) => m.channelId === channelId,
    );
    assertSeqs(received, 1, sent.length, "alice's messages");
    assert.deepEqual(received, sent);
    await sleep(300);
    assert.deepEqual(alice.inbox.peek("message"), [], "more messages than were sent");
  });

  test("after socket.disconnect() a new connection is not recovered", async () => {
    const channelId = await newChannel();
    const alice = await connectRecoverable(uid("alice"));
    const bob = await connect(uid("bob"));
    await join(alice, channelId);
    await join(bob, channelId);
    const first = await send(bob, channelId, "before the goodbye");
    await alice.inbox.next("message", (m) => m.id === first.id);
    const pid = alice._pid;

    const gone = once(alice, "disconnect");
    alice.disconnect();
    const [reason] = await gone;
    assert.equal(reason, "io client disconnect");
    await send(bob, channelId, "while alice is gone");

    // socket.io-client still presents its old pid and offset here: the
    // server must not honour them after an explicit disconnect.
    const back = once(alice, "connect");
    alice.connect();
    await back;
    assert.equal(alice.recovered, false);
    assert.notEqual(alice._pid, pid, "the old pid was handed out again");

    // Nothing is replayed, and the channels are not restored.
    const forbidden = await call(alice, "send_message", { channelId, content: "still here?" });
    assert.equal(forbidden.ok, false, JSON.stringify(forbidden));
    assert.equal(forbidden.error?.code, "FORBIDDEN");
    await sleep(300);
    assert.deepEqual(alice.inbox.peek("message"), [], "messages replayed without recovery");

    // A new join gives the channel from now on.
    const ack = await join(alice, channelId);
    assert.equal(ack.lastSeq, first.seq + 1);
    const next = await send(bob, channelId, "welcome back");
    assert.deepEqual(await alice.inbox.next("message", (m) => m.id === next.id), next);
  });
});
