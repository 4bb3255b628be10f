// Authentication: the three ways to present a token, and every refusal.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { connect, connectRefused, join, jwt, nowSecs, send, token, uid } from "./lib.js";

/** Proves the connection is authenticated as `sub`: its messages carry that user id. */
async function assertActsAs(socket, sub) {
  const channelId = uid("auth");
  await join(socket, channelId);
  const message = await send(socket, channelId, "who am I");
  assert.equal(message.userId, sub);
}

describe("accepted tokens", () => {
  test("auth payload {token}", async () => {
    const sub = uid("alice");
    const socket = await connect(sub);
    assert.equal(socket.connected, true);
    assert.equal(typeof socket.id, "string");
    await assertActsAs(socket, sub);
  });

  test("Authorization: Bearer header on the upgrade request", async () => {
    const sub = uid("bob");
    const socket = await connect(sub, {
      token: undefined,
      extraHeaders: { Authorization: `Bearer ${token(sub)}` },
    });
    await assertActsAs(socket, sub);
  });

  test("?token= in the query", async () => {
    const sub = uid("carol");
    const socket = await connect(sub, { token: undefined, query: { token: token(sub) } });
    await assertActsAs(socket, sub);
  });

  test("a token with a display name", async () => {
    const sub = uid("dave");
    const socket = await connect(sub, { token: token(sub, { name: "Dave D." }) });
    await assertActsAs(socket, sub);
  });
});

describe("refused tokens", () => {
  const refusals = {
    "forged signature": () => token(uid("mallory"), { secret: "not-the-server-secret-but-just-as-long" }),
    expired: () => token(uid("old"), { exp: nowSecs() - 3600 }),
    "alg none": () => token(uid("eve"), { alg: "none" }),
    "alg HS512, which is not configured": () => token(uid("eve"), { alg: "HS512" }),
    "no exp claim": () => jwt({ sub: uid("forever") }),
    "not a JWT": () => "not-a-jwt",
    "empty string": () => "",
  };

  for (const [name, makeToken] of Object.entries(refusals)) {
    test(name, async () => {
      const err = await connectRefused({ token: makeToken() });
      assert.equal(err.message, "unauthorized");
      assert.deepEqual(err.data, { code: "UNAUTHORIZED" });
    });
  }

  test("no token at all", async () => {
    const err = await connectRefused({});
    assert.equal(err.message, "unauthorized");
    assert.deepEqual(err.data, { code: "UNAUTHORIZED" });
  });

  test("forged Bearer header", async () => {
    const forged = token(uid("mallory"), { secret: "not-the-server-secret-but-just-as-long" });
    const err = await connectRefused({ extraHeaders: { Authorization: `Bearer ${forged}` } });
    assert.equal(err.message, "unauthorized");
    assert.deepEqual(err.data, { code: "UNAUTHORIZED" });
  });
});

test("unknown namespace is refused", async () => {
  const err = await connectRefused({ nsp: "/nope", token: token(uid("alice")) });
  assert.equal(err.message, "Invalid namespace");
});
