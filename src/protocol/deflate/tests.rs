use super::*;
use crate::protocol::ws::Decoder;
use crate::protocol::ws::Msg;
use crate::protocol::ws::tests::masked;

/// What a client sends: the message compressed, without the tail.
fn deflated(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(compress(payload, &mut out), "compressible test payload");
    out
}

fn text(n: usize) -> String {
    (0..n).map(|i| char::from(b'a' + (i % 7) as u8)).collect()
}

#[test]
fn compress_then_inflate_gives_the_message_back() {
    for n in [200, 5_000, 200_000] {
        let t = text(n);
        let d = deflated(t.as_bytes());
        assert!(!d.ends_with(&TAIL));
        assert_eq!(inflate(&d, n).unwrap(), t.as_bytes());
        // One byte under the limit is too large.
        assert_eq!(inflate(&d, n - 1), Err(WsError::TooLarge));
    }
    // An empty message: the empty stored block alone, tail stripped.
    assert_eq!(inflate(&[], 10).unwrap(), b"");
    assert_eq!(inflate(&[0x00], 10).unwrap(), b"");
}

#[test]
fn a_zip_bomb_stops_at_the_limit() {
    let bomb = deflated(&vec![0u8; 10 << 20]);
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    assert_eq!(inflate(&bomb, 1 << 20), Err(WsError::TooLarge));
}

#[test]
fn garbage_is_a_protocol_error() {
    assert!(matches!(
        inflate(&[0xff; 64], 1 << 20),
        Err(WsError::Protocol(_))
    ));
}

#[test]
fn incompressible_data_goes_plain() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let mut out = Vec::new();
    assert!(!compress(&noise, &mut out));
    assert_eq!(compress_shared(&noise, 0), None);
    assert_eq!(compress_shared(text(1000).as_bytes(), 1024), None);
    assert!(compress_shared(text(1024).as_bytes(), 1024).is_some());
}

#[test]
fn queued_frames_are_compressed_from_the_threshold_on() {
    let long = text(2000);
    let f = Frame::Text(long.clone().into());
    let mut out = Vec::new();
    encode_frame(&mut out, &f, usize::MAX);
    assert_eq!(out[0], 0x81, "not negotiated: plain");
    out.clear();
    encode_frame(&mut out, &f, 1024);
    assert_eq!(out[0], 0xC1, "RSV1, text");
    let payload = &out[2..];
    assert!(payload.len() < 126);
    assert_eq!(inflate(payload, 2000).unwrap(), long.as_bytes());
    out.clear();
    encode_frame(&mut out, &Frame::Text("short".into()), 1024);
    assert_eq!(out, b"\x81\x05short");
    // A broadcast's shared form is used as it is.
    let shared = compress_shared(long.as_bytes(), 1024).unwrap();
    let packed = Frame::Packed(std::sync::Arc::new(crate::protocol::Packed {
        text: long.clone().into(),
        deflated: Some(shared.clone()),
    }));
    out.clear();
    encode_frame(&mut out, &packed, 1024);
    assert_eq!((out[0], &out[2..]), (0xC1, &shared[..]));
    out.clear();
    encode_frame(&mut out, &packed, usize::MAX);
    assert_eq!(out[0], 0x81);
    assert_eq!(out.len(), 4 + long.len());
}

fn decode_one(dec: &mut Decoder, bytes: &[u8]) -> Result<Vec<String>, WsError> {
    let mut buf = bytes.to_vec();
    let mut at = 0;
    let mut out = Vec::new();
    while let Some((msg, n)) = dec.next(&mut buf[at..])? {
        match msg {
            Some(Msg::Text(t)) => out.push(t.into_owned()),
            Some(Msg::Binary(b)) => out.push(format!("bin:{}", b.len())),
            Some(other) => out.push(format!("{other:?}")),
            None => {}
        }
        at += n;
    }
    Ok(out)
}

const MASK: [u8; 4] = [1, 2, 3, 4];

#[test]
fn the_decoder_inflates_whole_and_fragmented_messages() {
    let t = text(3000);
    let d = deflated(t.as_bytes());
    let mut dec = Decoder::new(1 << 20);
    dec.set_inflate(true);
    let mut bytes = masked(0xC1, &d, MASK);
    // The same, in three fragments: RSV1 on the first only.
    let (a, rest) = d.split_at(d.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    bytes.extend(masked(0x41, a, MASK));
    bytes.extend(masked(0x89, b"ping", MASK)); // a control frame between
    bytes.extend(masked(0x00, b, MASK));
    bytes.extend(masked(0x80, c, MASK));
    bytes.extend(masked(0xC2, &deflated(&[7u8; 500]), MASK));
    bytes.extend(masked(0x81, b"plain", MASK));
    assert_eq!(
        decode_one(&mut dec, &bytes).unwrap(),
        vec![
            t.clone(),
            "Ping([112, 105, 110, 103])".into(),
            t,
            "bin:500".into(),
            "plain".into()
        ]
    );
}

#[test]
fn rsv1_is_refused_without_the_extension_and_on_other_frames() {
    let d = deflated(text(300).as_bytes());
    let mut dec = Decoder::new(1 << 20);
    assert_eq!(
        decode_one(&mut dec, &masked(0xC1, &d, MASK)),
        Err(WsError::Protocol("reserved bits set"))
    );
    for frames in [
        vec![masked(0xC9, b"", MASK)],
        vec![masked(0x41, &d[..4], MASK), masked(0xC0, &d[4..], MASK)],
        vec![masked(0x01, b"ab", MASK), masked(0xC0, b"cd", MASK)],
        vec![masked(0xA1, &d, MASK)], // RSV2
    ] {
        let mut dec = Decoder::new(1 << 20);
        dec.set_inflate(true);
        assert_eq!(
            decode_one(&mut dec, &frames.concat()),
            Err(WsError::Protocol("reserved bits set"))
        );
    }
}

#[test]
fn the_limit_applies_to_the_inflated_size_and_invalid_text_is_1007() {
    let mut dec = Decoder::new(1000);
    dec.set_inflate(true);
    let bomb = masked(0xC1, &deflated(&vec![b'a'; 100_000]), MASK);
    assert_eq!(decode_one(&mut dec, &bomb), Err(WsError::TooLarge));
    let mut dec = Decoder::new(1000);
    dec.set_inflate(true);
    let bad = masked(0xC1, &deflated(&[0xff; 300]), MASK);
    assert_eq!(decode_one(&mut dec, &bad), Err(WsError::InvalidUtf8));
    // Compressed bytes beyond what the limit can compress to: refused from
    // the header.
    let mut dec = Decoder::new(1000);
    dec.set_inflate(true);
    let header_only = &masked(0xC2, &vec![0; 2000], MASK)[..8];
    assert_eq!(decode_one(&mut dec, header_only), Err(WsError::TooLarge));
}

#[test]
fn a_counted_receiver_makes_broadcasts_worth_compressing() {
    // Other tests of this process may hold receivers too, so only the
    // direction is checked: while one is held, there is one.
    let held = Receiver::counted();
    assert!(any_receivers());
    drop(held);
}
