//! Codec tests: every packet form, refusals, and random input.
use super::*;
use serde_json::json;

#[test]
fn engine_types() {
    assert_eq!(parse_engine("3").unwrap(), (EngineType::Pong, ""));
    assert_eq!(parse_engine("2probe").unwrap(), (EngineType::Ping, "probe"));
    assert_eq!(
        parse_engine("42[\"a\"]").unwrap(),
        (EngineType::Message, "2[\"a\"]")
    );
    assert_eq!(parse_engine(""), Err(PacketError::Empty));
    assert_eq!(parse_engine("9"), Err(PacketError::UnknownType));
}

#[test]
fn connect_forms() {
    let p = parse_packet("0").unwrap();
    assert_eq!(
        (p.kind, p.nsp.as_str(), p.data),
        (PacketType::Connect, "/", None)
    );
    let p = parse_packet(r#"0{"token":"t"}"#).unwrap();
    assert_eq!(p.data, Some(json!({"token":"t"})));
    let p = parse_packet(r#"0/custom,{"token":"t"}"#).unwrap();
    assert_eq!(p.nsp, "/custom");
    let p = parse_packet("0/custom").unwrap();
    assert_eq!((p.nsp.as_str(), p.data), ("/custom", None));
    assert_eq!(parse_packet("0[1]"), Err(PacketError::BadPayload));
    assert_eq!(parse_packet("0\"s\""), Err(PacketError::BadPayload));
}

#[test]
fn events_and_acks() {
    let p = parse_packet(r#"2["send_message",{"channelId":"7","content":"hi"}]"#).unwrap();
    assert_eq!(p.kind, PacketType::Event);
    assert_eq!(p.ack_id, None);
    let p = parse_packet(r#"217["join_channel",{"channelId":"7"}]"#).unwrap();
    assert_eq!(p.ack_id, Some(17));
    let p = parse_packet(r#"2/admin,5["x"]"#).unwrap();
    assert_eq!((p.nsp.as_str(), p.ack_id), ("/admin", Some(5)));
    let p = parse_packet(r#"31[1,"a"]"#).unwrap();
    assert_eq!((p.kind, p.ack_id), (PacketType::Ack, Some(1)));
    let p = parse_packet("1").unwrap();
    assert_eq!(p.kind, PacketType::Disconnect);
}

#[test]
fn binary_header() {
    let p = parse_packet(r#"51-["up",{"_placeholder":true,"num":0}]"#).unwrap();
    assert_eq!((p.kind, p.attachments), (PacketType::BinaryEvent, 1));
    let p = parse_packet(r#"52-/custom,9["up",1,2]"#).unwrap();
    assert_eq!(
        (p.attachments, p.nsp.as_str(), p.ack_id),
        (2, "/custom", Some(9))
    );
    assert_eq!(
        parse_packet(r#"5-["up"]"#),
        Err(PacketError::BadAttachments)
    );
    assert_eq!(
        parse_packet(r#"51["up"]"#),
        Err(PacketError::BadAttachments)
    );
    assert_eq!(
        parse_packet(r#"5999-["up"]"#),
        Err(PacketError::BadAttachments)
    );
}

#[test]
fn malformed_packets_are_refused() {
    for bad in [
        "",
        "7",
        "2",
        "2{}",
        "2[]",
        r#"2["connect"]"#,
        r#"2[{"a":1}]"#,
        "2[\"a\"",
        r#"3["no id"]"#,
        r#"31{"a":1}"#,
        "1{}",
        r#"4{"message":"x"}"#,
        "299999999999999999999999[\"a\"]",
    ] {
        assert!(parse_packet(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn encoders() {
    assert_eq!(encode_connect("/", "abc", None), r#"40{"sid":"abc"}"#);
    assert_eq!(
        encode_connect("/custom", "abc", Some("p1")),
        r#"40/custom,{"sid":"abc","pid":"p1"}"#
    );
    assert_eq!(
        encode_connect_error("/x", "Invalid namespace", None),
        r#"44/x,{"message":"Invalid namespace"}"#
    );
    assert_eq!(
        encode_connect_error("/", "unauthorized", Some(&json!({"code": "UNAUTHORIZED"}))),
        r#"44{"message":"unauthorized","data":{"code":"UNAUTHORIZED"}}"#
    );
    assert_eq!(
        encode_event("/", None, "message", r#"{"a":1}"#),
        r#"42["message",{"a":1}]"#
    );
    assert_eq!(encode_event("/c", Some(3), "e", ""), r#"42/c,3["e"]"#);
    assert_eq!(
        encode_ack("/", 17, r#"{"ok":true}"#),
        r#"4317[{"ok":true}]"#
    );
    assert_eq!(encode_disconnect("/"), "41");
    let arr = json!(["up", {"_placeholder": true, "num": 0}]);
    assert_eq!(
        encode_binary(PacketType::BinaryEvent, "/", None, 1, &arr),
        r#"451-["up",{"_placeholder":true,"num":0}]"#
    );
    assert!(
        encode_open("s", 25000, 20000, 1000000, false).starts_with(r#"0{"sid":"s","upgrades":[]"#)
    );
    assert!(encode_open("s", 1, 1, 1, true).starts_with(r#"0{"sid":"s","upgrades":["websocket"]"#));
}

#[test]
fn round_trip_of_encoded_event() {
    let frame = encode_event("/", Some(4), "x\"y", r#"{"k":[1,2]}"#);
    let (kind, rest) = parse_engine(&frame).unwrap();
    assert_eq!(kind, EngineType::Message);
    let p = parse_packet(rest).unwrap();
    assert_eq!(p.ack_id, Some(4));
    assert_eq!(p.data, Some(json!(["x\"y", {"k": [1, 2]}])));
}

#[test]
fn random_input_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let alphabet = b"0123456789-/,[]{}\":abc_placeholder ";
    for _ in 0..200_000 {
        let len = rng.random_range(0..24);
        let s: String = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
            .collect();
        let _ = parse_engine(&s);
        let _ = parse_packet(&s);
    }
}
