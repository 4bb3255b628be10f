// The browser side of the CORS tests: a static HTTP server that serves a
// page from an origin other than the chat server's, and headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core) to load it.
//
// tests/js_clients.rs starts the chat server with
// ALLOWED_ORIGINS=http://127.0.0.1:$GATRIX_PAGE_PORT and passes that port:
// a page served there is allowed, a page served on any other port is not.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after } from "node:test";
import { chromium } from "playwright-core";

import { token, uid, URL as API } from "../lib.js";

export { API };

const here = dirname(fileURLToPath(import.meta.url));
const FILES = {
  "/": ["text/html", join(here, "page.html")],
  "/page.js": ["text/javascript", join(here, "page.js")],
  "/socket.io.min.js": ["text/javascript", join(here, "../node_modules/socket.io-client/dist/socket.io.min.js")],
};

/** The port whose origin the chat server allows (set by tests/js_clients.rs). */
export const ALLOWED_PORT = Number(process.env.GATRIX_PAGE_PORT);
const CHROMIUM = process.env.GATRIX_CHROMIUM ?? "/usr/bin/chromium";

const serving = new Map();
const servers = new Set();
let browser = null;

// Registered once, at the top level: the file's last step, after every test.
after(async () => {
  if (browser) await browser.close();
  for (const server of servers) {
    server.close();
    // Chromium keeps its connections alive; they must not hold the process.
    server.closeAllConnections();
  }
});

/**
 * Serves the page on 127.0.0.1:`port` (0: a free port, a new server each
 * call; another port: one server per port for the whole file); resolves
 * with its origin.
 */
export function servePage(port) {
  if (port === 0) return listen(0);
  if (!serving.has(port)) serving.set(port, listen(port));
  return serving.get(port);
}

async function listen(port) {
  const server = createServer(async (req, res) => {
    const file = FILES[new URL(req.url, "http://x").pathname];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": file[0], "Cache-Control": "no-store" });
    res.end(await readFile(file[1]));
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  servers.add(server);
  return `http://127.0.0.1:${server.address().port}`;
}

/** A fresh page (its own browser context) at `origin`, the chat server set for user `sub`. */
export async function openPage(origin, sub) {
  if (!browser) {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60000,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        // Loopback only: no host name resolves (the test uses IP literals).
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
      ],
    });
  }
  const context = await browser.newContext();
  const page = await context.newPage();
  const log = [];
  page.on("console", (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`page error: ${e.message}`));
  page.log = log;
  await page.goto(`${origin}/`);
  assert.equal(await page.evaluate(() => location.origin), origin);
  assert.notEqual(origin, new URL(API).origin, "the page must be cross-origin");
  await page.evaluate(([api, tok]) => gatrix.use(api, tok), [API, token(sub)]);
  return page;
}

/**
 * The chat flow from the page: create a channel (REST), connect and join
 * over Socket.IO with `ioOptions`, send, read history (REST), edit and
 * delete (REST), each step's result checked here. Returns the transports
 * seen, for the caller's own checks.
 */
export async function chatFlow(page, ioOptions) {
  const step = async (name, fn, arg) => {
    try {
      return await page.evaluate(fn, arg);
    } catch (e) {
      throw new Error(`${name}: ${e.message}\npage log:\n  ${page.log.join("\n  ")}`);
    }
  };
  const name = uid("browser");
  const created = await step("create", (n) => gatrix.rest("POST", "/api/v1/channels", { name: n, type: "public" }), name);
  assert.equal(created.status, 201, JSON.stringify(created));
  const channelId = created.body.channel.id;
  assert.equal(created.body.channel.name, name);

  const connectedOn = await step("connect", (o) => gatrix.connect(o), ioOptions);
  const joined = await step("join", (c) => gatrix.call("join_channel", { channelId: c }), channelId);
  assert.equal(joined.ok, true, JSON.stringify(joined));
  assert.equal(joined.channel.id, channelId);
  assert.equal(joined.lastSeq, 0);

  const sent = await step("send", (c) => gatrix.call("send_message", { channelId: c, content: "hello from a page" }), channelId);
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const id = sent.message.id;
  assert.equal(sent.message.seq, 1);
  const [delivered] = await step("message event", () => gatrix.next("message"));
  assert.equal(delivered.id, id);
  assert.equal(delivered.content, "hello from a page");

  const history = await step("history", (c) => gatrix.rest("GET", `/api/v1/messages/channel/${c}`), channelId);
  assert.equal(history.status, 200, JSON.stringify(history));
  assert.deepEqual(
    history.body.messages.map((m) => [m.id, m.seq, m.content]),
    [[id, 1, "hello from a page"]],
  );

  const edited = await step("edit", (m) => gatrix.rest("PUT", `/api/v1/messages/${m}`, { content: "edited in a page" }), id);
  assert.equal(edited.status, 200, JSON.stringify(edited));
  assert.equal(edited.body.message.content, "edited in a page");
  assert.ok(edited.body.message.editedAt, JSON.stringify(edited));
  const [updated] = await step("message_updated event", () => gatrix.next("message_updated"));
  assert.equal(updated.id, id);
  assert.equal(updated.content, "edited in a page");

  const deleted = await step("delete", (m) => gatrix.rest("DELETE", `/api/v1/messages/${m}`), id);
  assert.equal(deleted.status, 204, JSON.stringify(deleted));
  const [gone] = await step("message_deleted event", () => gatrix.next("message_deleted"));
  assert.deepEqual(gone, { channelId, id, seq: 1 });
  const afterDelete = await step("history after delete", (c) => gatrix.rest("GET", `/api/v1/messages/channel/${c}`), channelId);
  assert.deepEqual(afterDelete.body.messages, []);

  // An error answer is readable too: its status and its JSON body.
  const missing = await step("404", () => gatrix.rest("GET", "/api/v1/channels/no-such-channel"));
  assert.equal(missing.status, 404, JSON.stringify(missing));
  assert.equal(missing.body.error.code, "NOT_FOUND");

  return { connectedOn, channelId };
}
