// Membership and presence: user_joined / user_left on a user's first and
// last connection, and presence_update to the channels of the user.

import assert from "node:assert/strict";
import { test } from "node:test";

import { call, connect, disconnect, join, newChannel, sleep, uid } from "./lib.js";

test("B disconnects: A gets user_left and offline; B reconnects: online", async () => {
  const channelId = await newChannel();
  const bobId = uid("bob");
  const alice = await connect(uid("alice"));
  await join(alice, channelId);

  const bob = await connect(bobId);
  await join(bob, channelId);
  const joined = await alice.inbox.next("user_joined", (e) => e.userId === bobId);
  assert.deepEqual(joined, { channelId, userId: bobId });

  await disconnect(bob);
  const left = await alice.inbox.next("user_left", (e) => e.userId === bobId);
  assert.deepEqual(left, { channelId, userId: bobId });
  const offline = await alice.inbox.next(
    "presence_update",
    (p) => p.userId === bobId && p.status === "offline",
  );
  assert.ok(offline.lastSeen !== undefined && offline.lastSeen !== null, JSON.stringify(offline));

  // Bob is still a member of the channel, so his return is announced there.
  await connect(bobId);
  const online = await alice.inbox.next(
    "presence_update",
    (p) => p.userId === bobId && p.status === "online",
  );
  assert.equal(online.userId, bobId);
});

test("only the first connection joining and the last one leaving are announced", async () => {
  const channelId = await newChannel();
  const bobId = uid("bob");
  const alice = await connect(uid("alice"));
  await join(alice, channelId);

  const bob1 = await connect(bobId);
  const bob2 = await connect(bobId);
  await join(bob1, channelId);
  await alice.inbox.next("user_joined", (e) => e.userId === bobId);
  await join(bob2, channelId);

  await disconnect(bob1);
  await sleep(500);
  const early = (name) => alice.inbox.peek(name, (e) => e.userId === bobId);
  assert.deepEqual(early("user_joined"), [], "second connection announced as a join");
  assert.deepEqual(early("user_left"), [], "user_left while a connection remains");
  assert.deepEqual(
    alice.inbox.peek("presence_update", (p) => p.userId === bobId && p.status === "offline"),
    [],
    "offline while a connection remains",
  );

  await disconnect(bob2);
  assert.deepEqual(await alice.inbox.next("user_left", (e) => e.userId === bobId), {
    channelId,
    userId: bobId,
  });
  await alice.inbox.next("presence_update", (p) => p.userId === bobId && p.status === "offline");
});

test("leave_channel by the last connection is announced as user_left", async () => {
  const channelId = await newChannel();
  const bobId = uid("bob");
  const alice = await connect(uid("alice"));
  const bob = await connect(bobId);
  await join(alice, channelId);
  await join(bob, channelId);
  await alice.inbox.next("user_joined", (e) => e.userId === bobId);

  assert.deepEqual(await call(bob, "leave_channel", { channelId }), { ok: true });
  assert.deepEqual(await alice.inbox.next("user_left", (e) => e.userId === bobId), {
    channelId,
    userId: bobId,
  });
});
