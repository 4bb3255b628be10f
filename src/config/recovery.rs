//! The recovery sessions' Redis settings (several instances): checked
//! whether or not Redis is configured, so a bad value is found before it
//! matters.

use super::{Config, ConfigError};

impl Config {
    pub(super) fn recovery_problems(&self, found: &mut Vec<ConfigError>) {
        #[rustfmt::skip]
        let nonzero: [(&'static str, u64, &str); 2] = [
            ("recovery_redis_queue", self.recovery_redis_queue as u64, "requests such as 65536"),
            ("recovery_redis_timeout_ms", self.recovery_redis_timeout_ms, "milliseconds such as 2000"),
        ];
        super::validate::require_nonzero(found, nonzero);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_queue_or_timeout_is_refused() {
        let keys = |c: &Config| -> Vec<String> {
            let mut found = Vec::new();
            c.recovery_problems(&mut found);
            found
                .iter()
                .filter_map(|e| e.key().map(str::to_owned))
                .collect()
        };
        assert!(keys(&Config::default()).is_empty());
        let zero = Config {
            recovery_redis_queue: 0,
            recovery_redis_timeout_ms: 0,
            ..Default::default()
        };
        assert_eq!(
            keys(&zero),
            ["recovery_redis_queue", "recovery_redis_timeout_ms"]
        );
    }
}
