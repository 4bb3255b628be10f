// WebSocket compression (permessage-deflate, RFC 7692) with the real
// socket.io-client: in Node it offers the extension by default (engine.io-
// client's `perMessageDeflate: {threshold: 1024}`, through `ws`), so the
// server negotiates it; `perMessageDeflate: false` offers nothing. A
// broadcast reaches both kinds of client the same, and the compressing one
// reads fewer bytes off the wire for it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { MAX_MESSAGE_LENGTH, connect, join, newChannel, send, uid } from "./lib.js";

/** The client's `ws` socket under the Engine.IO WebSocket transport. */
const wsOf = (socket) => socket.io.engine.transport.ws;

describe("permessage-deflate", () => {
  test("the default client negotiates it; with perMessageDeflate false none is", async () => {
    const deflating = await connect(uid("alice"));
    const plain = await connect(uid("bob"), { perMessageDeflate: false });
    // `ws` names the negotiated extensions, and keeps the accepted
    // parameters of the server's answer.
    assert.equal(wsOf(deflating).extensions, "permessage-deflate");
    const { params } = wsOf(deflating)._extensions["permessage-deflate"];
    assert.equal(params.server_no_context_takeover, true);
    assert.equal(params.client_no_context_takeover, true);
    assert.equal(wsOf(plain).extensions, "");
  });

  test("a broadcast reaches a compressing and a plain subscriber alike, in fewer bytes for the first", async () => {
    const channelId = await newChannel();
    const sender = await connect(uid("sender"));
    const deflating = await connect(uid("alice"));
    const plain = await connect(uid("bob"), { perMessageDeflate: false });
    for (const s of [sender, deflating, plain]) await join(s, channelId);

    // Chat text as long as the server allows: its frame is above the
    // 1024-byte threshold, both from the client and from the server.
    const line = "The quick brown fox jumps over the lazy dog. ";
    const content = line.repeat(Math.ceil(MAX_MESSAGE_LENGTH / line.length)).slice(0, MAX_MESSAGE_LENGTH - 2);
    assert.ok(content.length >= 990, `content of ${content.length} bytes`);

    const count = 5;
    const read = (s) => wsOf(s)._socket.bytesRead;
    const before = [read(deflating), read(plain)];
    const sent = [];
    for (let i = 0; i < count; i++) sent.push(await send(sender, channelId, `${i} ${content}`));
    const got = await Promise.all(
      [deflating, plain].map((s) => s.inbox.takeEvents("message", count, (m) => m.channelId === channelId)),
    );
    for (const events of got) {
      assert.deepEqual(
        events.map((e) => e.args),
        sent.map((m, i) => [m, got[1][i].args[1]]),
      );
      assert.deepEqual(
        events.map((e) => e.data.content),
        sent.map((_, i) => `${i} ${content}`),
      );
    }
    const [deflated, plainBytes] = [read(deflating) - before[0], read(plain) - before[1]];
    assert.ok(
      deflated * 2 < plainBytes,
      `the compressing client read ${deflated} bytes, the plain one ${plainBytes}`,
    );
  });
});
