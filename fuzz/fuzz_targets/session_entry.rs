//! A recovery session's value, as an instance reads it from Redis.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::session_entry(data);
});
