// The Gatrix dialect (docs/protocol.md, "The Gatrix dialect"), acted out as
// the unchanged Gatrix web frontend does it (its
// src/services/chatWebSocketService.ts): a backend token (HS256, iss
// gatrix, aud gatrix-users, the user in `userId`) in `auth.token`, events
// emitted without acks, `message` envelopes read by `data.type`. A native
// client shares the channel in the same run and keeps its native frames.

import assert from "node:assert/strict";
import { test } from "node:test";

import { TYPING_TIMEOUT_MS, WAIT_MS, call, connect, connectRefused, join, newChannel, nowSecs, rest, send, uid } from "./lib.js";
import { backendToken, frontend } from "./gatrix_lib.js";

/**
 * `join_channel` without an ack, as the frontend emits it; resolves with
 * the channel's id in the dialect, a number.
 */
async function frontendJoin(socket, channelId) {
  socket.emit("join_channel", { channelId });
  const joined = await socket.inbox.next("channel_joined");
  assert.ok(Number.isSafeInteger(joined.channelId) && joined.channelId > 0, JSON.stringify(joined));
  if (typeof channelId === "number") assert.equal(joined.channelId, channelId);
  return joined.channelId;
}

const created = (channelId) => (m) => m.type === "message_created" && m.channelId === channelId;

test("two Gatrix users and a native one share a channel", async () => {
  const [u1, u2] = [`01HZ${uid("g").toUpperCase()}`, `01HZ${uid("h").toUpperCase()}`];
  const channelId = await newChannel();
  const aliceId = uid("alice");
  const alice = await connect(aliceId);
  await join(alice, channelId);
  const gx1 = await frontend(u1);
  const gx2 = await frontend(u2);
  // Joined by the native id, shown by its number; joined by the number.
  const num = await frontendJoin(gx1, channelId);
  await frontendJoin(gx2, num);
  const joined = await gx1.inbox.next("user_joined", (j) => j.userId === u2);
  assert.equal(joined.channelId, num);
  assert.ok(Number.isSafeInteger(joined.timestamp));

  // A send: every subscriber, the sender included, sees message_created
  // with a numeric id; the native subscriber gets the native frame.
  gx1.emit("send_message", { channelId: num, content: "hello from gatrix", contentType: "text" });
  const own = await gx1.inbox.next("message", created(num));
  assert.equal(own.userId, u1);
  const m = own.data;
  assert.ok(Number.isSafeInteger(m.id) && m.id > 0, `numeric id: ${JSON.stringify(m)}`);
  assert.equal(m.channelId, num);
  assert.equal(m.userId, u1);
  assert.equal(m.content, "hello from gatrix");
  assert.equal(m.contentType, "text");
  assert.equal(m.user.id, u1);
  assert.deepEqual([m.reactions, m.attachments], [[], []]);
  const other = await gx2.inbox.next("message", created(num));
  assert.deepEqual(other, own);
  const native = await alice.inbox.nextEvent("message", (n) => n.channelId === channelId);
  assert.equal(native.data.id, String(m.id));
  assert.equal(native.data.userId, u1);
  assert.equal(typeof native.args[1], "string", "the native frame keeps its offset");

  // A native send reaches the Gatrix users as message_created.
  const sent = await send(alice, channelId, "hello from native");
  const seen = await gx2.inbox.next("message", created(num));
  assert.equal(seen.data.id, Number(sent.id));
  assert.equal(seen.userId, aliceId);

  // A REST edit and deletion (native) reach them as message_updated and
  // message_deleted in the same envelope.
  const edit = await rest("PUT", `/api/v1/messages/${sent.id}`, aliceId, { content: "edited" });
  assert.equal(edit.status, 200, JSON.stringify(edit.body));
  const updated = await gx1.inbox.next("message", (u) => u.type === "message_updated");
  assert.deepEqual([updated.channelId, updated.data.id, updated.data.content], [num, Number(sent.id), "edited"]);
  assert.equal(updated.data.isEdited, true);
  const gone = await rest("DELETE", `/api/v1/messages/${sent.id}`, aliceId);
  assert.ok(gone.status < 300, JSON.stringify(gone));
  const deleted = await gx2.inbox.next("message", (d) => d.type === "message_deleted");
  assert.deepEqual(deleted.data, { messageId: Number(sent.id), channelId: num });
  await alice.inbox.next("message_deleted", (d) => d.id === sent.id);

  // Typing reaches the others (native: `typing`), never the typist.
  gx1.emit("start_typing", { channelId: num });
  const typing = await gx2.inbox.next("user_typing", (t) => t.userId === u1);
  assert.equal(typing.channelId, num);
  assert.ok(Number.isSafeInteger(typing.timestamp));
  await alice.inbox.next("typing", (t) => t.userId === u1 && t.isTyping);
  gx1.emit("stop_typing", { channelId: num });
  await gx2.inbox.next("user_stop_typing", (t) => t.userId === u1);
  // gx2's typing goes through the same owner, after gx1's: once gx1 has it,
  // an event of gx1's own typing would have arrived first.
  gx2.emit("start_typing", { channelId: num });
  await gx1.inbox.next("user_typing", (t) => t.userId === u2);
  assert.deepEqual(gx1.inbox.peek("user_typing", (t) => t.userId === u1), []);
  assert.deepEqual(gx1.inbox.peek("user_stop_typing", (t) => t.userId === u1), []);
  // Not repeated: it expires by itself.
  await gx1.inbox.next("user_stop_typing", (t) => t.userId === u2, TYPING_TIMEOUT_MS + WAIT_MS);

  // A status change reaches the Gatrix subscribers, not the native one.
  gx1.emit("update_status", { status: "away", customStatus: "lunch" });
  const status = await gx2.inbox.next("user_status_changed", (s) => s.userId === u1 && s.status === "away");
  assert.equal(status.customStatus, "lunch");
  gx2.emit("start_typing", { channelId: num });
  await alice.inbox.next("typing", (t) => t.userId === u2 && t.isTyping);
  assert.deepEqual(alice.inbox.peek("user_status_changed"), []);
  // Invisible is announced as offline.
  gx1.emit("update_status", { status: "invisible" });
  await gx2.inbox.next("user_status_changed", (s) => s.userId === u1 && s.status === "offline");

  // Quiet events, and an ack when one is asked for.
  gx1.emit("activity");
  gx1.emit("mark_read", { channelId: num, messageId: m.id });
  assert.deepEqual(await call(gx1, "activity", {}), { ok: true });
  assert.deepEqual(gx1.inbox.peek("error"), []);

  // Leaving: channel_left to the leaver, user_left to the others.
  gx2.emit("leave_channel", { channelId: num });
  assert.deepEqual(await gx2.inbox.next("channel_left"), { channelId: num });
  const left = await gx1.inbox.next("user_left", (l) => l.userId === u2);
  assert.equal(left.channelId, num);
});

test("channels have distinct numbers; an unknown number is NOT_FOUND", async () => {
  const gx = await frontend(`01HZ${uid("n").toUpperCase()}`);
  const [a, b] = [await newChannel(), await newChannel()];
  const na = await frontendJoin(gx, a);
  const nb = await frontendJoin(gx, b);
  assert.notEqual(na, nb);
  // Left, the number is forgotten here; joined by it again, the store
  // says which channel it is.
  gx.emit("leave_channel", { channelId: na });
  assert.deepEqual(await gx.inbox.next("channel_left"), { channelId: na });
  assert.equal(await frontendJoin(gx, na), na);
  gx.emit("join_channel", { channelId: Math.max(na, nb) + 1000000 });
  const error = await gx.inbox.next("error");
  assert.equal(error.code, "NOT_FOUND");
});

test("a numeric userId is the user id, as its decimal string", async () => {
  const n = 100000 + Math.floor(Math.random() * 1e9);
  const channelId = await newChannel();
  const gx = await frontend(n);
  const num = await frontendJoin(gx, channelId);
  gx.emit("send_message", { channelId: num, content: "numeric user" });
  const got = await gx.inbox.next("message", created(num));
  assert.equal(got.userId, String(n));
});

test("refused backend tokens say what the frontend acts on", async () => {
  const expired = await connectRefused({ token: backendToken("u-exp", { exp: nowSecs() - 3600 }) });
  assert.match(expired.message, /expired/);
  assert.equal(expired.data.reason, "TOKEN_EXPIRED");

  // Refreshing would not help these: no word that makes the frontend loop.
  const forged = await connectRefused({ token: backendToken("u-sig", { secret: "not-the-backend-secret-at-all!!" }) });
  assert.equal(forged.message, "unauthorized");
  assert.equal(forged.data.reason, "TOKEN_INVALID");
  const refresh = await connectRefused({ token: backendToken("u-aud", { aud: "gatrix-refresh" }) });
  assert.equal(refresh.message, "unauthorized");
  assert.equal(refresh.data.reason, "TOKEN_WRONG_AUDIENCE");
});
