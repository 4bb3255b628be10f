// Authentication: the three ways to present a token, and every refusal.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  connect,
  connectRefused,
  join,
  jwt,
  newChannel,
  nowSecs,
  rest,
  send,
  token,
  uid,
  URL,
} from "./lib.js";

/** Proves the connection is authenticated as `sub`: its messages carry that user id. */
async function assertActsAs(socket, sub) {
  const channelId = await newChannel();
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
    // A first connection is not a recovered one.
    assert.equal(socket.recovered, false);
    await assertActsAs(socket, sub);
  });

  test("the REST API takes the same token as a Bearer header", async () => {
    const sub = uid("erin");
    const socket = await connect(sub);
    const channelId = await newChannel(sub);
    await join(socket, channelId);
    const sent = await send(socket, channelId, "via socket");
    const { status, body } = await rest("GET", `/api/v1/messages/channel/${channelId}?after=0`, sub);
    assert.equal(status, 200, JSON.stringify(body));
    assert.deepEqual(body.messages, [sent]);
    assert.equal(body.hasMore, false);
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
  // Each refusal keeps the message clients compare ("unauthorized") and
  // says why in data.reason (and data.claim), never more.
  const refusals = {
    "forged signature": [
      () => token(uid("mallory"), { secret: "not-the-server-secret-but-just-as-long" }),
      { reason: "TOKEN_INVALID" },
    ],
    expired: [() => token(uid("old"), { exp: nowSecs() - 3600 }), { reason: "TOKEN_EXPIRED" }],
    "not valid yet": [
      () => jwt({ sub: uid("early"), exp: nowSecs() + 7200, nbf: nowSecs() + 3600 }),
      { reason: "TOKEN_NOT_YET_VALID" },
    ],
    "alg none": [() => token(uid("eve"), { alg: "none" }), { reason: "TOKEN_WRONG_ALGORITHM" }],
    "alg HS512, which is not configured": [
      () => token(uid("eve"), { alg: "HS512" }),
      { reason: "TOKEN_WRONG_ALGORITHM" },
    ],
    "no exp claim": [() => jwt({ sub: uid("forever") }), { reason: "TOKEN_MISSING_CLAIM", claim: "exp" }],
    "no sub claim": [() => jwt({ exp: nowSecs() + 3600 }), { reason: "TOKEN_MISSING_CLAIM", claim: "sub" }],
    "not a JWT": [() => "not-a-jwt", { reason: "TOKEN_INVALID" }],
    "empty string": [() => "", { reason: "TOKEN_MISSING" }],
  };

  for (const [name, [makeToken, why]] of Object.entries(refusals)) {
    test(name, async () => {
      const err = await connectRefused({ token: makeToken() });
      assert.equal(err.message, "unauthorized");
      assert.deepEqual(err.data, { code: "UNAUTHORIZED", ...why });
    });
  }

  test("no token at all", async () => {
    const err = await connectRefused({});
    assert.equal(err.message, "unauthorized");
    assert.deepEqual(err.data, { code: "UNAUTHORIZED", reason: "TOKEN_MISSING" });
  });

  test("forged Bearer header", async () => {
    const forged = token(uid("mallory"), { secret: "not-the-server-secret-but-just-as-long" });
    const err = await connectRefused({ extraHeaders: { Authorization: `Bearer ${forged}` } });
    assert.equal(err.message, "unauthorized");
    assert.deepEqual(err.data, { code: "UNAUTHORIZED", reason: "TOKEN_INVALID" });
  });
});

describe("refused REST tokens", () => {
  const refusals = {
    "no token": [undefined, "TOKEN_MISSING"],
    "forged signature": [
      token(uid("mallory"), { secret: "not-the-server-secret-but-just-as-long" }),
      "TOKEN_INVALID",
    ],
    expired: [token(uid("old"), { exp: nowSecs() - 3600 }), "TOKEN_EXPIRED"],
    "alg none": [token(uid("eve"), { alg: "none" }), "TOKEN_WRONG_ALGORITHM"],
  };
  for (const [name, [tok, reason]] of Object.entries(refusals)) {
    test(name, async () => {
      const headers = { "Content-Type": "application/json" };
      if (tok !== undefined) headers.Authorization = `Bearer ${tok}`;
      const response = await fetch(`${URL}/api/v1/channels`, {
        method: "POST",
        headers,
        body: JSON.stringify({ name: uid("chan"), type: "public" }),
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(response.status, 401);
      const body = await response.json();
      assert.equal(body.error?.code, "UNAUTHORIZED", JSON.stringify(body));
      assert.equal(body.error?.reason, reason, JSON.stringify(body));
    });
  }
});

test("unknown namespace is refused", async () => {
  const err = await connectRefused({ nsp: "/nope", token: token(uid("alice")) });
  assert.equal(err.message, "Invalid namespace");
});
