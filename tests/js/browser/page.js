// Runs inside the browser page (served by harness.js from another origin
// than the chat server): REST with the page's own fetch(), Socket.IO with
// the socket.io-client bundle the page loaded. The tests drive it through
// page.evaluate(() => gatrix.…) and assert on what it returns.

window.gatrix = (() => {
  const WAIT_MS = 10000;
  let api = null;
  let token = null;
  let socket = null;
  const events = [];
  const waiters = new Set();

  /** Points the page at the chat server, as the user holding `tok`. */
  function use(url, tok) {
    api = url;
    token = tok;
  }

  /**
   * A REST call with fetch(): {status, body, retryAfter}, the body parsed
   * when it is JSON. A CORS refusal rejects (TypeError), as in any page.
   */
  async function rest(method, path, body, { auth = true } = {}) {
    const headers = {};
    if (auth) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(api + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(WAIT_MS),
    });
    const text = await response.text();
    return {
      status: response.status,
      body: text ? JSON.parse(text) : null,
      retryAfter: response.headers.get("retry-after"),
    };
  }

  /** Like rest(), but resolves with the error's name and message when fetch() rejects. */
  async function restOutcome(method, path, body, opts) {
    try {
      return { ok: true, answer: await rest(method, path, body, opts) };
    } catch (e) {
      return { ok: false, name: e.name, message: e.message };
    }
  }

  /**
   * Opens the Socket.IO connection with `opts` (e.g. {transports:["websocket"]},
   * or {} for the client's defaults); resolves, once connected, with the
   * transport the Engine.IO session opened on, rejects with the
   * connect_error. (The transport at `connect` itself may already be the
   * upgrade's: the client probes WebSocket as soon as the session opens,
   * and on a loaded machine the probe can finish before the CONNECT reply
   * arrives.)
   */
  function connect(opts) {
    socket = io(api, { ...opts, auth: { token }, reconnection: false, forceNew: true, timeout: WAIT_MS });
    let openedOn = null;
    socket.io.once("open", () => {
      openedOn = socket.io.engine.transport.name;
    });
    socket.onAny((name, ...args) => {
      events.push({ name, args });
      for (const wake of waiters) wake();
    });
    return new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(openedOn ?? socket.io.engine.transport.name));
      socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
    });
  }

  /** Resolves with the transport once the connection has upgraded to WebSocket. */
  function upgraded() {
    const engine = socket.io.engine;
    if (engine.transport.name === "websocket") return Promise.resolve("websocket");
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no upgrade within ${WAIT_MS} ms`)), WAIT_MS);
      engine.once("upgrade", (transport) => {
        clearTimeout(timer);
        resolve(transport.name);
      });
    });
  }

  /** Emits with an ack; resolves with the ack's payload. */
  function call(event, payload) {
    return socket.timeout(WAIT_MS).emitWithAck(event, payload);
  }

  /** Takes the first unconsumed `name` event; resolves with its arguments. */
  function next(name) {
    return new Promise((resolve, reject) => {
      const take = () => {
        const at = events.findIndex((e) => e.name === name);
        if (at < 0) return false;
        const [event] = events.splice(at, 1);
        clearTimeout(timer);
        waiters.delete(take);
        resolve(event.args);
        return true;
      };
      const timer = setTimeout(() => {
        waiters.delete(take);
        reject(new Error(`no "${name}" event within ${WAIT_MS} ms; got ${events.map((e) => e.name)}`));
      }, WAIT_MS);
      if (!take()) waiters.add(take);
    });
  }

  function close() {
    if (socket) socket.disconnect();
  }

  return { use, rest, restOutcome, connect, upgraded, call, next, close };
})();
