// Typing indicators: start/stop reach the other subscribers, and a start
// without a repeat expires by itself after TYPING_TIMEOUT_MS.

import assert from "node:assert/strict";
import { test } from "node:test";

import { TYPING_TIMEOUT_MS, call, connect, join, newChannel, sleep, uid } from "./lib.js";

/** Alice and Bob, both joined to a fresh channel. */
async function pair() {
  const aliceId = uid("alice");
  const alice = await connect(aliceId);
  const bob = await connect(uid("bob"));
  const channelId = await newChannel();
  await join(alice, channelId);
  await join(bob, channelId);
  return { alice, aliceId, bob, channelId };
}

test("typing_start and typing_stop reach the other subscribers", async () => {
  const { alice, aliceId, bob, channelId } = await pair();

  assert.deepEqual(await call(alice, "typing_start", { channelId }), { ok: true });
  const started = await bob.inbox.next("typing", (t) => t.userId === aliceId);
  assert.deepEqual(started, { channelId, userId: aliceId, isTyping: true });

  assert.deepEqual(await call(alice, "typing_stop", { channelId }), { ok: true });
  const stopped = await bob.inbox.next("typing", (t) => t.userId === aliceId);
  assert.deepEqual(stopped, { channelId, userId: aliceId, isTyping: false });

  // The typist is not told about itself.
  await sleep(200);
  assert.deepEqual(alice.inbox.peek("typing"), []);
});

test("typing expires by itself after TYPING_TIMEOUT_MS", async () => {
  const { alice, aliceId, bob, channelId } = await pair();

  const startedAt = Date.now();
  assert.deepEqual(await call(alice, "typing_start", { channelId }), { ok: true });
  await bob.inbox.next("typing", (t) => t.userId === aliceId && t.isTyping);
  const expired = await bob.inbox.next(
    "typing",
    (t) => t.userId === aliceId && !t.isTyping,
    TYPING_TIMEOUT_MS + 3000,
  );
  const elapsed = Date.now() - startedAt;
  assert.deepEqual(expired, { channelId, userId: aliceId, isTyping: false });
  assert.ok(elapsed >= TYPING_TIMEOUT_MS - 250, `expired after ${elapsed} ms`);
});

test("a repeated typing_start keeps the indicator alive", async () => {
  const { alice, aliceId, bob, channelId } = await pair();

  await call(alice, "typing_start", { channelId });
  await bob.inbox.next("typing", (t) => t.userId === aliceId && t.isTyping);
  await sleep(TYPING_TIMEOUT_MS * 0.6);
  const repeatedAt = Date.now();
  assert.deepEqual(await call(alice, "typing_start", { channelId }), { ok: true });
  await bob.inbox.next(
    "typing",
    (t) => t.userId === aliceId && !t.isTyping,
    TYPING_TIMEOUT_MS + 3000,
  );
  const elapsed = Date.now() - repeatedAt;
  assert.ok(elapsed >= TYPING_TIMEOUT_MS - 250, `expired ${elapsed} ms after the repeat`);
});
