//! permessage-deflate: the extension offers and the inflater.
//! Input: `[limit, split, bytes…]`: the first `split` bytes (as text) are a
//! `Sec-WebSocket-Extensions` value, the rest are inflated with a limit of
//! `64 * limit` bytes.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [limit, split, bytes @ ..] = data else {
        return;
    };
    let (header, deflated) = bytes.split_at(usize::from(*split).min(bytes.len()));
    let header = String::from_utf8_lossy(header);
    fuzzing::ws_deflate(&header, deflated, 64 * usize::from(*limit));
});
