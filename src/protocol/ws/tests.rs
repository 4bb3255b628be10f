use super::*;

/// A client frame: masked, with the given first byte (FIN | RSV | opcode).
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    masked(b0, payload, [0x37, 0xfa, 0x21, 0x3d])
}

/// A client frame masked with `mask` (also used by the wsio tests).
pub(crate) fn masked(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![b0];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Decodes everything in `bytes`, as owned messages.
fn decode_all(dec: &mut Decoder, bytes: &[u8]) -> Result<Vec<String>, WsError> {
    let mut buf = bytes.to_vec();
    let mut at = 0;
    let mut out = Vec::new();
    while let Some((msg, n)) = dec.next(&mut buf[at..])? {
        if let Some(m) = msg {
            out.push(match m {
                Msg::Text(t) => format!("text:{t}"),
                Msg::Binary(b) => format!("bin:{}", b.len()),
                Msg::Ping(p) => format!("ping:{}", String::from_utf8_lossy(p)),
                Msg::Pong => "pong".into(),
                Msg::Close(c) => format!("close:{c:?}"),
            });
        }
        at += n;
    }
    assert_eq!(at, buf.len(), "everything consumed");
    Ok(out)
}

#[test]
fn text_binary_and_every_length_form() {
    let mut dec = Decoder::new(1 << 20);
    let mut bytes = client_frame(0x81, b"42[\"hi\"]");
    bytes.extend(client_frame(0x82, &[7u8; 200]));
    bytes.extend(client_frame(0x82, &vec![1u8; 70_000]));
    let long = "é".repeat(40);
    bytes.extend(client_frame(0x81, long.as_bytes()));
    assert_eq!(
        decode_all(&mut dec, &bytes).unwrap(),
        vec![
            "text:42[\"hi\"]".to_string(),
            "bin:200".into(),
            "bin:70000".into(),
            format!("text:{long}")
        ]
    );
}

#[test]
fn unmasking_handles_every_tail_length() {
    for len in 0..40 {
        let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let mut frame = client_frame(0x81, &payload);
        let total = frame.len();
        let mut dec = Decoder::new(1000);
        let (msg, n) = dec.next(&mut frame).unwrap().unwrap();
        assert_eq!(n, total);
        assert_eq!(
            msg,
            Some(Msg::Text(Cow::Borrowed(
                std::str::from_utf8(&payload).unwrap()
            )))
        );
    }
}

#[test]
fn an_incomplete_frame_consumes_nothing_at_every_split() {
    let frame = client_frame(0x81, &[b'x'; 300]);
    for cut in 0..frame.len() {
        let mut dec = Decoder::new(1000);
        let mut part = frame[..cut].to_vec();
        assert_eq!(dec.next(&mut part), Ok(None), "cut at {cut}");
    }
    assert_eq!(Decoder::frame_len(&frame[..4]), None);
    assert_eq!(Decoder::frame_len(&frame[..8]), Some(frame.len()));
}

#[test]
fn fragments_assemble_with_control_frames_between() {
    let mut dec = Decoder::new(1000);
    let mut bytes = client_frame(0x01, "hé".as_bytes()); // text, not FIN
    bytes.extend(client_frame(0x89, b"p1")); // ping between fragments
    bytes.extend(client_frame(0x00, b"llo ")); // continuation
    bytes.extend(client_frame(0x80, "wörld".as_bytes())); // final continuation
    bytes.extend(client_frame(0x8A, b"")); // pong
    bytes.extend(client_frame(0x88, &[0x03, 0xE8, b'b', b'y', b'e']));
    assert_eq!(
        decode_all(&mut dec, &bytes).unwrap(),
        vec!["ping:p1", "text:héllo wörld", "pong", "close:Some(1000)"]
    );
    // A UTF-8 sequence split across fragments is fine; a broken one is not.
    let mut dec = Decoder::new(1000);
    let mut bytes = client_frame(0x01, &[0xC3]);
    bytes.extend(client_frame(0x80, &[0x28]));
    assert_eq!(decode_all(&mut dec, &bytes), Err(WsError::InvalidUtf8));
}

#[test]
fn invalid_utf8_fails_at_the_fragment_that_makes_it_invalid() {
    // The second fragment cannot continue any text: refused as it comes,
    // the final fragment never needed.
    let mut dec = Decoder::new(1000);
    let mut bytes = client_frame(0x01, "κό".as_bytes());
    bytes.extend(client_frame(0x00, b"\xf4\x90\x80\x80"));
    assert_eq!(decode_all(&mut dec, &bytes), Err(WsError::InvalidUtf8));
    // A text ending inside a character is refused at the final fragment.
    let mut dec = Decoder::new(1000);
    let mut bytes = client_frame(0x01, b"ok");
    bytes.extend(client_frame(0x80, b"\xe2\x82"));
    assert_eq!(decode_all(&mut dec, &bytes), Err(WsError::InvalidUtf8));
}

#[test]
fn invalid_utf8_fails_within_a_frame_that_is_still_arriving() {
    let frame = client_frame(0x81, b"hello \xc0\xaf and more that never comes");
    // Header and "hello ": fine so far, nothing consumed.
    let mut dec = Decoder::new(1000);
    let mut part = frame[..6 + 6].to_vec();
    assert_eq!(dec.next(&mut part), Ok(None));
    // The same frame with more bytes: 0xC0 can start no character.
    let mut part = frame[..6 + 7].to_vec();
    assert_eq!(dec.next(&mut part), Err(WsError::InvalidUtf8));
    // The same within a continuation of a text message.
    let mut dec = Decoder::new(1000);
    let mut first = client_frame(0x01, b"ab");
    assert_eq!(dec.next(&mut first).unwrap().map(|(m, _)| m), Some(None));
    let cont = client_frame(0x80, b"\xed\xa0\x80 (a surrogate)");
    let mut part = cont[..6 + 1].to_vec();
    assert_eq!(dec.next(&mut part), Ok(None), "0xED alone is not yet wrong");
    let mut part = cont[..6 + 2].to_vec();
    assert_eq!(dec.next(&mut part), Err(WsError::InvalidUtf8));
    // Binary is not checked.
    let mut dec = Decoder::new(1000);
    let mut part = client_frame(0x82, &[0xc0; 40])[..20].to_vec();
    assert_eq!(dec.next(&mut part), Ok(None));
}

#[test]
fn close_codes_are_checked_and_remembered() {
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut dec = Decoder::new(1000);
        let r = decode_all(&mut dec, &client_frame(0x88, &code.to_be_bytes()));
        assert_eq!(r, Err(WsError::Protocol("invalid close code")), "{code}");
    }
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4321, 4999,
    ] {
        let mut dec = Decoder::new(1000);
        let r = decode_all(&mut dec, &client_frame(0x88, &code.to_be_bytes()));
        assert_eq!(r, Ok(vec![format!("close:Some({code})")]));
        assert_eq!(dec.peer_close(), Some(code));
    }
    let mut dec = Decoder::new(1000);
    let r = decode_all(&mut dec, &client_frame(0x88, b"\x03\xe8\xc3\x28"));
    assert_eq!(r, Err(WsError::InvalidUtf8), "reason not UTF-8");
}

#[test]
fn refusals_need_only_the_header() {
    // Opcode and fragment-state errors come before the payload.
    // (what, the frames before, the frame refused from its header)
    let cases = [
        ("unknown opcode", vec![], client_frame(0x83, &[0; 50])),
        ("continuation first", vec![], client_frame(0x80, &[0; 50])),
        (
            "new message mid-fragment",
            client_frame(0x01, b"a"),
            client_frame(0x81, &[0; 50]),
        ),
    ];
    for (what, mut before, frame) in cases {
        let mut dec = Decoder::new(1000);
        if !before.is_empty() {
            dec.next(&mut before).unwrap();
        }
        let mut head = frame[..6].to_vec();
        assert!(
            matches!(dec.next(&mut head), Err(WsError::Protocol(_))),
            "{what}"
        );
    }
    // The limit can change between frames (before and after CONNECT).
    let mut dec = Decoder::new(100);
    let mut head = client_frame(0x82, &[0; 500])[..8].to_vec();
    assert_eq!(dec.next(&mut head), Err(WsError::TooLarge));
    dec.set_max_message(1000);
    assert_eq!(dec.next(&mut head), Ok(None));
}

#[test]
fn size_limit_is_enforced_from_the_header() {
    // Only the header of a 2 MB frame has arrived: refused already.
    let frame = client_frame(0x82, &vec![0u8; 2_000_000]);
    let mut head = frame[..14].to_vec();
    assert_eq!(
        Decoder::new(1_000_000).next(&mut head),
        Err(WsError::TooLarge)
    );
    // Fragments count together.
    let mut dec = Decoder::new(100);
    let mut bytes = client_frame(0x02, &[0u8; 60]);
    bytes.extend(client_frame(0x80, &[0u8; 60]));
    assert_eq!(decode_all(&mut dec, &bytes), Err(WsError::TooLarge));
    // Exactly the limit is fine.
    let mut dec = Decoder::new(100);
    assert_eq!(
        decode_all(&mut dec, &client_frame(0x82, &[0u8; 100])).unwrap(),
        vec!["bin:100"]
    );
}

#[test]
fn protocol_violations_are_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved bit", client_frame(0xC1, b"x")),
        ("unknown opcode", client_frame(0x83, b"x")),
        ("continuation first", client_frame(0x80, b"x")),
        ("fragmented ping", client_frame(0x09, b"x")),
        ("big ping", client_frame(0x89, &[0u8; 126])),
        ("close of one byte", client_frame(0x88, &[3])),
        ("unmasked", vec![0x81, 0x01, b'x']),
        ({ "new message mid-fragment" }, {
            let mut b = client_frame(0x01, b"a");
            b.extend(client_frame(0x81, b"b"));
            b
        }),
    ];
    for (what, bytes) in cases {
        let r = decode_all(&mut Decoder::new(1000), &bytes);
        assert!(matches!(r, Err(WsError::Protocol(_))), "{what}: {r:?}");
    }
    let r = decode_all(&mut Decoder::new(1000), &client_frame(0x81, &[0xff, 0xfe]));
    assert_eq!(r, Err(WsError::InvalidUtf8), "bad utf8");
}

#[test]
fn server_frames_use_the_shortest_length_form() {
    for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
        let mut out = Vec::new();
        encode(&mut out, Kind::Text, &vec![b'a'; len]);
        assert_eq!(out.len(), header + len, "len {len}");
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1] & 0x80, 0, "server frames are not masked");
    }
    let mut out = Vec::new();
    encode_close(&mut out, 4008, "slow consumer");
    assert_eq!(&out[..4], &[0x88, 15, 0x0F, 0xA8]);
    assert_eq!(&out[4..], b"slow consumer");
    let mut out = Vec::new();
    encode_close(&mut out, 1000, &"é".repeat(100));
    assert!(out.len() <= 2 + 125);
}
