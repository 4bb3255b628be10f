// The Gatrix dialect on several instances sharing one database and one
// Redis: every instance shows a channel by the same number, channels
// created through different instances get distinct numbers, and messages,
// replies in threads, typing and status changes reach Gatrix users on
// every instance.

import assert from "node:assert/strict";
import { test } from "node:test";

import { jwt, nowSecs, rest, uid } from "../lib.js";
import { URLS, connectTo, sendOnce, urlOf } from "./lib.js";

const EVENT_MS = 15_000;
const GX_SECRET = process.env.GATRIX_JWT_SECRET;
if (!GX_SECRET) throw new Error("GATRIX_JWT_SECRET is not set: run through tests/multi_instance.rs");

/** A Gatrix user on instance `i`, as the frontend connects. */
async function frontendOn(i, userId) {
  const claims = { userId, iat: nowSecs(), exp: nowSecs() + 900, iss: "gatrix", aud: "gatrix-users" };
  const socket = await connectTo(i, userId, { token: jwt(claims, { secret: GX_SECRET }) });
  await socket.inbox.next("connected", () => true, EVENT_MS);
  return socket;
}

async function joinBy(socket, channelId) {
  socket.emit("join_channel", { channelId });
  return (await socket.inbox.next("channel_joined", () => true, EVENT_MS)).channelId;
}

test("Gatrix users on every instance share a channel by its number", async () => {
  // Channels created through different instances: distinct numbers.
  const channels = [];
  for (let i = 0; i < URLS.length; i++) {
    const made = await rest("POST", "/api/v1/channels", uid("owner"), { name: uid("c"), type: "public" }, urlOf(i));
    assert.equal(made.status, 201, JSON.stringify(made.body));
    channels.push(made.body.channel.id);
  }
  const users = URLS.map((_, i) => `01HZ${uid(`G${i}`).toUpperCase()}`);
  const gx = [];
  for (let i = 0; i < URLS.length; i++) gx.push(await frontendOn(i, users[i]));
  const nums = [];
  for (const c of channels) nums.push(await joinBy(gx[0], c));
  assert.equal(new Set(nums).size, nums.length, `numbers ${nums}`);
  assert.ok(nums.every((n) => Number.isSafeInteger(n) && n > 0), `numbers ${nums}`);
  // The other instances know the first channel by the same number: joined
  // by it (a store read there), they say it back.
  const num = nums[0];
  for (const s of gx.slice(1)) assert.equal(await joinBy(s, num), num);

  const sent = await sendOnce(gx[0], num, "from instance 0");
  for (const s of gx) {
    const m = await s.inbox.next("message", (e) => e.type === "message_created", EVENT_MS);
    assert.deepEqual([m.channelId, m.data.channelId, m.data.id], [num, num, Number(sent.id)], `instance ${s.instance}`);
  }

  gx[1].emit("start_typing", { channelId: num });
  for (const s of [gx[0], gx[2 % gx.length]].filter((s) => s !== gx[1])) {
    const t = await s.inbox.next("user_typing", (e) => e.userId === users[1], EVENT_MS);
    assert.equal(t.channelId, num);
  }

  // A reply in the thread of that message, from another instance: on
  // every instance thread_message_created, then thread_updated (the
  // count travels in the committed frame); typing in the thread too.
  const head = Number(sent.id);
  const replier = gx[1 % gx.length];
  const reply = await sendOnce(replier, num, "a reply", undefined, { threadId: head });
  assert.equal(reply.threadId, sent.id);
  for (const s of gx) {
    const [created, updated] = await s.inbox.take("message", 2, (e) => e.type.startsWith("thread_"), EVENT_MS);
    assert.deepEqual([created.type, created.threadId, created.data.id], ["thread_message_created", head, Number(reply.id)], `instance ${s.instance}`);
    assert.deepEqual([updated.type, updated.data], ["thread_updated", { messageId: head, threadCount: 1, lastThreadMessageAt: reply.createdAt }], `instance ${s.instance}`);
  }
  const typist = gx[gx.length - 1];
  typist.emit("start_typing", { channelId: num, threadId: head });
  for (const s of gx.filter((s) => s !== typist)) {
    const t = await s.inbox.next("user_typing_thread", (e) => e.userId === typist.sub, EVENT_MS);
    assert.deepEqual([t.channelId, t.threadId], [num, head], `instance ${s.instance}`);
  }

  const last = gx[gx.length - 1];
  last.emit("update_status", { status: "busy", customStatus: "deploying" });
  for (const s of gx.filter((s) => s !== last)) {
    const st = await s.inbox.next("user_status_changed", (e) => e.userId === last.sub && e.status === "busy", EVENT_MS);
    assert.equal(st.customStatus, "deploying");
  }
});
