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
    assert_eq!(
        decode_all(&mut dec, &bytes),
        Err(WsError::Protocol("text is not UTF-8"))
    );
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
        ("bad utf8", client_frame(0x81, &[0xff, 0xfe])),
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
