//! The WebSocket reading of a connection, with arbitrary split points
//! between socket reads. Input: `[max lo, max hi, flags, cuts…, stream…]`:
//! the message size limit (u16, little-endian), `flags & 15` cut points
//! (u16 LE each, taken modulo the stream's length + 1), `flags & 16`: the
//! bytes before the first cut came with the upgrade request.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [lo, hi, flags, rest @ ..] = data else {
        return;
    };
    let max = usize::from(u16::from_le_bytes([*lo, *hi]));
    let n = usize::from(flags & 15);
    if rest.len() < 2 * n {
        return;
    }
    let (cuts, stream) = rest.split_at(2 * n);
    let mut points: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    points.sort_unstable();
    let mut parts = Vec::with_capacity(n + 1);
    let mut at = 0;
    for p in points {
        parts.push(&stream[at..p]);
        at = p;
    }
    parts.push(&stream[at..]);
    let (early, reads): (&[u8], &[&[u8]]) = if flags & 16 != 0 {
        (parts[0], &parts[1..])
    } else {
        (&[], &parts)
    };
    fuzzing::ws_decode(early, reads, max);
});
