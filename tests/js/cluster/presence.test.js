// Presence across instances: a user is online while any of its connections,
// on any instance, is; `user_joined` / `user_left` and `presence_update`
// fire on the first connection / last disconnection cluster-wide, seen by a
// watcher on another instance; the instances' connection gauges add up to
// the live connections.

import assert from "node:assert/strict";
import { test } from "node:test";

import { disconnect, join, newChannel, sleep, uid } from "../lib.js";
import { URLS, connectTo, waitConnectionsTotal } from "./lib.js";

/**
 * How long an event that must not come is waited for: presence events are
 * coalesced per `presence_interval_ms` (1 s by default) and travel through
 * Redis, so absence is only believable after a generous margin.
 */
const QUIET_MS = 3000;
/** How long an expected cross-instance event may take. */
const EVENT_MS = 15_000;

const about = (user) => (d) => d.userId === user;

test("first connection and last disconnection across instances, and the connection totals", async () => {
  const channel = await newChannel();
  const watcher = await connectTo(0, uid("watcher"));
  await join(watcher, channel);
  await waitConnectionsTotal(1);
  const xavier = uid("xavier");
  const presence = (status) => (d) => d.userId === xavier && d.status === status;

  const x1 = await connectTo(1, xavier);
  await join(x1, channel);
  assert.deepEqual(await watcher.inbox.next("user_joined", about(xavier), EVENT_MS), { channelId: channel, userId: xavier });
  // xavier's `online` may or may not reach the watcher here: it goes to the
  // channels of xavier's presence list, which gets this one at the join,
  // maybe before the announcement, maybe after. Counted at the end.

  // A second connection of the same user on a third instance: nothing new.
  const x2 = await connectTo(2, xavier);
  await join(x2, channel);
  await waitConnectionsTotal(3);
  await sleep(QUIET_MS);
  assert.deepEqual(watcher.inbox.peek("user_joined", about(xavier)), [], "a second connection announced again");
  assert.deepEqual(watcher.inbox.peek("presence_update", presence("offline")), []);

  // Its first connection goes: xavier is still online through instance 2.
  await disconnect(x1);
  await waitConnectionsTotal(2);
  await sleep(QUIET_MS);
  assert.deepEqual(watcher.inbox.peek("user_left", about(xavier)), [], "user_left while still connected elsewhere");
  assert.deepEqual(watcher.inbox.peek("presence_update", presence("offline")), [], "offline while still connected elsewhere");

  // The last one goes: left and offline, once each.
  await disconnect(x2);
  assert.deepEqual(await watcher.inbox.next("user_left", about(xavier), EVENT_MS), { channelId: channel, userId: xavier });
  await watcher.inbox.next("presence_update", presence("offline"), EVENT_MS);
  await waitConnectionsTotal(1);
  await sleep(QUIET_MS);
  assert.deepEqual(watcher.inbox.peek("user_left", about(xavier)), [], "user_left twice");
  assert.deepEqual(watcher.inbox.peek("presence_update", presence("offline")), [], "offline twice");
  // At most the first connection's online: not one per connection.
  const onlines = watcher.inbox.peek("presence_update", presence("online"));
  assert.ok(onlines.length <= 1, `${onlines.length} online announcements for one stretch online`);
  await watcher.inbox.take("presence_update", onlines.length, presence("online"));

  // Back on yet another instance (the channel is on xavier's presence list
  // now): online, then offline when it goes, each once.
  const x3 = await connectTo(0, xavier);
  await watcher.inbox.next("presence_update", presence("online"), EVENT_MS);
  await disconnect(x3);
  await watcher.inbox.next("presence_update", presence("offline"), EVENT_MS);
  await sleep(QUIET_MS);
  assert.deepEqual(watcher.inbox.peek("presence_update", about(xavier)), [], "presence announced twice");
  assert.deepEqual(watcher.inbox.peek("user_joined", about(xavier)), [], "user_joined without a join");

  // Many users spread over the instances, some on two: the totals follow.
  const sockets = [];
  for (let u = 0; u < 12; u++) {
    const user = uid(`u${u}`);
    sockets.push(await connectTo(u % URLS.length, user));
    if (u % 3 === 0) sockets.push(await connectTo((u + 1) % URLS.length, user));
  }
  await waitConnectionsTotal(1 + sockets.length);
  for (const s of sockets.splice(0, 7)) await disconnect(s);
  await waitConnectionsTotal(1 + sockets.length);
});
