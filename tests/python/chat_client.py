"""gatrix-chat driven by the python-socketio client over the WebSocket
transport, and over HTTP long-polling (`transports=["polling"]`).

Run by tests/python_clients.rs with GATRIX_URL and JWT_SECRET set; exits
non-zero (with the reason) on the first failed check.
"""

import json
import os
import queue
import re
import sys
import time
import urllib.error
import urllib.request
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


def rest(method, path, sub, body=None):
    """A REST call as `sub`; returns (status, parsed JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(URL + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token(sub)}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=WAIT_SECS) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def create_channel(owner, kind="public", members=None):
    """Creates a channel through POST /api/v1/channels; returns its record."""
    body = {"name": uid("py-chan"), "type": kind}
    if members is not None:
        body["members"] = members
    status, answer = rest("POST", "/api/v1/channels", owner, body)
    check(status == 201, f"POST /api/v1/channels {body}: {status} {answer}")
    channel = answer["channel"]
    check(isinstance(channel.get("id"), str) and channel["id"], f"channel id: {answer}")
    check(channel["name"] == body["name"] and channel["type"] == kind, f"channel: {answer}")
    check(channel["ownerId"] == owner, f"channel owner: {answer}")
    return channel


class Client:
    """One connection, with every `message` event it receives in a queue,
    as (message, offset): the server adds the recovery offset as a last,
    string argument."""

    def __init__(self, sub, tok=None, transports=("websocket",)):
        self.sub = sub
        self.messages = queue.Queue()
        self.connect_errors = []
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("message", self.on_message)
        self.sio.on("connect_error", self.connect_errors.append)
        self.sio.connect(
            URL,
            auth={"token": tok if tok is not None else token(sub)},
            transports=list(transports),
            wait_timeout=WAIT_SECS,
        )

    def on_message(self, data, offset=None):
        self.messages.put((data, offset))

    def call(self, event, payload):
        return self.sio.call(event, payload, timeout=WAIT_SECS)

    def next_message(self):
        """The next message; checks that it came with a string offset."""
        try:
            message, offset = self.messages.get(timeout=WAIT_SECS)
        except queue.Empty:
            raise AssertionError(f"{self.sub}: no message within {WAIT_SECS} s") from None
        check(isinstance(offset, str) and offset, f"{self.sub}: offset {offset!r} of {message}")
        return message

    def close(self):
        self.sio.disconnect()


def connect_join_send_receive(clients):
    owner = uid("owner")
    channel = create_channel(owner)
    channel_id = channel["id"]
    alice = Client(uid("alice"))
    clients.append(alice)
    # Several receivers, so that some land on the other shard.
    receivers = [Client(uid(f"bob{i}")) for i in range(4)]
    clients.extend(receivers)

    ack = alice.call("join_channel", {"channelId": channel_id})
    check(ack.get("ok") is True, f"join ack: {ack}")
    check(ack["channel"]["id"] == channel_id, f"join ack channel: {ack}")
    for key in ("name", "type", "ownerId"):
        check(ack["channel"][key] == channel[key], f"join ack channel {key}: {ack}")
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

    not_joined = create_channel(owner)["id"]
    ack = alice.call("send_message", {"channelId": not_joined, "content": "hi"})
    check(ack.get("ok") is False and ack["error"]["code"] == "FORBIDDEN", f"forbidden: {ack}")

    ack = alice.call("join_channel", {"channelId": uid("no-such-chan")})
    check(ack.get("ok") is False and ack["error"]["code"] == "NOT_FOUND", f"not found: {ack}")

    # History over REST holds what was acked, with the same JSON.
    status, page = rest("GET", f"/api/v1/messages/channel/{channel_id}?after=0", alice.sub)
    check(status == 200, f"history: {status} {page}")
    check([m["content"] for m in page["messages"]] == ["hello from python", "second", "third"],
          f"history: {page}")
    check(page["hasMore"] is False, f"history hasMore: {page}")


def polling_chats_with_websocket(clients):
    """A polling-only client and WebSocket clients in one channel: sends
    both ways arrive, acked, in order."""
    channel_id = create_channel(uid("owner"))["id"]
    alice = Client(uid("alice"), transports=["polling"])
    clients.append(alice)
    check(alice.sio.transport() == "polling", f"transport: {alice.sio.transport()}")
    receivers = [Client(uid(f"bob{i}")) for i in range(2)]
    clients.extend(receivers)
    for client in [alice, *receivers]:
        check(client.call("join_channel", {"channelId": channel_id}).get("ok") is True, "join")
    for sender, content in [(alice, "from polling"), (receivers[0], "from websocket"),
                            (alice, "polling again")]:
        ack = sender.call("send_message", {"channelId": channel_id, "content": content})
        check(ack.get("ok") is True, f"send ack: {ack}")
        for client in [alice, *receivers]:
            received = client.next_message()
            check(received == ack["message"], f"{client.sub} received {received}, acked {ack}")
    check(alice.sio.transport() == "polling", "still polling")


def private_channel_admits_members_only(clients):
    owner = uid("owner")
    member = Client(uid("member"))
    stranger = Client(uid("stranger"))
    clients.extend([member, stranger])
    channel_id = create_channel(owner, "private", [member.sub])["id"]
    ack = stranger.call("join_channel", {"channelId": channel_id})
    check(ack.get("ok") is False and ack["error"]["code"] == "FORBIDDEN", f"stranger: {ack}")
    ack = member.call("join_channel", {"channelId": channel_id})
    check(ack.get("ok") is True and ack["channel"]["type"] == "private", f"member: {ack}")


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
        expected = {
            "message": "unauthorized",
            "data": {"code": "UNAUTHORIZED", "reason": "TOKEN_INVALID"},
        }
        check(errors == [expected], f"connect_error: {errors}")
        return
    sio.disconnect()
    raise AssertionError("a forged token was accepted")


def main():
    clients = []
    try:
        connect_join_send_receive(clients)
        polling_chats_with_websocket(clients)
        private_channel_admits_members_only(clients)
        forged_token_is_refused()
    finally:
        for client in clients:
            client.close()
    print("python-socketio: create, connect, join, send, receive, history, polling, refusals: ok")


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - report any failure as the exit status
        print(f"python-socketio client test FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
