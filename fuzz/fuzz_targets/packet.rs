//! One WebSocket text frame through the Engine.IO and Socket.IO parsers
//! (binary packets' attachment counts included), then re-encoded.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 by then: the WebSocket decoder refuses others.
    if let Ok(frame) = std::str::from_utf8(data) {
        fuzzing::packet(frame);
    }
});
