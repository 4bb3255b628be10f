//! A REST request target (`path?query`): routes, ids, history paging.
#![no_main]

use gatrix_chat::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // hyper hands the handlers a valid URI, which is ASCII.
    if let Ok(target) = std::str::from_utf8(data) {
        fuzzing::rest_query(target);
    }
});
