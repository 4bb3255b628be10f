//! A recovery offset as a client sends it (`"120.98.140.77"`), read for
//! the partition count the first byte gives.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::recovery_offset(data);
});
