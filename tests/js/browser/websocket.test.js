// Headless Chromium, a page on another origin: REST through the page's
// fetch() (CORS preflights and headers) and Socket.IO over WebSocket only.
// Run by tests/js_clients.rs (browser_chat_over_websocket_with_cors).

import assert from "node:assert/strict";
import { test } from "node:test";

import { ALLOWED_PORT, chatFlow, openPage, servePage } from "./harness.js";

test("a page on an allowed origin chats: REST with fetch(), Socket.IO over WebSocket", async () => {
  const origin = await servePage(ALLOWED_PORT);
  const page = await openPage(origin, "page-user");
  const { connectedOn } = await chatFlow(page, { transports: ["websocket"] });
  assert.equal(connectedOn, "websocket");
  await page.evaluate(() => gatrix.close());
});

test("a page on an origin not in ALLOWED_ORIGINS cannot read REST answers or open a socket", async () => {
  const allowed = await servePage(ALLOWED_PORT);
  const other = await servePage(0);
  assert.notEqual(other, allowed);
  const page = await openPage(other, "stranger");
  // Preflighted (Authorization): the preflight gets 403, fetch() rejects.
  const list = await page.evaluate(() => gatrix.restOutcome("GET", "/api/v1/channels"));
  assert.equal(list.ok, false, JSON.stringify(list));
  assert.equal(list.name, "TypeError", JSON.stringify(list));
  const create = await page.evaluate(() => gatrix.restOutcome("POST", "/api/v1/channels", { name: "x", type: "public" }));
  assert.equal(create.ok, false, JSON.stringify(create));
  // A simple request (no preflight) is answered without CORS headers: the
  // browser keeps the answer from the page all the same.
  const health = await page.evaluate(() => gatrix.restOutcome("GET", "/health", undefined, { auth: false }));
  assert.equal(health.ok, false, JSON.stringify(health));
  // The WebSocket upgrade is refused too (403 before the 101).
  const socket = await page.evaluate(() => gatrix.connect({ transports: ["websocket"] }).then(
    (t) => `connected on ${t}`,
    (e) => e.message,
  ));
  assert.match(socket, /^connect_error/);

  // The same calls from the allowed origin succeed: the origin is the difference.
  const control = await openPage(allowed, "stranger");
  const ok = await control.evaluate(() => gatrix.restOutcome("GET", "/api/v1/channels"));
  assert.equal(ok.ok, true, JSON.stringify(ok));
  assert.equal(ok.answer.status, 200);
  const probe = await control.evaluate(() => gatrix.restOutcome("GET", "/health", undefined, { auth: false }));
  assert.deepEqual([probe.ok, probe.answer?.status], [true, 200]);
});
