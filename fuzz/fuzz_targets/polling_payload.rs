//! A long-polling POST body through the payload decoder (`\x1e`-separated
//! packets, `b<base64>` for binary ones), then encoded back.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server refuses a body that is not UTF-8 before decoding it.
    if let Ok(body) = std::str::from_utf8(data) {
        fuzzing::polling_payload(body);
    }
});
