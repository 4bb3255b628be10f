// In-memory comparison server for gatrix-chat-bench: the subset of the
// gatrix-chat wire contract (docs/protocol.md) that the benchmark uses, on
// Node.js's http server + Socket.IO 4.8 (WebSocket transport only).
//
// - Socket.IO CONNECT with {"token":"<jwt>"}: HS256-verified with
//   JWT_SECRET (refused with 44 otherwise); `sub` is the user id.
// - POST /api/v1/channels (Bearer JWT) -> 201 {"channel":{"id":...}}.
// - join_channel -> joins the room, ack {"ok":true,"lastSeq":N}.
// - send_message -> next per-channel seq, `message` to the room (sender
//   included, encoded once by the adapter), ack {"ok":true,"message":{...}}.
// Nothing is persisted.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const jwt = require("jsonwebtoken");

const SECRET = process.env.JWT_SECRET;
if (!SECRET) {
  console.error("JWT_SECRET must be set");
  process.exit(1);
}
const PORT = Number(process.env.PORT || 3001);

// channel id -> last seq
const channels = new Map();
let nextChannel = 1;
let nextMessage = 1;

function userOf(token) {
  try {
    const claims = jwt.verify(token, SECRET, { algorithms: ["HS256"] });
    return typeof claims.sub === "string" ? claims.sub : null;
  } catch {
    return null;
  }
}

function json(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(data),
  });
  res.end(data);
}

const httpServer = http.createServer((req, res) => {
  // Socket.IO's own requests (/socket.io/) are answered by its listener.
  if (req.url.startsWith("/socket.io/")) return;
  if (req.method !== "POST" || req.url !== "/api/v1/channels") {
    return json(res, 404, { error: { code: "NOT_FOUND", message: "not found" } });
  }
  const auth = req.headers.authorization || "";
  const user = auth.startsWith("Bearer ") ? userOf(auth.slice(7)) : null;
  if (!user) {
    return json(res, 401, { error: { code: "UNAUTHORIZED", message: "bad token" } });
  }
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    let parsed;
    try {
      parsed = JSON.parse(body);
    } catch {
      return json(res, 400, { error: { code: "BAD_REQUEST", message: "bad JSON" } });
    }
    const id = String(nextChannel++);
    channels.set(id, 0);
    json(res, 201, {
      channel: {
        id,
        name: parsed.name ?? null,
        type: parsed.type ?? "public",
        createdBy: user,
        createdAt: new Date().toISOString(),
        lastSeq: 0,
      },
    });
  });
});

const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
});

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  const user = typeof token === "string" ? userOf(token) : null;
  if (!user) return next(new Error("UNAUTHORIZED"));
  socket.data.userId = user;
  next();
});

io.on("connection", (socket) => {
  socket.on("join_channel", (req, ack) => {
    if (typeof ack !== "function") return;
    const channelId = req && String(req.channelId);
    const last = channels.get(channelId);
    if (last === undefined) {
      return ack({ ok: false, error: { code: "NOT_FOUND", message: "no such channel" } });
    }
    socket.join(channelId);
    ack({ ok: true, lastSeq: last });
  });

  socket.on("send_message", (req, ack) => {
    const channelId = req && String(req.channelId);
    const last = channels.get(channelId);
    if (last === undefined) {
      if (typeof ack === "function") {
        ack({ ok: false, error: { code: "NOT_FOUND", message: "no such channel" } });
      }
      return;
    }
    const seq = last + 1;
    channels.set(channelId, seq);
    const message = {
      id: String(nextMessage++),
      channelId,
      seq,
      userId: socket.data.userId,
      content: String(req.content),
      createdAt: new Date().toISOString(),
    };
    // The whole room, sender included; the adapter encodes once.
    io.to(channelId).emit("message", message);
    if (typeof ack === "function") ack({ ok: true, message });
  });
});

httpServer.listen(PORT, "127.0.0.1", () => {
  console.error(`Node.js Socket.IO comparison server on 127.0.0.1:${PORT}`);
});
