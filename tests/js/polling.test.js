// Long-polling and the upgrade, as socket.io-client does them against a
// server with two shards: with its default options (no `transports`) the
// client starts on HTTP long-polling and upgrades to WebSocket; with
// `transports: ["polling"]` it stays on polling. Either way it chats with
// WebSocket clients, and nothing is lost or reordered across the upgrade.

import assert from "node:assert/strict";
import { once } from "node:events";
import { describe, test } from "node:test";

import { WAIT_MS, connect, join, newChannel, send, uid } from "./lib.js";

/** Resolves once the engine runs on `name` (at once if it does already). */
function onTransport(socket, name) {
  const engine = socket.io.engine;
  if (engine.transport.name === name) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still on ${engine.transport.name}`)), WAIT_MS);
    engine.once("upgrade", (transport) => {
      clearTimeout(timer);
      if (transport.name === name) resolve();
      else reject(new Error(`upgraded to ${transport.name}`));
    });
  });
}

describe("long-polling", () => {
  test("default options: polling first, then the upgrade, with nothing lost or reordered", async () => {
    const channelId = await newChannel();
    const bob = await connect(uid("bob"));
    await join(bob, channelId);
    const alice = await connect(uid("alice"), { defaultTransports: true });
    assert.equal(alice.openedOn, "polling", "the session opened on polling");
    // The upgrade starts right after the handshake: the join and the burst
    // below cross it.
    await join(alice, channelId);
    const sent = [];
    for (let i = 0; i < 30; i++) sent.push(send(bob, channelId, `burst ${i}`));
    await Promise.all(sent);
    const got = await alice.inbox.take("message", 30, (m) => m.channelId === channelId);
    assert.deepEqual(
      got.map((m) => m.content),
      Array.from({ length: 30 }, (_, i) => `burst ${i}`),
    );
    await onTransport(alice, "websocket");
    assert.equal(alice.io.engine.transport.name, "websocket");
    await send(alice, channelId, "from alice after the upgrade");
    const m = await bob.inbox.next("message", (m) => m.content === "from alice after the upgrade");
    assert.equal(m.channelId, channelId);
  });

  test("transports: ['polling'] chats without upgrading", async () => {
    const channelId = await newChannel();
    const bob = await connect(uid("bob"));
    await join(bob, channelId);
    const alice = await connect(uid("alice"), { defaultTransports: true, transports: ["polling"] });
    assert.equal(alice.openedOn, "polling");
    await join(alice, channelId);
    for (let i = 0; i < 10; i++) {
      await send(alice, channelId, `from polling ${i}`);
      await send(bob, channelId, `from websocket ${i}`);
    }
    const atBob = await bob.inbox.take("message", 10, (m) => m.content.startsWith("from polling"));
    assert.deepEqual(
      atBob.map((m) => m.content),
      Array.from({ length: 10 }, (_, i) => `from polling ${i}`),
    );
    const atAlice = await alice.inbox.take("message", 20, (m) => m.channelId === channelId);
    assert.deepEqual(
      atAlice.map((m) => m.content).filter((c) => c.startsWith("from websocket")),
      Array.from({ length: 10 }, (_, i) => `from websocket ${i}`),
    );
    assert.equal(alice.io.engine.transport.name, "polling");
  });

  test("recovery over polling: a dropped session comes back with the missed messages in order", async () => {
    const channelId = await newChannel();
    const bob = await connect(uid("bob"));
    await join(bob, channelId);
    const alice = await connect(uid("alice"), {
      defaultTransports: true,
      transports: ["polling"],
      reconnection: true,
      reconnectionDelay: 300,
      reconnectionDelayMax: 300,
      randomizationFactor: 0,
    });
    await join(alice, channelId);
    const pid = alice._pid;
    assert.equal(typeof pid, "string");
    const dropped = once(alice, "disconnect");
    alice.io.engine.close();
    await dropped;
    const back = once(alice, "connect");
    const missed = [];
    for (let i = 0; i < 5; i++) missed.push(await send(bob, channelId, `missed ${i}`));
    await back;
    assert.equal(alice.recovered, true, "the session was not recovered");
    assert.equal(alice._pid, pid);
    const live = await send(bob, channelId, "live");
    const got = await alice.inbox.take("message", 6, (m) => m.channelId === channelId);
    assert.deepEqual(got, [...missed, live]);
    assert.equal(alice.io.engine.transport.name, "polling");
  });
});
