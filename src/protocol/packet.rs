//! The wire forms: Engine.IO v4 packets and the Socket.IO v5 packets inside
//! them, parsed from and encoded to WebSocket text frames.
//!
//! Over WebSocket, one Engine.IO packet is one frame: a text frame is a type
//! digit then data (`4` = message); a binary frame is a message carrying one
//! attachment as-is. A Socket.IO packet is
//! `<type>[<attachments>-][<nsp>,][<ack id>][JSON]`.
//!
//! Validation follows the reference server (socket.io-parser): anything that
//! does not fit is a [`PacketError`] and the caller closes the connection.

use serde_json::Value;

mod surrogates;

/// Engine.IO packet types as sent in the first byte of a text frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineType {
    Open,
    Close,
    Ping,
    Pong,
    Message,
    Upgrade,
    Noop,
}

impl EngineType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }
}

/// Splits an Engine.IO text frame into its type and data.
pub fn parse_engine(frame: &str) -> Result<(EngineType, &str), PacketError> {
    let first = *frame.as_bytes().first().ok_or(PacketError::Empty)?;
    let kind = EngineType::from_byte(first).ok_or(PacketError::UnknownType)?;
    Ok((kind, &frame[1..]))
}

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

impl PacketType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// A decoded Socket.IO packet (the part after the Engine.IO `4`).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketType,
    /// Namespace, `/` when the packet names none.
    pub nsp: String,
    /// Number of binary frames that follow (binary packets only).
    pub attachments: usize,
    pub ack_id: Option<u64>,
    pub data: Option<Value>,
}

/// Why a frame was refused. Every variant closes the connection, as the
/// reference server does for a packet it cannot decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type")]
    UnknownType,
    #[error("illegal attachments count")]
    BadAttachments,
    #[error("illegal ack id")]
    BadAckId,
    #[error("invalid JSON payload")]
    BadJson,
    #[error("payload of the wrong shape for its packet type")]
    BadPayload,
    #[error("packet type not allowed from a client")]
    NotFromClient,
}

/// Most attachments one packet may announce; the reference has no fixed
/// bound but its total size is capped by maxPayload, so a huge count is abuse.
pub const MAX_ATTACHMENTS: usize = 64;

/// Event names a client may not emit (they are local to the reference
/// client/server and would be ambiguous on the wire).
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Decodes a Socket.IO packet sent by a client.
pub fn parse_packet(s: &str) -> Result<Packet, PacketError> {
    let bytes = s.as_bytes();
    let kind = PacketType::from_byte(*bytes.first().ok_or(PacketError::Empty)?)
        .ok_or(PacketError::UnknownType)?;
    let mut i = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i >= bytes.len() || bytes[i] != b'-' {
            return Err(PacketError::BadAttachments);
        }
        attachments = s[start..i]
            .parse::<usize>()
            .map_err(|_| PacketError::BadAttachments)?;
        if attachments > MAX_ATTACHMENTS {
            return Err(PacketError::BadAttachments);
        }
        i += 1;
    }

    let mut nsp = "/";
    if bytes.get(i) == Some(&b'/') {
        let start = i;
        while i < bytes.len() && bytes[i] != b',' {
            i += 1;
        }
        nsp = &s[start..i];
        if i < bytes.len() {
            i += 1; // the comma
        }
    }

    let mut ack_id = None;
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        let id = s[start..i]
            .parse::<u64>()
            .map_err(|_| PacketError::BadAckId)?;
        ack_id = Some(id);
    }

    let data = if i < bytes.len() {
        // A lone surrogate escape is U+FFFD, as JSON.parse would not refuse it.
        let json = surrogates::replace_lone(&s[i..]);
        Some(serde_json::from_str::<Value>(&json).map_err(|_| PacketError::BadJson)?)
    } else {
        None
    };

    let packet = Packet {
        kind,
        nsp: nsp.to_owned(),
        attachments,
        ack_id,
        data,
    };
    validate_from_client(&packet)?;
    Ok(packet)
}

fn validate_from_client(p: &Packet) -> Result<(), PacketError> {
    let ok = match p.kind {
        PacketType::Connect => matches!(p.data, None | Some(Value::Object(_))),
        PacketType::Disconnect => p.data.is_none(),
        PacketType::Event | PacketType::BinaryEvent => match &p.data {
            Some(Value::Array(a)) => match a.first() {
                Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
                Some(Value::Number(_)) => true,
                _ => false,
            },
            _ => false,
        },
        PacketType::Ack | PacketType::BinaryAck => {
            matches!(p.data, Some(Value::Array(_))) && p.ack_id.is_some()
        }
        PacketType::ConnectError => return Err(PacketError::NotFromClient),
    };
    if ok {
        Ok(())
    } else {
        Err(PacketError::BadPayload)
    }
}

/// Appends `<nsp>,` when the namespace is not the main one.
fn push_nsp(out: &mut String, nsp: &str) {
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
}

/// Engine.IO OPEN packet for a new session.
pub fn encode_open(
    sid: &str,
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: usize,
    can_upgrade: bool,
) -> String {
    // A long-polling session may upgrade to WebSocket; a WebSocket one
    // has nowhere to go.
    let upgrades = if can_upgrade {
        r#"["websocket"]"#
    } else {
        "[]"
    };
    format!(
        r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{ping_interval_ms},"pingTimeout":{ping_timeout_ms},"maxPayload":{max_payload}}}"#
    )
}

/// `40[nsp,]{"sid":…[,"pid":…]}`: the namespace CONNECT reply. Both ids are
/// our own URL-safe tokens, so they need no escaping.
pub fn encode_connect(nsp: &str, sid: &str, pid: Option<&str>) -> String {
    let mut out = String::with_capacity(64 + nsp.len());
    out.push_str("40");
    push_nsp(&mut out, nsp);
    out.push_str(r#"{"sid":""#);
    out.push_str(sid);
    if let Some(pid) = pid {
        // Connection state recovery: the private session id to present
        // again on reconnect.
        out.push_str(r#"","pid":""#);
        out.push_str(pid);
    }
    out.push_str(r#""}"#);
    out
}

/// `44[nsp,]{"message":…[,"data":…]}`: a refused namespace CONNECT, keys in
/// the reference server's order.
pub fn encode_connect_error(nsp: &str, message: &str, data: Option<&Value>) -> String {
    let mut out = String::from("44");
    push_nsp(&mut out, nsp);
    out.push_str(r#"{"message":"#);
    out.push_str(&Value::String(message.into()).to_string());
    if let Some(d) = data {
        out.push_str(r#","data":"#);
        out.push_str(&d.to_string());
    }
    out.push('}');
    out
}

/// `41[nsp,]`: the server disconnects one namespace socket.
pub fn encode_disconnect(nsp: &str) -> String {
    let mut out = String::from("41");
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    out
}

/// `42[nsp,][id]["event",<payload JSON>…]`. `args_json` is the JSON text of
/// the arguments after the event name, comma-separated, possibly empty: the
/// caller serialises once and the frame is built with one allocation.
pub fn encode_event(nsp: &str, ack_id: Option<u64>, event: &str, args_json: &str) -> String {
    let mut out = String::with_capacity(8 + nsp.len() + event.len() + args_json.len());
    out.push_str("42");
    push_nsp(&mut out, nsp);
    if let Some(id) = ack_id {
        out.push_str(&id.to_string());
    }
    out.push('[');
    // Event names are ours or echoed client strings: encode them properly.
    out.push_str(&Value::String(event.to_owned()).to_string());
    if !args_json.is_empty() {
        out.push(',');
        out.push_str(args_json);
    }
    out.push(']');
    out
}

/// `43[nsp,]<id>[<args>]`: an acknowledgement. `args_json` as in
/// [`encode_event`].
pub fn encode_ack(nsp: &str, ack_id: u64, args_json: &str) -> String {
    let mut out = String::with_capacity(8 + nsp.len() + args_json.len());
    out.push_str("43");
    push_nsp(&mut out, nsp);
    out.push_str(&ack_id.to_string());
    out.push('[');
    out.push_str(args_json);
    out.push(']');
    out
}

/// `45<n>-[nsp,][id]<array>` or `46…`: the header of a binary event or ack;
/// the `n` attachments follow as binary frames. `array` is the whole JSON
/// array (with `{"_placeholder":true,"num":i}` where attachments go).
pub fn encode_binary(
    kind: PacketType,
    nsp: &str,
    ack_id: Option<u64>,
    attachments: usize,
    array: &Value,
) -> String {
    let mut out = String::from(match kind {
        PacketType::BinaryAck => "46",
        _ => "45",
    });
    out.push_str(&attachments.to_string());
    out.push('-');
    push_nsp(&mut out, nsp);
    if let Some(id) = ack_id {
        out.push_str(&id.to_string());
    }
    out.push_str(&array.to_string());
    out
}

#[cfg(test)]
mod tests;
