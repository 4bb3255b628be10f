// Threads in the Gatrix dialect (docs/protocol.md, "Threads"), acted out
// as the unchanged frontend does it (its ThreadView.tsx and ChatContext.tsx):
// a reply is sent with `threadId` (over REST, the frontend's path, and over
// Socket.IO), the others get `thread_message_created` then `thread_updated`,
// ThreadView lists the thread through GET /messages/thread/:threadId, and
// typing in a thread is `user_typing_thread`. A native client in the same
// channel sees each reply as a message with `threadId`, in the channel's seq
// order.

import assert from "node:assert/strict";
import { test } from "node:test";

import { call, connect, join, newChannel, rest, uid } from "./lib.js";
import { frontend, backend, ok, ulid } from "./gatrix_lib.js";

/**
 * The next two `message` events of a Gatrix socket for thread `head`, in
 * arrival order: the reply's `thread_message_created`, then `thread_updated`.
 */
async function threadEvents(socket, head) {
  const [created, updated] = await socket.inbox.take(
    "message",
    2,
    (m) => m.threadId === head || m.data?.messageId === head,
  );
  assert.equal(created.type, "thread_message_created", JSON.stringify(created));
  assert.equal(updated.type, "thread_updated", JSON.stringify(updated));
  return [created, updated];
}

test("replies in a thread: events, counts, the listing, native seqs, typing", async () => {
  const [ann, bob] = [ulid("ann"), ulid("bob")];
  await ok("POST", "/users/sync-users", undefined, {
    users: [
      { id: ann, username: "ann@example.com", name: "Ann" },
      { id: bob, username: "bob@example.com", name: "Bob" },
    ],
  });
  // A native user's public channel; the two Gatrix users join it.
  const carolId = uid("carol");
  const channelId = await newChannel(carolId);
  const carol = await connect(carolId);
  await join(carol, channelId);
  const annSocket = await frontend(ann);
  annSocket.emit("join_channel", { channelId });
  const num = (await annSocket.inbox.next("channel_joined")).channelId;
  const bobSocket = await frontend(bob);
  bobSocket.emit("join_channel", { channelId: num });
  await bobSocket.inbox.next("channel_joined");
  await ok("POST", `/channels/${num}/join`, ann);
  await ok("POST", `/channels/${num}/join`, bob);

  // Ann asks in the channel (REST): a message_created like any.
  const asked = await ok("POST", `/channels/${num}/messages`, ann, { content: "who has the keys?" });
  const head = asked.data.id;
  assert.deepEqual([asked.data.threadId, asked.data.threadCount], [null, 0]);
  for (const socket of [annSocket, bobSocket]) {
    await socket.inbox.next("message", (m) => m.type === "message_created" && m.data.id === head);
  }
  const nativeHead = await carol.inbox.next("message", (m) => m.id === String(head));

  // Bob types in the thread: Ann is told, with the thread; Carol gets
  // the native typing with threadId; Bob is told nothing.
  bobSocket.emit("start_typing", { channelId: num, threadId: head });
  const typing = await annSocket.inbox.next("user_typing_thread", (t) => t.userId === bob);
  assert.deepEqual([typing.channelId, typing.threadId], [num, head]);
  assert.ok(Number.isSafeInteger(typing.timestamp));
  const nativeTyping = await carol.inbox.next("typing", (t) => t.userId === bob);
  assert.deepEqual([nativeTyping.isTyping, nativeTyping.threadId], [true, String(head)]);
  bobSocket.emit("stop_typing", { channelId: num, threadId: head });
  const stopped = await annSocket.inbox.next("user_stop_typing_thread", (t) => t.userId === bob);
  assert.deepEqual([stopped.channelId, stopped.threadId], [num, head]);
  assert.deepEqual(annSocket.inbox.peek("user_typing"), [], "typing in a thread is not the channel's");
  assert.deepEqual(bobSocket.inbox.peek("user_typing_thread"), []);

  // Bob replies over Socket.IO.
  bobSocket.emit("send_message", { channelId: num, content: "I do", threadId: head });
  const [created1, updated1] = await threadEvents(annSocket, head);
  assert.deepEqual([created1.threadId, created1.channelId, created1.userId], [head, num, bob]);
  const reply1 = created1.data;
  assert.ok(Number.isSafeInteger(reply1.id) && reply1.id !== head, JSON.stringify(reply1));
  assert.deepEqual([reply1.threadId, reply1.content, reply1.userName], [head, "I do", "Bob"]);
  assert.deepEqual(updated1.data, { messageId: head, threadCount: 1, lastThreadMessageAt: reply1.createdAt });
  assert.equal(updated1.channelId, num);
  // The sender too, as for message_created.
  await threadEvents(bobSocket, head);
  // Native: a message of the channel, the next seq, with its thread.
  const native1 = await carol.inbox.next("message", (m) => m.id === String(reply1.id));
  assert.deepEqual(
    [native1.seq, native1.threadId, native1.threadCount],
    [nativeHead.seq + 1, String(head), 1],
  );

  // Ann replies over REST, as the frontend's ThreadView sends.
  const answered = await ok("POST", `/channels/${num}/messages`, ann, {
    content: "thanks",
    contentType: "text",
    threadId: head,
  });
  const reply2 = answered.data;
  assert.equal(reply2.threadId, head);
  const [created2, updated2] = await threadEvents(bobSocket, head);
  assert.equal(created2.data.id, reply2.id);
  assert.deepEqual(updated2.data, { messageId: head, threadCount: 2, lastThreadMessageAt: reply2.createdAt });
  await threadEvents(annSocket, head);
  const native2 = await carol.inbox.next("message", (m) => m.id === String(reply2.id));
  assert.deepEqual([native2.seq, native2.threadCount], [nativeHead.seq + 2, 2]);
  assert.deepEqual(annSocket.inbox.peek("message", (m) => m.type === "message_created"), []);

  // ThreadView's listing: oldest first, the original's pagination.
  const thread = await ok("GET", `/messages/thread/${head}`, bob);
  assert.deepEqual(thread.data.map((m) => [m.id, m.threadId, m.content]), [
    [reply1.id, head, "I do"],
    [reply2.id, head, "thanks"],
  ]);
  assert.deepEqual(thread.pagination, { page: 1, limit: 20, total: 2, totalPages: 1, hasNext: false, hasPrev: false });
  const second = await ok("GET", `/messages/thread/${head}?page=2&limit=1`, bob);
  assert.deepEqual(second.data.map((m) => m.id), [reply2.id]);
  assert.deepEqual([second.pagination.hasPrev, second.pagination.hasNext], [true, false]);
  assert.equal((await backend("GET", `/messages/thread/${head + 999999}`, bob)).status, 404);

  // The channel's page holds the replies too (the frontend filters them
  // out by threadId); the head carries its thread.
  const page = await ok("GET", `/channels/${num}/messages?limit=50`, ann);
  const byId = new Map(page.data.messages.map((m) => [m.id, m]));
  assert.deepEqual(
    [byId.get(head).threadCount, byId.get(head).lastThreadMessageAt],
    [2, reply2.createdAt],
  );
  assert.equal(byId.get(reply1.id).threadId, head);
  // The native history: the same messages, gapless.
  const history = await rest("GET", `/api/v1/messages/channel/${channelId}?limit=10`, carolId);
  assert.equal(history.status, 200, JSON.stringify(history.body));
  const tail = history.body.messages.slice(-3);
  assert.deepEqual(
    tail.map((m) => [m.seq, m.threadId, m.threadCount]),
    [
      [nativeHead.seq, undefined, 2],
      [nativeHead.seq + 1, String(head), 1],
      [nativeHead.seq + 2, String(head), 2],
    ],
  );

  // A reply to a reply, or to a message of another channel, is refused
  // and takes no seq.
  const nested = await backend("POST", `/channels/${num}/messages`, ann, { content: "x", threadId: reply1.id });
  assert.equal(nested.status, 400, JSON.stringify(nested.body));
  assert.match(nested.body.error.message ?? nested.body.error, /reply in a thread/);
  const otherChannel = await newChannel(carolId);
  const elsewhere = await rest("POST", "/api/v1/messages", carolId, { channelId: otherChannel, content: "there" });
  assert.equal(elsewhere.status, 201);
  const refused = await call(carol, "send_message", { channelId, content: "y", threadId: elsewhere.body.message.id });
  assert.equal(refused.ok, false);
  assert.equal(refused.error.code, "INVALID_PAYLOAD");
  // A native reply is accepted the same way, and is the next seq.
  const nativeReply = await call(carol, "send_message", { channelId, content: "noted", threadId: String(head) });
  assert.ok(nativeReply.ok, JSON.stringify(nativeReply));
  assert.deepEqual(
    [nativeReply.message.seq, nativeReply.message.threadId, nativeReply.message.threadCount],
    [nativeHead.seq + 3, String(head), 3],
  );
  const [, updated3] = await threadEvents(annSocket, head);
  assert.equal(updated3.data.threadCount, 3);

  carol.close();
  annSocket.close();
  bobSocket.close();
});
