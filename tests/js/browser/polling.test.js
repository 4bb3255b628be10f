// Headless Chromium, a page on another origin, socket.io-client with its
// default options: io(url) starts on HTTP long-polling (CORS on the
// Engine.IO routes) and upgrades to WebSocket. Needs the long-polling
// transport (issue 11, item 2). Run by tests/js_clients.rs
// (browser_chat_with_default_transports).

import assert from "node:assert/strict";
import { test } from "node:test";

import { ALLOWED_PORT, chatFlow, openPage, servePage } from "./harness.js";

test("a page chats with io(url)'s defaults: long-polling first, then the upgrade", async () => {
  const origin = await servePage(ALLOWED_PORT);
  const page = await openPage(origin, "polling-user");
  const { connectedOn, channelId } = await chatFlow(page, {});
  assert.equal(connectedOn, "polling");
  assert.equal(await page.evaluate(() => gatrix.upgraded()), "websocket");
  // Still chatting after the upgrade, on the same session.
  const sent = await page.evaluate((c) => gatrix.call("send_message", { channelId: c, content: "upgraded" }), channelId);
  assert.equal(sent.ok, true, JSON.stringify(sent));
  assert.equal(sent.message.seq, 2);
  const [delivered] = await page.evaluate(() => gatrix.next("message"));
  assert.equal(delivered.content, "upgraded");
  await page.evaluate(() => gatrix.close());
});
