//! A Socket.IO CONNECT packet (`0{"token":…,"pid":…,"offset":…}`) read as
//! a connection state recovery claim.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = std::str::from_utf8(data) {
        fuzzing::recovery_claim(packet);
    }
});
