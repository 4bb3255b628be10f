// Connection state recovery on another instance: a client whose transport
// dropped reconnects, as through a load balancer, to an instance that never
// saw its session, and gets `recovered: true` (same pid, its channels) and
// exactly the messages it missed, in order, before live ones.

import assert from "node:assert/strict";
import { test } from "node:test";

import { join, newChannel, uid } from "../lib.js";
import {
  SeqWatch,
  ackedBySeq,
  connectRecoverable,
  connectTo,
  dropTransport,
  moveTo,
  reconnected,
  sendOnce,
} from "./lib.js";

const MISSED_PER_CHANNEL = 10;

test("recovered on a second and then a third instance, missed messages exactly once in order", async () => {
  const a = await newChannel();
  const b = await newChannel();
  const alice = await connectRecoverable(0, uid("alice"));
  const bob = await connectTo(1, uid("bob"));
  const carol = await connectTo(2, uid("carol"));
  const watch = new SeqWatch(alice);
  for (const s of [alice, bob, carol]) {
    await join(s, a);
    await join(s, b);
  }
  const acked = [];
  for (let k = 0; k < 3; k++) {
    acked.push(await sendOnce(bob, a, `a before ${k}`));
    acked.push(await sendOnce(carol, b, `b before ${k}`));
  }
  await watch.waitFor(a, 3);
  await watch.waitFor(b, 3);
  const pid = alice._pid;
  assert.equal(typeof pid, "string");

  // Two drops: instance 0 → 2, then 2 → 1.
  for (const [hop, to] of [[1, 2], [2, 1]]) {
    // Reconnection held off until the missed messages are acked, so that
    // they are missed whatever the machine's speed; then socket.io-client
    // reconnects as it does by itself (CONNECT with its pid and offset).
    alice.io.reconnection(false);
    moveTo(alice, to);
    const reason = await dropTransport(alice);
    assert.notEqual(reason, "io client disconnect");
    // Sent and acked while alice is away, from both other instances.
    for (let k = 0; k < MISSED_PER_CHANNEL; k++) {
      acked.push(await sendOnce(bob, a, `a missed ${hop}.${k}`));
      acked.push(await sendOnce(carol, b, `b missed ${hop}.${k}`));
    }
    assert.equal(alice.connected, false);
    const back = reconnected(alice);
    alice.io.reconnection(true);
    alice.connect();
    await back;
    assert.equal(alice.recovered, true, `hop ${hop}: not recovered on instance ${to}`);
    assert.equal(alice._pid, pid, `hop ${hop}: another pid`);
    const expected = ackedBySeq(acked);
    for (const [channelId, ids] of expected) await watch.waitFor(channelId, ids.length);

    // Live after the replay: one more per channel, and alice (on `to`) can
    // send through her restored subscriptions.
    acked.push(await sendOnce(bob, a, `a live ${hop}`));
    acked.push(await sendOnce(alice, b, `b live from alice ${hop}`));
    for (const [channelId, ids] of ackedBySeq(acked)) await watch.waitFor(channelId, ids.length);
    assert.deepEqual(watch.errors, [], "gaps, repeats or reorderings");
    for (const [channelId, ids] of ackedBySeq(acked)) {
      assert.deepEqual(watch.ids.get(channelId), ids, `hop ${hop}: ids of ${channelId}`);
    }
  }
  assert.equal(alice.recoveries, 2);
  assert.equal(alice.fresh, 0);
});
