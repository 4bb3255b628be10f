// REST writes made through one instance reach the Socket.IO subscribers on
// every instance: a message posted, edited and deleted, and a channel's
// new name seen by a join on another instance.

import assert from "node:assert/strict";
import { test } from "node:test";

import { join, newChannel, rest, uid } from "../lib.js";
import { URLS, SeqWatch, connectTo, recordAcked, sendOnce, urlOf } from "./lib.js";

const EVENT_MS = 15_000;

test("REST posts, edits and deletes through any instance reach subscribers on every instance", async () => {
  const owner = uid("owner");
  const channel = await newChannel(owner);
  const author = await connectTo(0, uid("author"));
  await join(author, channel);
  const subscribers = [];
  for (let i = 0; i < URLS.length; i++) {
    const s = await connectTo(i, uid(`sub${i}`));
    await join(s, channel);
    subscribers.push(s);
  }
  const watches = subscribers.map((s) => new SeqWatch(s, `${s.sub}@${s.instance}`));

  const sent = await sendOnce(author, channel, "over Socket.IO on instance 0");
  for (const w of watches) await w.waitFor(channel, 1, EVENT_MS);

  // Edited through instance 1.
  const edit = await rest("PUT", `/api/v1/messages/${sent.id}`, author.sub, { content: "edited through instance 1" }, urlOf(1));
  assert.equal(edit.status, 200, JSON.stringify(edit.body));
  for (const s of subscribers) {
    const updated = await s.inbox.next("message_updated", (m) => m.id === sent.id, EVENT_MS);
    assert.equal(updated.content, "edited through instance 1", `${s.sub}@${s.instance}`);
    assert.equal(updated.seq, sent.seq);
    assert.equal(typeof updated.editedAt, "string");
  }

  // Posted through instance 2.
  const posted = await rest("POST", "/api/v1/messages", author.sub, { channelId: channel, content: "over REST on instance 2", clientMessageId: `rest-${author.sub}` }, urlOf(2));
  assert.equal(posted.status, 201, JSON.stringify(posted.body));
  recordAcked(posted.body.message);
  assert.equal(posted.body.message.seq, 2);
  for (const w of watches) await w.waitFor(channel, 2, EVENT_MS);

  // Deleted through instance 1 by the channel's owner.
  const deleted = await rest("DELETE", `/api/v1/messages/${sent.id}`, owner, undefined, urlOf(1));
  assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
  for (const s of subscribers) {
    const gone = await s.inbox.next("message_deleted", (m) => m.id === sent.id, EVENT_MS);
    assert.deepEqual(gone, { channelId: channel, id: sent.id, seq: sent.seq }, `${s.sub}@${s.instance}`);
  }
  for (const w of watches) {
    assert.deepEqual(w.errors, []);
    assert.deepEqual(w.ids.get(channel), [sent.id, posted.body.message.id]);
  }

  // A channel renamed through instance 2. The instance that answered has
  // reloaded the channel before its answer: a join there sees the new name
  // at once. The others drop their cached copy when the invalidation
  // reaches them through Redis (docs/api.md, "Several instances"): a join
  // there sees the new name as soon as it has, well within EVENT_MS.
  const renamed = `renamed-${uid("c")}`;
  const put = await rest("PUT", `/api/v1/channels/${channel}`, owner, { name: renamed }, urlOf(2));
  assert.equal(put.status, 200, JSON.stringify(put.body));
  const first = await join(await connectTo(2, uid("late2")), channel);
  assert.equal(first.channel.name, renamed, "join on instance 2, which answered the PUT");
  for (let i = 0; i < URLS.length; i++) {
    const deadline = Date.now() + EVENT_MS;
    let seen;
    for (;;) {
      const late = await connectTo(i, uid(`late${i}`));
      seen = (await join(late, channel)).channel.name;
      late.close();
      if (seen === renamed || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(seen, renamed, `join on instance ${i} within ${EVENT_MS} ms`);
  }
});
