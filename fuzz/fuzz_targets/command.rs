//! A chat event through the command parser. Input: `[max, name…, '\n',
//! JSON…]`: content limit `max * 16` bytes, the event name, its arguments.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [max, rest @ ..] = data else {
        return;
    };
    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(name) = std::str::from_utf8(&rest[..nl]) else {
        return;
    };
    fuzzing::command(name, &rest[nl + 1..], usize::from(*max) * 16);
});
