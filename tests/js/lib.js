// Shared helpers for the socket.io-client scenario tests.
//
// The server is started by tests/js_clients.rs, which passes its address and
// secret in GATRIX_URL and JWT_SECRET (and the limits it configured in
// GATRIX_MAX_MESSAGE_LENGTH and GATRIX_TYPING_TIMEOUT_MS).

import { createHmac, randomUUID } from "node:crypto";
import { after } from "node:test";
import { io } from "socket.io-client";

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through tests/js_clients.rs (scripts/test)`);
  }
  return value;
}

export const URL = required("GATRIX_URL");
export const SECRET = required("JWT_SECRET");
export const MAX_MESSAGE_LENGTH = Number(process.env.GATRIX_MAX_MESSAGE_LENGTH ?? 4096);
export const TYPING_TIMEOUT_MS = Number(process.env.GATRIX_TYPING_TIMEOUT_MS ?? 5000);

/** How long any single expected event or ack may take. */
export const WAIT_MS = 5000;

/** RFC 3339 UTC with milliseconds, as the contract requires of createdAt. */
export const RFC3339_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export const nowSecs = () => Math.floor(Date.now() / 1000);
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fresh id, so that tests sharing one server never share users or channels. */
export const uid = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;

const HMAC = { HS256: "sha256", HS384: "sha384", HS512: "sha512" };

/** A compact JWT (HS256/384/512); `alg: "none"` yields an unsigned token. */
export function jwt(claims, { secret = SECRET, alg = "HS256" } = {}) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const input = `${part({ alg, typ: "JWT" })}.${part(claims)}`;
  if (alg === "none") return `${input}.`;
  if (!HMAC[alg]) throw new Error(`unsupported alg ${alg}`);
  return `${input}.${createHmac(HMAC[alg], secret).update(input).digest("base64url")}`;
}

/** A valid token for `sub` unless the options say otherwise. */
export function token(sub, { name, exp = nowSecs() + 3600, secret, alg } = {}) {
  const claims = { sub, exp };
  if (name !== undefined) claims.name = name;
  return jwt(claims, { secret, alg });
}

// Every socket opened by a test file, closed when the file's tests end so
// that the node process can exit.
const sockets = new Set();
after(() => {
  for (const socket of sockets) socket.disconnect();
});

/**
 * Records every server event of a socket from the moment it is created, so a
 * test can wait for an event that may already have arrived.
 */
class Inbox {
  constructor(socket) {
    this.events = [];
    this.waiters = new Set();
    socket.onAny((name, ...args) => {
      this.events.push({ name, data: args[0], args });
      for (const wake of this.waiters) wake();
    });
  }

  /** Takes the first unconsumed `name` event matching `pred`; resolves with its first argument. */
  async next(name, pred = () => true, timeoutMs = WAIT_MS) {
    return (await this.nextEvent(name, pred, timeoutMs)).data;
  }

  /**
   * Like `next`, but resolves with the whole event `{name, data, args}`: for
   * `message`, `args` is `[message, offset]`.
   */
  nextEvent(name, pred = () => true, timeoutMs = WAIT_MS) {
    return new Promise((resolve, reject) => {
      const tryTake = () => {
        const at = this.events.findIndex((e) => e.name === name && pred(e.data));
        if (at < 0) return false;
        const [event] = this.events.splice(at, 1);
        clearTimeout(timer);
        this.waiters.delete(tryTake);
        resolve(event);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(tryTake);
        const seen = this.events.map((e) => `${e.name} ${JSON.stringify(e.data)}`).join("\n  ");
        reject(new Error(`no "${name}" event matching ${pred} within ${timeoutMs} ms; unconsumed:\n  ${seen}`));
      }, timeoutMs);
      if (!tryTake()) this.waiters.add(tryTake);
    });
  }

  /** Takes `count` matching events, in arrival order. */
  async take(name, count, pred = () => true, timeoutMs = WAIT_MS) {
    return (await this.takeEvents(name, count, pred, timeoutMs)).map((e) => e.data);
  }

  /** Takes `count` matching events, in arrival order, as `{name, data, args}`. */
  async takeEvents(name, count, pred = () => true, timeoutMs = WAIT_MS) {
    const taken = [];
    for (let i = 0; i < count; i++) taken.push(await this.nextEvent(name, pred, timeoutMs));
    return taken;
  }

  /** The unconsumed `name` events matching `pred`, left in place. */
  peek(name, pred = () => true) {
    return this.events.filter((e) => e.name === name && pred(e.data)).map((e) => e.data);
  }
}

function open(opts) {
  // `defaultTransports: true` keeps socket.io-client's own transports
  // (long-polling first, then the upgrade); the other tests use WebSocket.
  // `url` picks another server than GATRIX_URL (an instance of a cluster).
  const { nsp = "", url = URL, token: tok, defaultTransports = false, ...rest } = opts;
  const socket = io(url + nsp, {
    ...(defaultTransports ? {} : { transports: ["websocket"] }),
    reconnection: false,
    forceNew: true,
    timeout: WAIT_MS,
    auth: tok === undefined ? {} : { token: tok },
    ...rest,
  });
  socket.inbox = new Inbox(socket);
  // The transport the Engine.IO session opened on (it may upgrade later).
  socket.io.once("open", () => {
    socket.openedOn = socket.io.engine.transport.name;
  });
  sockets.add(socket);
  return socket;
}

/**
 * Connects as `sub` (by default with `auth: {token}`); resolves with the
 * connected socket, whose `inbox` holds every event received.
 */
export function connect(sub, opts = {}) {
  const socket = open({ token: sub === undefined ? undefined : token(sub), ...opts });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => {
      reject(new Error(`connect as ${sub} refused: ${err.message} ${JSON.stringify(err.data)}`));
    });
  });
}

/** Resolves with the connect_error of a connection that must be refused. */
export function connectRefused(opts) {
  const socket = open(opts);
  return new Promise((resolve, reject) => {
    socket.once("connect", () => reject(new Error("connected, but the server should have refused")));
    socket.once("connect_error", (err) => resolve(err));
  });
}

/** Emits with an ack and resolves with the ack's one payload object. */
export function call(socket, event, payload) {
  return socket.timeout(WAIT_MS).emitWithAck(event, payload);
}

/**
 * A REST call as `sub` (or without a token when `sub` is undefined):
 * resolves with `{status, body}`, the body parsed as JSON when it is JSON.
 * `base` picks another server than GATRIX_URL.
 */
export async function rest(method, path, sub, body, base = URL) {
  const headers = {};
  if (sub !== undefined) headers.Authorization = `Bearer ${token(sub)}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const text = await response.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: left as text
  }
  return { status: response.status, body: parsed };
}

/**
 * Creates a channel through `POST /api/v1/channels` as `owner`; resolves
 * with its record (`{id, name, type, ownerId, …}`).
 */
export async function createChannel(
  owner,
  { name = uid("chan"), type = "public", members, description } = {},
) {
  const body = { name, type };
  if (members !== undefined) body.members = members;
  if (description !== undefined) body.description = description;
  const { status, body: answer } = await rest("POST", "/api/v1/channels", owner, body);
  if (status !== 201 || typeof answer?.channel?.id !== "string") {
    throw new Error(`POST /api/v1/channels ${JSON.stringify(body)} as ${owner}: ${status} ${JSON.stringify(answer)}`);
  }
  return answer.channel;
}

/** A fresh public channel (owned by a fresh user unless given); resolves with its id. */
export async function newChannel(owner = uid("owner"), opts = {}) {
  return (await createChannel(owner, opts)).id;
}

/** Joins and asserts the ack says ok. */
export async function join(socket, channelId) {
  const ack = await call(socket, "join_channel", { channelId });
  if (!ack?.ok) throw new Error(`join_channel ${channelId} failed: ${JSON.stringify(ack)}`);
  if (ack.channel?.id !== channelId || !Number.isInteger(ack.lastSeq)) {
    throw new Error(`join_channel ${channelId}: bad ack ${JSON.stringify(ack)}`);
  }
  return ack;
}

/** Sends and asserts the ack says ok; resolves with the stored message. */
export async function send(socket, channelId, content, extra = {}) {
  const ack = await call(socket, "send_message", { channelId, content, ...extra });
  if (!ack?.ok) throw new Error(`send_message to ${channelId} failed: ${JSON.stringify(ack)}`);
  return ack.message;
}

/** Closes a socket and waits until the client has seen the disconnect. */
export function disconnect(socket) {
  return new Promise((resolve) => {
    if (!socket.connected) return resolve();
    socket.once("disconnect", () => resolve());
    socket.disconnect();
  });
}
