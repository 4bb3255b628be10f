//! An entry of the bus's log, as another instance reads it from Redis.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::bus_envelope(data);
});
