// What the Gatrix scenarios share (gatrix*.test.js): the backend's tokens
// and secrets, a socket connected as the unchanged frontend connects, and
// a REST call as the backend's proxy makes it.

import assert from "node:assert/strict";

import { URL, WAIT_MS, connect, jwt, nowSecs, uid } from "./lib.js";

export const GX_SECRET = process.env.GATRIX_JWT_SECRET;
export const SERVICE_TOKEN = process.env.BACKEND_SERVICE_TOKEN;
if (!GX_SECRET || !SERVICE_TOKEN) {
  throw new Error("GATRIX_JWT_SECRET/BACKEND_SERVICE_TOKEN are not set: run through tests/js_clients.rs");
}

/** An access token as the Gatrix backend signs it (its src/utils/jwt.ts). */
export function backendToken(userId, { exp = nowSecs() + 900, aud = "gatrix-users", secret = GX_SECRET } = {}) {
  const claims = { userId, email: "u@example.com", orgId: "org", iat: nowSecs(), exp, iss: "gatrix", aud };
  return jwt(claims, { secret });
}

/**
 * Connects as the frontend does (its chatWebSocketService.ts); resolves
 * once `connected` arrived too, checked.
 */
export async function frontend(userId, { transports = ["websocket", "polling"] } = {}) {
  const socket = await connect(undefined, { token: backendToken(userId), transports });
  const hello = await socket.inbox.next("connected");
  assert.equal(typeof hello.serverId, "string");
  assert.equal(hello.socketId, socket.id);
  assert.ok(Number.isSafeInteger(hello.timestamp));
  return socket;
}

/**
 * A call as the backend sends it; `user` undefined: the backend itself;
 * `token` null: no X-API-Token.
 */
export async function backend(method, path, user, body, { token = SERVICE_TOKEN } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token !== null) headers["X-API-Token"] = token;
  if (user !== undefined) headers["X-User-ID"] = user;
  const response = await fetch(URL + "/api/v1" + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) };
}

/** What the backend's callers read: `success` and `data`. */
export async function ok(method, path, user, body) {
  const r = await backend(method, path, user, body);
  assert.ok(r.status < 300 && r.body.success === true, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** A user id as the backend makes them at HEAD (a ULID string). */
export const ulid = (p) => `01HZ${uid(p).toUpperCase()}`;
