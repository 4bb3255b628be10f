//! The first HTTP request head of a connection and the upgrade checks.
//! Input: `[chunk, bound, bytes…]`: reads of at most `chunk + 1` bytes,
//! a head bound of `256 + 16 * bound` bytes.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [chunk, bound, bytes @ ..] = data else {
        return;
    };
    let max = 256 + 16 * usize::from(*bound);
    fuzzing::http_head(bytes, usize::from(*chunk) + 1, max);
});
