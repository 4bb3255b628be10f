//! A REST request body through the body readers. Input: `[max, body…]`:
//! content limit `max * 16` bytes.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [max, body @ ..] = data else {
        return;
    };
    fuzzing::rest_body(body, usize::from(*max) * 16);
});
