// GATRIX_REQUIRE_KNOWN_USERS with the stock socket.io-client, configured as
// the unchanged Gatrix frontend configures it (chatWebSocketService.ts:
// `auth.token`, transports websocket then polling, no reconnection,
// forceNew). Run by tests/gatrix_known.rs against a server of its own with
// the setting on (not by js_clients.rs, whose server has it off).

import assert from "node:assert/strict";
import { test } from "node:test";

import { WAIT_MS, connect, connectRefused, jwt, nowSecs, uid } from "../lib.js";

const GX_SECRET = process.env.GATRIX_JWT_SECRET;
const SERVICE_TOKEN = process.env.BACKEND_SERVICE_TOKEN;
const URL = process.env.GATRIX_URL;
if (!GX_SECRET || !SERVICE_TOKEN) {
  throw new Error("GATRIX_JWT_SECRET or BACKEND_SERVICE_TOKEN is not set: run through tests/gatrix_known.rs");
}

function backendToken(userId) {
  const claims = { userId, email: "u@example.com", iat: nowSecs(), exp: nowSecs() + 900, iss: "gatrix", aud: "gatrix-users" };
  return jwt(claims, { secret: GX_SECRET });
}

/** The backend's own call (its ChatServerService: the service token, no user). */
async function backend(method, path, body) {
  const response = await fetch(`${URL}/api/v1${path}`, {
    method,
    headers: { "X-API-Token": SERVICE_TOKEN, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const json = await response.json();
  assert.equal(response.status, 200, JSON.stringify(json));
  return json;
}

/** What chatWebSocketService.ts's connect_error handler decides. */
const frontendRefreshesToken = (err) =>
  err.message?.includes("Authentication error") || err.message?.includes("jwt") || err.message?.includes("expired");

async function refused(userId, transports) {
  const err = await connectRefused({ token: backendToken(userId), transports });
  assert.equal(err.message, "User not found in chat server");
  assert.deepEqual(err.data, { code: "UNAUTHORIZED", reason: "USER_UNKNOWN" });
  assert.equal(frontendRefreshesToken(err), false, "no token refresh loop");
  return err;
}

async function admitted(userId, transports) {
  const socket = await connect(undefined, { token: backendToken(userId), transports });
  const hello = await socket.inbox.next("connected");
  assert.equal(hello.socketId, socket.id);
  socket.disconnect();
}

for (const transports of [["websocket", "polling"], ["polling"]]) {
  test(`unknown, synced, deleted over ${transports[0]}`, async () => {
    const user = `01HZ${uid("k").toUpperCase()}`;
    await refused(user, transports);
    await backend("POST", "/users/upsert", { id: user, username: `${user}@example.com`, name: "K" });
    await admitted(user, transports);
    await backend("DELETE", `/users/${user}`);
    await refused(user, transports);
  });
}
