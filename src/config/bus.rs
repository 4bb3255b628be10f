//! The bus's settings (several instances through Redis,
//! docs/architecture.md "Several instances"): checked whether or not Redis
//! is configured, so a bad value is found before it matters.

use super::{Config, ConfigError};

impl Config {
    pub(super) fn bus_problems(&self, found: &mut Vec<ConfigError>) {
        #[rustfmt::skip]
        let nonzero: [(&'static str, u64, &str); 6] = [
            ("bus_poll_interval_ms", self.bus_poll_interval_ms, "milliseconds such as 500"),
            ("bus_stream_max_len", self.bus_stream_max_len as u64, "batches such as 100000"),
            ("bus_queue_batches", self.bus_queue_batches as u64, "batches such as 1024"),
            ("bus_max_parked", self.bus_max_parked as u64, "batches such as 1024"),
            ("bus_parked_ttl_ms", self.bus_parked_ttl_ms, "milliseconds such as 60000"),
            ("bus_redis_timeout_ms", self.bus_redis_timeout_ms, "milliseconds such as 2000"),
        ];
        for (key, value, example) in nonzero {
            if value == 0 {
                found.push(ConfigError::invalid(
                    key,
                    "must be at least 1",
                    format!("set it to a number of {example}"),
                ));
            }
        }
    }
}
