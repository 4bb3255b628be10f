// Channels and messages: join/leave acks, who may join which channel, send
// acks, fan-out, ordering, the recovery offset of each message, dedupe by
// clientMessageId, and the error replies. Channels are created through REST
// first: joining a channel that does not exist is NOT_FOUND.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  MAX_MESSAGE_LENGTH,
  RFC3339_MS,
  call,
  connect,
  createChannel,
  join,
  newChannel,
  send,
  sleep,
  uid,
} from "./lib.js";

function assertError(ack, code) {
  assert.equal(ack?.ok, false, `expected an error ack, got ${JSON.stringify(ack)}`);
  assert.equal(ack.error?.code, code, `expected ${code}, got ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error.message, "string");
}

describe("join_channel and leave_channel", () => {
  test("join acks with the channel record and lastSeq 0 for a new channel", async () => {
    const owner = uid("owner");
    const name = uid("general");
    const created = await createChannel(owner, { name, description: "for everyone" });
    assert.equal(created.name, name);
    assert.equal(created.type, "public");
    assert.equal(created.ownerId, owner);

    const socket = await connect(uid("alice"));
    const ack = await call(socket, "join_channel", { channelId: created.id });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.equal(ack.channel?.id, created.id);
    assert.equal(ack.channel.name, name);
    assert.equal(ack.channel.type, "public");
    assert.equal(ack.channel.ownerId, owner);
    assert.equal(ack.channel.description, "for everyone");
    // The join ack carries the same record as the REST answer.
    for (const [key, value] of Object.entries(ack.channel)) {
      if (key in created) assert.deepEqual(value, created[key], `channel.${key}`);
    }
    assert.equal(ack.lastSeq, 0);
  });

  test("lastSeq reports the messages already in the channel", async () => {
    const alice = await connect(uid("alice"));
    const channelId = await newChannel();
    await join(alice, channelId);
    await send(alice, channelId, "one");
    await send(alice, channelId, "two");
    const bob = await connect(uid("bob"));
    const ack = await join(bob, channelId);
    assert.equal(ack.channel.id, channelId);
    assert.equal(ack.lastSeq, 2);
  });

  test("leave acks ok, and the leaver may no longer send or receive", async () => {
    const alice = await connect(uid("alice"));
    const bob = await connect(uid("bob"));
    const channelId = await newChannel();
    await join(alice, channelId);
    await join(bob, channelId);
    assert.deepEqual(await call(bob, "leave_channel", { channelId }), { ok: true });
    assertError(await call(bob, "send_message", { channelId, content: "hi" }), "FORBIDDEN");
    const sent = await send(alice, channelId, "after bob left");
    await alice.inbox.next("message", (m) => m.id === sent.id);
    await sleep(300);
    assert.deepEqual(bob.inbox.peek("message"), []);
  });

  test("join without channelId is INVALID_PAYLOAD", async () => {
    const socket = await connect(uid("alice"));
    assertError(await call(socket, "join_channel", {}), "INVALID_PAYLOAD");
  });

  test("join of a channel that does not exist is NOT_FOUND, and subscribes to nothing", async () => {
    const socket = await connect(uid("alice"));
    const channelId = uid("no-such-chan");
    assertError(await call(socket, "join_channel", { channelId }), "NOT_FOUND");
    // Asking again gets the same answer (nothing was left half-joined).
    assertError(await call(socket, "join_channel", { channelId }), "NOT_FOUND");
    assertError(await call(socket, "send_message", { channelId, content: "hi" }), "FORBIDDEN");
    // The connection is still usable.
    await join(socket, await newChannel());
  });
});

describe("who may join", () => {
  for (const type of ["private", "direct"]) {
    test(`a ${type} channel: FORBIDDEN for a non-member, ok for its members`, async () => {
      const ownerId = uid("owner");
      const memberId = uid("member");
      const strangerId = uid("stranger");
      const created = await createChannel(ownerId, { type, members: [memberId] });
      assert.equal(created.type, type);
      const channelId = created.id;

      const stranger = await connect(strangerId);
      assertError(await call(stranger, "join_channel", { channelId }), "FORBIDDEN");
      // The refused join left no subscription behind.
      assertError(await call(stranger, "send_message", { channelId, content: "let me in" }), "FORBIDDEN");

      const member = await connect(memberId);
      const ack = await join(member, channelId);
      assert.equal(ack.channel.type, type);
      assert.equal(ack.channel.ownerId, ownerId);
      assert.equal(ack.lastSeq, 0);

      // The owner is a member of what it created.
      const owner = await connect(ownerId);
      await join(owner, channelId);

      const sent = await send(member, channelId, `inside the ${type} channel`);
      assert.equal(sent.seq, 1);
      assert.deepEqual(await owner.inbox.next("message", (m) => m.id === sent.id), sent);
      await sleep(200);
      assert.deepEqual(stranger.inbox.peek("message"), [], "a non-member received a message");
      // Still refused after the members talked.
      assertError(await call(stranger, "join_channel", { channelId }), "FORBIDDEN");
    });
  }

  test("anyone may join a public channel, which makes them a member", async () => {
    const channelId = await newChannel();
    const aliceId = uid("alice");
    const alice = await connect(aliceId);
    await join(alice, channelId);
    const sent = await send(alice, channelId, "hello, public");
    assert.equal(sent.userId, aliceId);
  });
});

describe("send_message", () => {
  test("acks the stored message, which the sender also receives with its offset", async () => {
    const sub = uid("alice");
    const socket = await connect(sub);
    const channelId = await newChannel();
    await join(socket, channelId);
    const before = Date.now();
    const ack = await call(socket, "send_message", {
      channelId,
      content: "hello, world",
      clientMessageId: uid("cmid"),
    });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    const { message } = ack;
    assert.equal(typeof message.id, "string");
    assert.notEqual(message.id, "");
    assert.equal(message.channelId, channelId);
    assert.equal(message.seq, 1);
    assert.equal(message.userId, sub);
    assert.equal(message.content, "hello, world");
    assert.equal(message.type, "text");
    assert.equal(typeof message.clientMessageId, "string");
    assert.match(message.createdAt, RFC3339_MS);
    const createdAt = Date.parse(message.createdAt);
    assert.ok(Math.abs(createdAt - before) < 60_000, `createdAt ${message.createdAt} is not now`);

    // `message` carries the recovery offset as a last, string argument.
    const received = await socket.inbox.nextEvent("message", (m) => m.id === message.id);
    assert.deepEqual(received.data, message);
    assert.equal(received.args.length, 2, `message arguments: ${JSON.stringify(received.args)}`);
    assert.equal(typeof received.args[1], "string");
    assert.notEqual(received.args[1], "");

    const second = await send(socket, channelId, "again");
    assert.equal(second.seq, 2);
    assert.notEqual(second.id, message.id);
    const again = await socket.inbox.nextEvent("message", (m) => m.id === second.id);
    assert.equal(typeof again.args[1], "string");
    assert.notEqual(again.args[1], received.args[1], "two messages with one offset");
  });

  test("replyTo is kept", async () => {
    const socket = await connect(uid("alice"));
    const channelId = await newChannel();
    await join(socket, channelId);
    const first = await send(socket, channelId, "question");
    const reply = await send(socket, channelId, "answer", { replyTo: first.id });
    assert.equal(reply.replyTo, first.id);
  });

  test("every connection joined to the channel receives it", async () => {
    // Five receivers on two shards: at least one lands on the other shard
    // from the sender with near certainty.
    const channelId = await newChannel();
    const sender = await connect(uid("sender"));
    await join(sender, channelId);
    const receivers = await Promise.all(
      Array.from({ length: 5 }, (_, i) => connect(uid(`receiver${i}`))),
    );
    await Promise.all(receivers.map((socket) => join(socket, channelId)));

    const message = await send(sender, channelId, "to everyone");
    for (const socket of [sender, ...receivers]) {
      const received = await socket.inbox.nextEvent("message", (m) => m.id === message.id);
      assert.deepEqual(received.data, message);
      assert.equal(received.args.length, 2);
      assert.equal(typeof received.args[1], "string");
    }
  });

  test("50 quick sends arrive gapless and in order at another client", async () => {
    const channelId = await newChannel();
    const sender = await connect(uid("sender"));
    const receiver = await connect(uid("receiver"));
    await join(sender, channelId);
    await join(receiver, channelId);

    const contents = Array.from({ length: 50 }, (_, i) => `burst ${i}`);
    const acks = await Promise.all(
      contents.map((content) => call(sender, "send_message", { channelId, content })),
    );
    for (const ack of acks) assert.equal(ack.ok, true, JSON.stringify(ack));

    const events = await receiver.inbox.takeEvents("message", 50, (m) => m.channelId === channelId);
    const received = events.map((e) => e.data);
    assert.deepEqual(
      received.map((m) => m.seq),
      contents.map((_, i) => i + 1),
    );
    const offsets = events.map((e) => e.args[1]);
    assert.ok(
      offsets.every((o) => typeof o === "string" && o !== ""),
      `offsets: ${JSON.stringify(offsets)}`,
    );
    assert.equal(new Set(offsets).size, 50, "messages sharing an offset");
    assert.deepEqual(
      received.map((m) => m.content),
      contents,
    );
    assert.deepEqual(
      acks.map((ack) => ack.message.seq),
      contents.map((_, i) => i + 1),
    );
  });

  test("a repeated clientMessageId returns the first message and broadcasts nothing", async () => {
    const channelId = await newChannel();
    const alice = await connect(uid("alice"));
    const bob = await connect(uid("bob"));
    await join(alice, channelId);
    await join(bob, channelId);

    const clientMessageId = uid("cmid");
    const first = await send(alice, channelId, "once", { clientMessageId });
    const again = await send(alice, channelId, "once", { clientMessageId });
    assert.equal(again.id, first.id);
    assert.equal(again.seq, first.seq);
    assert.equal(again.clientMessageId, clientMessageId);

    // Nothing was stored for the repeat: the next message takes the next seq,
    // and bob sees exactly the two distinct messages.
    const next = await send(alice, channelId, "next");
    assert.equal(next.seq, first.seq + 1);
    const received = await bob.inbox.take("message", 2, (m) => m.channelId === channelId);
    assert.deepEqual(
      received.map((m) => m.id),
      [first.id, next.id],
    );
    await sleep(200);
    assert.deepEqual(bob.inbox.peek("message"), []);
  });

  test("the same clientMessageId from another user is a new message", async () => {
    const channelId = await newChannel();
    const alice = await connect(uid("alice"));
    const bob = await connect(uid("bob"));
    await join(alice, channelId);
    await join(bob, channelId);
    const clientMessageId = uid("cmid");
    const fromAlice = await send(alice, channelId, "mine", { clientMessageId });
    const fromBob = await send(bob, channelId, "mine too", { clientMessageId });
    assert.notEqual(fromBob.id, fromAlice.id);
    assert.equal(fromBob.seq, fromAlice.seq + 1);
  });
});

describe("send_message errors", () => {
  test("to a channel not joined is FORBIDDEN", async () => {
    const socket = await connect(uid("alice"));
    assertError(
      await call(socket, "send_message", { channelId: await newChannel(), content: "hi" }),
      "FORBIDDEN",
    );
  });

  test("content over MAX_MESSAGE_LENGTH bytes is PAYLOAD_TOO_LARGE", async () => {
    const socket = await connect(uid("alice"));
    const channelId = await newChannel();
    await join(socket, channelId);

    const atLimit = await send(socket, channelId, "x".repeat(MAX_MESSAGE_LENGTH));
    assert.equal(atLimit.content.length, MAX_MESSAGE_LENGTH);
    assertError(
      await call(socket, "send_message", { channelId, content: "x".repeat(MAX_MESSAGE_LENGTH + 1) }),
      "PAYLOAD_TOO_LARGE",
    );
    // The limit counts UTF-8 bytes, not characters: "é" is two bytes.
    const twoByteChars = "é".repeat(Math.floor(MAX_MESSAGE_LENGTH / 2) + 1);
    assert.ok(twoByteChars.length <= MAX_MESSAGE_LENGTH);
    assertError(
      await call(socket, "send_message", { channelId, content: twoByteChars }),
      "PAYLOAD_TOO_LARGE",
    );
  });

  const invalid = {
    "empty content": (channelId) => ({ channelId, content: "" }),
    "missing content": (channelId) => ({ channelId }),
    "numeric content": (channelId) => ({ channelId, content: 42 }),
    "missing channelId": () => ({ content: "hi" }),
    "a string instead of an object": () => "hi",
  };
  for (const [name, payload] of Object.entries(invalid)) {
    test(`${name} is INVALID_PAYLOAD`, async () => {
      const socket = await connect(uid("alice"));
      const channelId = await newChannel();
      await join(socket, channelId);
      assertError(await call(socket, "send_message", payload(channelId)), "INVALID_PAYLOAD");
    });
  }

  test("without an ack, a failure comes as an error event", async () => {
    const socket = await connect(uid("alice"));
    const channelId = await newChannel();
    socket.emit("send_message", { channelId, content: "not joined" });
    const forbidden = await socket.inbox.next("error");
    assert.equal(forbidden.code, "FORBIDDEN");
    assert.equal(typeof forbidden.message, "string");

    socket.emit("join_channel", { channelId: uid("no-such-chan") });
    const notFound = await socket.inbox.next("error");
    assert.equal(notFound.code, "NOT_FOUND");
    assert.equal(typeof notFound.message, "string");

    await join(socket, channelId);
    socket.emit("send_message", { channelId, content: "" });
    const invalidPayload = await socket.inbox.next("error");
    assert.equal(invalidPayload.code, "INVALID_PAYLOAD");

    // The connection is still usable afterwards.
    await send(socket, channelId, "still here");
  });
});
