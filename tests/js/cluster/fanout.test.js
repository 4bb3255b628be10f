// Three instances, one database, one Redis: subscribers and senders on every
// instance, and each subscriber gets every channel's messages as one server
// would deliver them: seqs 1..N in order, no gap, no duplicate.

import assert from "node:assert/strict";
import { test } from "node:test";

import { join, newChannel, uid } from "../lib.js";
import { URLS, ackedBySeq, assertAllDelivered, connectTo, SeqWatch, sendOnce } from "./lib.js";

const CHANNELS = 3;
const SUBSCRIBERS_PER_INSTANCE = 3;
const SENDERS_PER_INSTANCE = 2;
const MESSAGES_PER_SENDER = 30;
/** Sends a sender has in flight at once (ack not yet received). */
const WINDOW = 10;

test("senders on every instance, every subscriber on every instance gets seqs 1..N of each channel in order", async () => {
  const channels = [];
  for (let c = 0; c < CHANNELS; c++) channels.push(await newChannel());

  const subscribers = [];
  const senders = [];
  for (let i = 0; i < URLS.length; i++) {
    for (let k = 0; k < SUBSCRIBERS_PER_INSTANCE; k++) subscribers.push(await connectTo(i, uid(`sub${i}`)));
    for (let k = 0; k < SENDERS_PER_INSTANCE; k++) senders.push(await connectTo(i, uid(`send${i}`)));
  }
  // Senders are subscribers too: they get their own messages and the others'.
  const everyone = [...subscribers, ...senders];
  const watches = everyone.map((s) => new SeqWatch(s, `${s.sub}@${s.instance}`));
  for (const s of everyone) for (const c of channels) await join(s, c);

  const acked = [];
  await Promise.all(
    senders.map(async (s, n) => {
      for (let start = 0; start < MESSAGES_PER_SENDER; start += WINDOW) {
        const batch = [];
        for (let k = start; k < Math.min(start + WINDOW, MESSAGES_PER_SENDER); k++) {
          const channel = channels[(n + k) % CHANNELS];
          batch.push(sendOnce(s, channel, `from ${s.sub} on ${s.instance}: ${k}`));
        }
        acked.push(...(await Promise.all(batch)));
      }
    }),
  );
  assert.equal(acked.length, senders.length * MESSAGES_PER_SENDER);
  const expected = ackedBySeq(acked);
  assert.equal(expected.size, CHANNELS);
  // Each sender's messages of a channel have growing seqs (its own order).
  for (const s of senders) {
    for (const c of channels) {
      const seqs = acked.filter((m) => m.userId === s.sub && m.channelId === c).map((m) => m.seq);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${s.sub}'s seqs in ${c}`);
    }
  }
  await assertAllDelivered(watches, expected);
});
