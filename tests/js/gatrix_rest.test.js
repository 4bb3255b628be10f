// The Gatrix REST dialect (docs/api.md, "The Gatrix REST dialect"), acted
// out as the Gatrix backend does it: its proxy (routes/chat/index.ts)
// forwards the frontend's calls with X-API-Token (its
// BACKEND_SERVICE_TOKEN) and X-User-ID, and its ChatServerService syncs
// users with the token alone. Beside it, a Gatrix socket (the frontend's)
// and a native client on the same server.

import assert from "node:assert/strict";
import { test } from "node:test";

import { URL, WAIT_MS, call, connect, join, newChannel, rest, send, uid } from "./lib.js";
import { frontend, backend, ok, ulid } from "./gatrix_lib.js";

// One session as the frontend and the backend run it, in their order
// (ChatContext.loadChannels and its actions, over ChatService and the
// proxy): the refusals are the next test's and gatrix.test.js's (expired
// token wording); typing in detail is gatrix.test.js's; a native client
// shares the run (the last tests here).
test("the frontend's session through the backend, in their order", async () => {
  // The backend at start: its health check, then ChatServerService syncs
  // users with the service token alone (no X-User-ID).
  const info = await ok("GET", "/", undefined);
  assert.equal(typeof info.data.name, "string");
  const [ann, bob] = [ulid("ann"), ulid("bob")];
  const annData = {
    id: ann,
    username: "ann@example.com",
    name: "Ann Lee",
    email: "ann@example.com",
    avatarUrl: "https://cdn.example/ann.png",
    status: "online",
  };
  assert.equal((await ok("GET", `/users/check/${ann}`, undefined)).data.exists, false);
  const up = await ok("POST", "/users/upsert", undefined, annData);
  assert.equal(up.data.user.name, "Ann Lee");
  assert.equal((await ok("GET", `/users/check/${ann}`, undefined)).data.exists, true);
  const bulk = await ok("POST", "/users/sync-users", undefined, {
    users: [{ id: bob, username: "bob@example.com", name: "Bob" }],
  });
  assert.equal(bulk.data.processedCount, 1);
  assert.equal((await ok("GET", `/users/${bob}`, undefined)).data.user.avatarUrl, null);
  await ok("PUT", `/users/${bob}/status`, undefined, { status: "away", customStatus: "lunch" });
  const bobNow = (await ok("GET", `/users/${bob}`, undefined)).data.user;
  assert.deepEqual([bobNow.status, bobNow.customStatus], ["away", "lunch"]);

  // A frontend session (loadChannels): the proxy's /sync-user (mapped to
  // /users/upsert, X-User-ID and a body built from the login), the socket
  // with the backend's token, /channels/my, then /users and
  // /invitations/received together.
  async function session(user, profile) {
    const synced = await ok("POST", "/users/upsert", user, profile);
    assert.equal(synced.data.user.id, user);
    const socket = await frontend(user);
    const channels = await ok("GET", "/channels/my", user);
    assert.ok(Array.isArray(channels.data));
    assert.equal(channels.pagination.page, 1);
    const [users, invitations] = await Promise.all([
      ok("GET", "/users", user),
      ok("GET", "/invitations/received", user),
    ]);
    assert.equal(typeof users.pagination.total, "number");
    assert.deepEqual(invitations.data, []);
    return { socket, users: users.data };
  }
  const annSession = await session(ann, { id: ann, username: annData.email, name: annData.name, email: annData.email, avatarUrl: annData.avatarUrl });
  const bobSession = await session(bob, { id: bob, username: "bob@example.com", name: "Bob", email: "bob@example.com", avatarUrl: "https://cdn.example/default.png" });
  assert.ok(bobSession.users.some((u) => u.id === ann && u.avatarUrl === annData.avatarUrl), JSON.stringify(bobSession.users));
  assert.equal((await ok("GET", `/users/${bob}`, undefined)).data.user.status, "away", "a sync without status keeps it");
  const [annSocket, bobSocket] = [annSession.socket, bobSession.socket];

  // Ann creates a channel (createChannel: its id a number, she owns it,
  // settings and maxMembers kept) and selects it: its messages, then
  // join_channel on the socket.
  const settings = { allowFileUpload: true, isReadOnly: false };
  const created = await ok("POST", "/channels", ann, { name: uid("room"), type: "public", memberIds: [], settings, maxMembers: 50 });
  const num = created.data.id;
  assert.ok(Number.isSafeInteger(num) && num > 0, JSON.stringify(created));
  assert.deepEqual([created.data.role, created.data.settings, created.data.maxMembers], ["owner", settings, 50]);
  assert.deepEqual((await ok("GET", `/channels/${num}/messages?limit=50`, ann)).data.messages, []);
  annSocket.emit("join_channel", { channelId: num });
  assert.equal((await annSocket.inbox.next("channel_joined")).channelId, num);

  // Bob joins it (the joinChannel action: REST, then the socket) and sees
  // it among his channels, as a member.
  await ok("POST", `/channels/${num}/join`, bob);
  bobSocket.emit("join_channel", { channelId: num });
  await bobSocket.inbox.next("channel_joined");
  await annSocket.inbox.next("user_joined", (j) => j.userId === bob && j.channelId === num);
  const mine = await ok("GET", "/channels/my?page=1&limit=20", bob);
  const row = mine.data.find((c) => c.id === num);
  assert.ok(row, JSON.stringify(mine));
  assert.deepEqual([row.role, row.memberCount, row.unreadCount, row.settings], ["member", 2, 0, settings]);

  // Ann sends over REST (sendMessage's JSON body) and sees her own
  // message_created with her directory name and avatar; Bob sees it too.
  const sent = await backend("POST", `/channels/${num}/messages`, ann, { content: "hello from REST", contentType: "text", mentions: [], hashtags: [] });
  assert.equal(sent.status, 201, JSON.stringify(sent.body));
  const msg = sent.body.data;
  assert.ok(Number.isSafeInteger(msg.id) && msg.channelId === num, JSON.stringify(msg));
  const isIt = (m) => m.type === "message_created" && m.data.id === msg.id;
  const own = await annSocket.inbox.next("message", isIt);
  assert.equal(own.channelId, num);
  assert.equal(own.userId, ann);
  assert.deepEqual(own.data.user, { id: ann, name: "Ann Lee", email: "ann@example.com", avatar: annData.avatarUrl });
  assert.equal(own.data.userName, "Ann Lee");
  assert.equal(own.data.userAvatarUrl, annData.avatarUrl);
  assert.equal(own.data.isPinned, false);
  const theirs = await bobSocket.inbox.next("message", isIt);
  assert.equal(theirs.data.content, "hello from REST");

  // Bob types an answer: Ann sees it start and stop.
  bobSocket.emit("start_typing", { channelId: num });
  const typing = await annSocket.inbox.next("user_typing", (t) => t.userId === bob);
  assert.equal(typing.channelId, num);
  bobSocket.emit("stop_typing", { channelId: num });
  await annSocket.inbox.next("user_stop_typing", (t) => t.userId === bob);

  // The channel's messages, then Bob's unread count and his read mark.
  const page = await ok("GET", `/channels/${num}/messages?limit=50`, bob);
  assert.equal(page.data.messages.at(-1).id, msg.id);
  assert.equal(page.data.messages.at(-1).userName, "Ann Lee");
  assert.equal(typeof page.data.hasMore, "boolean");
  assert.ok(page.data.total >= 1);
  const older = await ok("GET", `/messages/channel/${num}?before=${msg.id}`, bob);
  assert.ok(older.data.messages.every((m) => m.id !== msg.id));
  const history = await ok("GET", `/channels/${num}/history?limit=1`, bob);
  assert.deepEqual(history.data.messages.map((m) => m.id), [msg.id]);
  assert.deepEqual((await ok("GET", `/messages/thread/${msg.id}`, bob)).data, []);
  let bobRow = (await ok("GET", "/channels/my", bob)).data.find((c) => c.id === num);
  assert.equal(bobRow.unreadCount, 1);
  // Her own message is not unread to Ann: a send moves her mark.
  const annRow = (await ok("GET", "/channels/my", ann)).data.find((c) => c.id === num);
  assert.deepEqual([annRow.unreadCount, annRow.lastReadMessageId], [0, msg.id]);
  await ok("POST", `/channels/${num}/read`, bob, { messageId: msg.id });
  bobRow = (await ok("GET", "/channels/my", bob)).data.find((c) => c.id === num);
  assert.equal(bobRow.unreadCount, 0);
  assert.equal(bobRow.lastReadMessageId, msg.id);
  assert.equal(typeof bobRow.lastReadAt, "string");

  // Edit and delete, broadcast in the dialect to both; only the author
  // edits.
  assert.equal((await backend("PUT", `/messages/${msg.id}`, bob, { content: "no" })).status, 403);
  const edited = await ok("PUT", `/messages/${msg.id}`, ann, { content: "edited" });
  assert.equal(edited.data.content, "edited");
  for (const socket of [annSocket, bobSocket]) {
    const upd = await socket.inbox.next("message", (m) => m.type === "message_updated" && m.data.id === msg.id);
    assert.equal(upd.data.content, "edited");
  }
  assert.equal((await ok("GET", `/messages/${msg.id}`, bob)).data.isEdited, true);
  await ok("DELETE", `/messages/${msg.id}`, ann);
  for (const socket of [annSocket, bobSocket]) {
    const del = await socket.inbox.next("message", (m) => m.type === "message_deleted" && m.data.messageId === msg.id);
    assert.equal(del.channelId, num);
  }
  assert.equal((await backend("GET", `/messages/${msg.id}`, bob)).status, 404);

  // Bob leaves; the directory forgets a deleted user.
  await ok("POST", `/channels/${num}/leave`, bob);
  assert.ok(!(await ok("GET", "/channels/my", bob)).data.some((c) => c.id === num));
  await ok("DELETE", `/users/${bob}`, undefined);
  assert.equal((await backend("GET", `/users/${bob}`, undefined)).status, 404);
  annSocket.close();
  bobSocket.close();
});

// PATCH /messages/:id/pin as the original has it: a toggle by the
// channel's owner or an admin (admins: tests/gatrix_roles.rs), told to the
// channel as message_updated (the original told nobody).
test("pins: the owner toggles them, members may not; both dialects see the change", async () => {
  const [owner, member] = [ulid("pow"), ulid("pme")];
  // Made natively, so that a native client can name it; the Gatrix side
  // learns its number from channel_joined.
  const channelId = await newChannel(owner);
  const listener = await frontend(member);
  listener.emit("join_channel", { channelId });
  const num = (await listener.inbox.next("channel_joined")).channelId;
  const native = await connect(member);
  await join(native, channelId);
  const m = (await ok("POST", `/channels/${num}/messages`, member, { content: "pin me" })).data;
  await listener.inbox.next("message", (e) => e.type === "message_created" && e.data.id === m.id);

  const refused = await backend("PATCH", `/messages/${m.id}/pin`, member);
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  assert.equal((await backend("PATCH", "/messages/999999999999/pin", owner)).status, 404);
  const pinned = await ok("PATCH", `/messages/${m.id}/pin`, owner);
  assert.equal(pinned.message, "Message pin status updated successfully");
  assert.deepEqual([pinned.data.id, pinned.data.isPinned, pinned.data.pinnedBy], [m.id, true, owner]);
  assert.equal(typeof pinned.data.pinnedAt, "string");
  assert.equal(pinned.data.isEdited, false, "a pin is no edit");
  const told = await listener.inbox.next("message", (e) => e.type === "message_updated" && e.data.id === m.id);
  assert.equal(told.data.isPinned, true);
  const seen = await native.inbox.next("message_updated", (e) => e.id === String(m.id));
  assert.deepEqual([seen.pinnedBy, seen.pinnedAt, seen.content], [owner, pinned.data.pinnedAt, "pin me"]);
  // Kept: one message, the channel's page.
  assert.equal((await ok("GET", `/messages/${m.id}`, member)).data.isPinned, true);
  const page = await ok("GET", `/channels/${num}/messages`, member);
  assert.equal(page.data.messages.find((x) => x.id === m.id).isPinned, true);
  // `{isPinned}` sets rather than toggles; without it, a toggle again.
  assert.equal((await ok("PATCH", `/messages/${m.id}/pin`, owner, { isPinned: true })).data.isPinned, true);
  const unpinned = await ok("PATCH", `/messages/${m.id}/pin`, owner);
  assert.equal(unpinned.data.isPinned, false);
  assert.equal(unpinned.data.pinnedAt, undefined);
  await listener.inbox.next("message", (e) => e.type === "message_updated" && e.data.id === m.id && !e.data.isPinned);
  assert.equal((await backend("PATCH", `/messages/${m.id}/pin`, owner, { isPinned: "yes" })).status, 400);
  listener.close();
  native.close();
});

/** The sum of chat_auth_failures_total{transport="rest"} over the shards. */
async function restAuthFailures() {
  const text = await (await fetch(URL + "/metrics", { signal: AbortSignal.timeout(WAIT_MS) })).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("chat_auth_failures_total{") && l.includes('transport="rest"'))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

test("the service token is required, X-User-ID alone is no login", async () => {
  const user = ulid("eve");
  const failuresBefore = await restAuthFailures();
  for (const [what, token] of [
    ["missing", null],
    ["wrong", "not-the-service-token-not-the-service-token"],
    ["empty", ""],
  ]) {
    const r = await backend("GET", "/channels/my", user, undefined, { token });
    assert.equal(r.status, 401, `${what}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.success, false);
    assert.equal(typeof r.body.error.message, "string");
    // Neither header: no Gatrix call, and no such native path.
    const sync = await backend("POST", "/users/upsert", undefined, { id: user, username: "e" }, { token });
    assert.equal(sync.status, token === null ? 404 : 401, `${what} sync: ${JSON.stringify(sync.body)}`);
  }
  // The wrong and the empty token (twice each) count as failed auth.
  assert.ok((await restAuthFailures()) >= failuresBefore + 4, "chat_auth_failures_total{transport=rest}");
  // The token without a user: only the backend's own calls.
  const r = await backend("GET", "/channels/my", undefined);
  assert.equal(r.status, 401);
  assert.match(r.body.error.message, /X-User-ID/);
  // Through the proxy (X-User-ID), a user changes only themselves.
  const victim = ulid("vic");
  await ok("POST", "/users/upsert", undefined, { id: victim, username: "v@example.com", name: "Vic" });
  assert.equal((await backend("POST", "/users/upsert", user, { id: victim, username: "x", name: "Evil" })).status, 403);
  assert.equal((await backend("PUT", `/users/${victim}/status`, user, { status: "busy" })).status, 403);
  assert.equal((await backend("DELETE", `/users/${victim}`, user)).status, 403);
  assert.equal((await backend("POST", "/users/sync-users", user, { users: [{ id: victim, username: "x" }] })).status, 403);
  assert.equal((await ok("GET", `/users/${victim}`, user)).data.user.name, "Vic");
  // Their own entry (the proxy's /sync-user) they may.
  await ok("POST", "/users/sync-user", user, { id: user, username: "eve@example.com", name: "Eve" });
  await ok("PUT", `/users/${user}/status`, user, { status: "busy" });
  // A bad body is the dialect's error, not the native one.
  const bad = await backend("POST", "/users/upsert", undefined, { id: user });
  assert.deepEqual([bad.status, bad.body.success], [400, false]);
});

test("a native Bearer client keeps the native API on the same server", async () => {
  const alice = uid("alice");
  const channelId = await newChannel(alice);
  const socket = await connect(alice);
  await join(socket, channelId);
  const sent = await rest("POST", "/api/v1/messages", alice, { channelId, content: "native" });
  assert.equal(sent.status, 201);
  assert.equal(typeof sent.body.message.id, "string", "native ids stay strings");
  const live = await socket.inbox.next("message", (m) => m.id === sent.body.message.id);
  assert.equal(live.channelId, channelId);
  const list = await rest("GET", "/api/v1/channels", alice);
  assert.ok(list.body.channels.some((c) => c.id === channelId));
  assert.equal(list.body.success, undefined, "no Gatrix envelope");
  // Without a token: the native refusal.
  const none = await rest("GET", "/api/v1/channels", undefined);
  assert.equal(none.status, 401);
  assert.equal(none.body.error.code, "UNAUTHORIZED");
  socket.close();
});

test("channels by number: read, rename, delete; batch deletion; sends by channelId; ws info", async () => {
  const [owner, other] = [ulid("own"), ulid("oth")];
  const made = await ok("POST", "/channels", owner, { name: uid("c"), type: "public" });
  const num = made.data.id;
  const seen = await ok("GET", `/channels/${num}`, other);
  assert.deepEqual([seen.data.id, seen.data.name, seen.data.memberCount], [num, made.data.name, 1]);
  // Not a member: neither renames nor deletes (admins: tests/gatrix_roles.rs).
  assert.equal((await backend("PUT", `/channels/${num}`, other, { name: "x" })).status, 403);
  assert.equal((await backend("DELETE", `/channels/${num}`, other)).status, 403);
  assert.equal((await ok("PUT", `/channels/${num}`, owner, { name: "renamed" })).data.name, "renamed");
  // Sends through POST /messages with channelId, then a batch deletion.
  const a = await ok("POST", "/messages", owner, { channelId: num, content: "one" });
  const b = await ok("POST", "/messages", owner, { channelId: String(num), content: "two" });
  assert.equal(b.data.channelId, num);
  const batch = await ok("DELETE", "/messages/batch", owner, { messageIds: [a.data.id, b.data.id] });
  assert.equal(batch.data.deletedCount, 2);
  const left = await ok("GET", `/channels/${num}/messages`, owner);
  assert.deepEqual(left.data.messages, []);
  assert.equal((await backend("DELETE", "/messages/batch", owner, { messageIds: [] })).status, 400);
  // A private channel is for its members: no join, no read.
  const secret = await ok("POST", "/channels", owner, { name: uid("p"), type: "private" });
  assert.equal((await backend("POST", `/channels/${secret.data.id}/join`, other)).status, 403);
  assert.equal((await backend("GET", `/channels/${secret.data.id}/messages`, other)).status, 403);
  assert.equal((await backend("GET", "/channels/999999999", other)).status, 404);
  await ok("DELETE", `/channels/${num}`, owner);
  assert.equal((await backend("GET", `/channels/${num}`, owner)).status, 404);
  // Where the Socket.IO side is, enveloped and as the original's probe.
  assert.equal((await ok("GET", "/ws/info", undefined)).data.path, "/socket.io");
  const plain = await fetch(URL + "/ws/info", { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(plain.status, 200);
  assert.equal(typeof (await plain.json()).serverId, "string");
});

test("an author missing from memory is read once, and their next messages carry the name", async () => {
  const cy = ulid("cy");
  await ok("POST", "/users/upsert", undefined, { id: cy, username: "cy@example.com", name: "Cy Young" });
  // A status change drops the copy in memory (it changed).
  await ok("PUT", `/users/${cy}/status`, undefined, { status: "busy" });
  // Cy writes natively (a Bearer token, no Gatrix REST: nothing reads Cy
  // before the frame); a Gatrix user listens.
  const channelId = await newChannel(cy);
  const native = await connect(cy);
  await join(native, channelId);
  const listener = await frontend(ulid("li"));
  listener.emit("join_channel", { channelId });
  const num = (await listener.inbox.next("channel_joined")).channelId;
  const first = await rest("POST", "/api/v1/messages", cy, { channelId, content: "first" });
  assert.equal(first.status, 201);
  const seen = await listener.inbox.next("message", (m) => m.type === "message_created" && m.channelId === num);
  assert.deepEqual(seen.data.user, { id: cy }, "not in memory: the id alone");
  // The frame asked for Cy; a later message carries the name.
  const deadline = Date.now() + WAIT_MS;
  for (let i = 0; ; i++) {
    await rest("POST", "/api/v1/messages", cy, { channelId, content: `again ${i}` });
    const m = await listener.inbox.next("message", (x) => x.type === "message_created" && x.data.content === `again ${i}`);
    if (m.data.userName !== undefined) {
      assert.equal(m.data.userName, "Cy Young");
      assert.equal(m.data.user.name, "Cy Young");
      break;
    }
    assert.ok(Date.now() < deadline, "Cy's name never came");
  }
  // A history page reads its authors itself.
  await ok("PUT", `/users/${cy}/status`, undefined, { status: "away" });
  const page = await ok("GET", `/channels/${num}/messages`, cy);
  assert.ok(page.data.messages.every((m) => m.userName === "Cy Young"), JSON.stringify(page.data.messages[0]));
  native.close();
  listener.close();
});
