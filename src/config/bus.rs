//! The bus's settings (several instances through Redis,
//! docs/architecture.md "Several instances"): checked whether or not Redis
//! is configured, so a bad value is found before it matters.

use super::{Config, ConfigError};

/// The bounds of `redis_reconnect_max_ms`: below the first wait (100 ms)
/// there is nothing left to double; past a minute a thread would stay
/// away from a Redis long back.
const RECONNECT_MAX_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

impl Config {
    pub(super) fn bus_problems(&self, found: &mut Vec<ConfigError>) {
        #[rustfmt::skip]
        let nonzero: [(&'static str, u64, &str); 8] = [
            ("bus_poll_interval_ms", self.bus_poll_interval_ms, "milliseconds such as 500"),
            ("bus_stream_max_len", self.bus_stream_max_len as u64, "batches such as 10000"),
            ("bus_queue_batches", self.bus_queue_batches as u64, "batches such as 1024"),
            ("bus_queue_bytes", self.bus_queue_bytes as u64, "bytes such as 67108864"),
            ("bus_max_parked", self.bus_max_parked as u64, "batches such as 1024"),
            ("bus_parked_ttl_ms", self.bus_parked_ttl_ms, "milliseconds such as 60000"),
            ("bus_redis_timeout_ms", self.bus_redis_timeout_ms, "milliseconds such as 2000"),
            ("redis_cluster_refresh_ms", self.redis_cluster_refresh_ms, "milliseconds such as 5000"),
        ];
        super::validate::require_nonzero(found, nonzero);
        if !(1..=u32::from(crate::redis_link::slots::SLOTS)).contains(&self.redis_pubsub_partitions)
        {
            found.push(ConfigError::invalid(
                "redis_pubsub_partitions",
                format!("is {}", self.redis_pubsub_partitions),
                "set REDIS_PUBSUB_PARTITIONS from 1 to 16384 (a Redis Cluster's slots); 64 is the \
                 default",
            ));
        }
        if !RECONNECT_MAX_MS.contains(&self.redis_reconnect_max_ms) {
            found.push(ConfigError::invalid(
                "redis_reconnect_max_ms",
                format!(
                    "is {} ms, outside {} to {} ms",
                    self.redis_reconnect_max_ms,
                    RECONNECT_MAX_MS.start(),
                    RECONNECT_MAX_MS.end()
                ),
                "set REDIS_RECONNECT_MAX_MS to milliseconds from 100 to 60000 (the longest wait \
                 between two reconnects to Redis); 5000 is the default",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &Config) -> Vec<String> {
        c.problems()
            .iter()
            .filter_map(|e| e.key().map(str::to_owned))
            .collect()
    }

    /// The recovery offset is one position per partition
    /// (`chat::recovery::offset`), so several partitions go with Redis.
    #[test]
    fn several_partitions_with_redis_are_allowed() {
        let base = Config {
            database_url: Some("mysql://u@h:3306/db".into()),
            jwt_secret: Some("x".repeat(40)),
            ..Default::default()
        };
        let redis = Config {
            redis_url: Some("redis://127.0.0.1:6379/0".into()),
            ..base.clone()
        };
        assert!(!keys(&redis).contains(&"sequencer_partitions".to_owned()));
        let partitioned = Config {
            sequencer_partitions: 4,
            ..base.clone()
        };
        assert!(!keys(&partitioned).contains(&"sequencer_partitions".to_owned()));
        let both = Config {
            sequencer_partitions: 4,
            ..redis
        };
        assert!(!keys(&both).contains(&"sequencer_partitions".to_owned()));
        let too_many = Config {
            sequencer_partitions: 33,
            ..both
        };
        assert!(keys(&too_many).contains(&"sequencer_partitions".to_owned()));
    }

    #[test]
    fn zero_bus_limits_are_refused() {
        let c = Config {
            bus_queue_batches: 0,
            bus_queue_bytes: 0,
            bus_redis_timeout_ms: 0,
            ..Default::default()
        };
        let k = keys(&c);
        assert!(k.contains(&"bus_queue_batches".to_owned()), "{k:?}");
        assert!(k.contains(&"bus_queue_bytes".to_owned()), "{k:?}");
        assert!(k.contains(&"bus_redis_timeout_ms".to_owned()), "{k:?}");
        assert!(
            !k.contains(&"bus_gap_wait_ms".to_owned()),
            "0 fills at once"
        );
    }

    #[test]
    fn cluster_limits_are_checked() {
        for (partitions, refresh, bad) in [
            (64, 5000, false),
            (1, 1, false),
            (16384, 5000, false),
            (0, 5000, true),
            (16385, 5000, true),
        ] {
            let c = Config {
                redis_pubsub_partitions: partitions,
                redis_cluster_refresh_ms: refresh,
                ..Default::default()
            };
            let k = keys(&c);
            assert_eq!(
                k.contains(&"redis_pubsub_partitions".to_owned()),
                bad,
                "{partitions}: {k:?}"
            );
        }
        let c = Config {
            redis_cluster_refresh_ms: 0,
            ..Default::default()
        };
        assert!(keys(&c).contains(&"redis_cluster_refresh_ms".to_owned()));
    }

    #[test]
    fn the_reconnect_cap_is_bounded() {
        assert_eq!(Config::default().redis_reconnect_max_ms, 5000);
        for (max, bad) in [
            (5000, false),
            (100, false),
            (60_000, false),
            (0, true),
            (99, true),
            (60_001, true),
        ] {
            let c = Config {
                redis_reconnect_max_ms: max,
                ..Default::default()
            };
            let problems = c.problems();
            let found = problems
                .iter()
                .find(|e| e.key() == Some("redis_reconnect_max_ms"));
            assert_eq!(found.is_some(), bad, "{max}: {problems:?}");
            if let Some(e) = found {
                let text = e.to_string();
                assert!(text.contains("REDIS_RECONNECT_MAX_MS"), "{text}");
                assert!(text.contains(&format!("is {max} ms")), "{text}");
            }
        }
    }
}
