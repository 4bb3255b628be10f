"""gatrix-chat driven by the python-socketio client over the WebSocket transport.

Run by tests/python_clients.rs with GATRIX_URL and JWT_SECRET set; exits
non-zero (with the reason) on the first failed check.
"""

import os
import queue
import re
import sys
import time
import uuid

import jwt
import socketio

URL = os.environ["GATRIX_URL"]
SECRET = os.environ["JWT_SECRET"]
WAIT_SECS = 10
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def token(sub, secret=SECRET):
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, secret, algorithm="HS256")


def check(condition, what):
    if not condition:
        raise AssertionError(what)


class Client:
    """One connection, with every `message` event it receives in a queue."""

    def __init__(self, sub, tok=None):
        self.sub = sub
        self.messages = queue.Queue()
        self.connect_errors = []
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("message", self.messages.put)
        self.sio.on("connect_error", self.connect_errors.append)
        self.sio.connect(
            URL,
            auth={"token": tok if tok is not None else token(sub)},
            transports=["websocket"],
            wait_timeout=WAIT_SECS,
        )

    def call(self, event, payload):
        return self.sio.call(event, payload, timeout=WAIT_SECS)

    def next_message(self):
        try:
            return self.messages.get(timeout=WAIT_SECS)
        except queue.Empty:
            raise AssertionError(f"{self.sub}: no message within {WAIT_SECS} s") from None

    def close(self):
        self.sio.disconnect()


def connect_join_send_receive(clients):
    channel_id = uid("py-chan")
    alice = Client(uid("alice"))
    clients.append(alice)
    # Several receivers, so that some land on the other shard.
    receivers = [Client(uid(f"bob{i}")) for i in range(4)]
    clients.extend(receivers)

    ack = alice.call("join_channel", {"channelId": channel_id})
    check(ack.get("ok") is True, f"join ack: {ack}")
    check(ack["channel"]["id"] == channel_id, f"join ack channel: {ack}")
    check(ack["lastSeq"] == 0, f"join ack lastSeq: {ack}")
    for receiver in receivers:
        check(receiver.call("join_channel", {"channelId": channel_id}).get("ok") is True, "join")

    for seq, content in enumerate(["hello from python", "second", "third"], start=1):
        ack = alice.call("send_message", {"channelId": channel_id, "content": content})
        check(ack.get("ok") is True, f"send ack: {ack}")
        message = ack["message"]
        check(isinstance(message["id"], str) and message["id"], f"message id: {message}")
        check(message["seq"] == seq, f"expected seq {seq}: {message}")
        check(message["userId"] == alice.sub, f"userId: {message}")
        check(message["content"] == content, f"content: {message}")
        check(message["type"] == "text", f"type: {message}")
        check(RFC3339_MS.match(message["createdAt"]), f"createdAt: {message}")
        for client in [alice, *receivers]:
            received = client.next_message()
            check(received == message, f"{client.sub} received {received}, acked {message}")

    ack = alice.call("send_message", {"channelId": uid("not-joined"), "content": "hi"})
    check(ack.get("ok") is False and ack["error"]["code"] == "FORBIDDEN", f"forbidden: {ack}")


def forged_token_is_refused():
    errors = []
    sio = socketio.Client(reconnection=False)
    sio.on("connect_error", errors.append)
    try:
        sio.connect(
            URL,
            auth={"token": token("mallory", secret="not-the-server-secret-but-just-as-long")},
            transports=["websocket"],
            wait_timeout=WAIT_SECS,
        )
    except socketio.exceptions.ConnectionError:
        expected = {"message": "unauthorized", "data": {"code": "UNAUTHORIZED"}}
        check(errors == [expected], f"connect_error: {errors}")
        return
    sio.disconnect()
    raise AssertionError("a forged token was accepted")


def main():
    clients = []
    try:
        connect_join_send_receive(clients)
        forged_token_is_refused()
    finally:
        for client in clients:
            client.close()
    print("python-socketio: connect, join, send, receive, refusal: ok")


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - report any failure as the exit status
        print(f"python-socketio client test FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
