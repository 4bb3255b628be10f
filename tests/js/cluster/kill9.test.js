// kill -9 of one instance under load: its clients reconnect, as through a
// load balancer, to the other instances and recover their sessions there
// (same pid, every missed message in order); senders retry unacked sends
// with the same clientMessageId; nothing acked is lost or delivered twice.
// The instance then comes back and serves again.

import assert from "node:assert/strict";
import { test } from "node:test";

import { join, uid } from "../lib.js";
import {
  SeqWatch,
  URLS,
  ackedAtLeast,
  ackedBySeq,
  assertAllDelivered,
  connectTo,
  control,
  faultLayout,
  moveTo,
  sendOnce,
  sendUntilAcked,
  underLoad,
  waitConnectionsTotal,
} from "./lib.js";

const VICTIM = 1;

test("kill -9 of one instance under load: its clients recover elsewhere, nothing acked is lost", async () => {
  assert.ok(URLS.length >= 2, "needs two instances or more");
  const { channels, senders, everyone, watches } = await faultLayout();
  const victims = everyone.filter((s) => s.instance === VICTIM);
  // Where the load balancer sends them once their instance is gone: the
  // others in turn.
  const others = URLS.map((_, i) => i).filter((i) => i !== VICTIM);
  let killed = false;
  victims.forEach((s, n) => {
    s.on("disconnect", () => {
      if (killed) moveTo(s, others[n % others.length]);
    });
  });

  const acked = await underLoad({
    senders,
    channels,
    intervalMs: 20,
    send: (s, c, content) => sendUntilAcked(s, c, content),
    during: async (acked) => {
      await ackedAtLeast(acked, 60);
      killed = true;
      await control(`kill9/${VICTIM}`);
      await ackedAtLeast(acked, acked.length + 120);
    },
  });
  const expected = ackedBySeq(acked);
  await assertAllDelivered(watches, expected, 120_000);
  for (const s of victims) {
    assert.notEqual(s.instance, VICTIM);
    assert.equal(s.recoveries, 1, `${s.sub} was not recovered on instance ${s.instance}`);
    assert.equal(s.fresh, 0, `${s.sub} got a fresh session`);
  }
  for (const s of everyone.filter((s) => !victims.includes(s))) {
    assert.equal(s.recoveries + s.fresh, 0, `${s.sub} on a live instance reconnected`);
  }
  // Every client is counted once, on the instance it is on now.
  await waitConnectionsTotal(everyone.length, others);

  // The instance is back: a client on it gets what is sent elsewhere.
  await control(`restart/${VICTIM}`);
  const late = await connectTo(VICTIM, uid("late"));
  const lateWatch = new SeqWatch(late);
  const [a] = channels;
  await join(late, a);
  const next = await sendOnce(senders[0], a, "after the restart");
  assert.equal(next.seq, expected.get(a).length + 1);
  await lateWatch.waitFor(a, next.seq);
  for (const w of watches) await w.waitFor(a, next.seq);
  assert.deepEqual(lateWatch.last.get(a), next.seq);
});
