//! `shard_cpus`: which CPUs the shards are pinned to.

use super::{Config, ConfigError};

impl Config {
    /// The CPUs of `shard_cpus`, in the order given, or `None` when unset.
    pub fn shard_cpu_list(&self) -> Result<Option<Vec<usize>>, ConfigError> {
        let Some(spec) = self.shard_cpus.as_deref().filter(|s| !s.trim().is_empty()) else {
            return Ok(None);
        };
        cpu_list(spec).map(Some).map_err(|why| {
            ConfigError::invalid(
                "shard_cpus",
                format!("is {spec:?}: {why}"),
                "list CPU numbers and ranges separated by commas, e.g. 1-15 or 2,3,6-7",
            )
        })
    }

    pub(super) fn cpu_problems(&self, found: &mut Vec<ConfigError>) {
        match self.shard_cpu_list() {
            Err(e) => found.push(e),
            Ok(Some(cpus)) if self.cluster_workers != 0 && self.cluster_workers != cpus.len() => {
                found.push(ConfigError::invalid(
                    "cluster_workers",
                    format!(
                        "is {}, but SHARD_CPUS lists {} CPUs (one shard each)",
                        self.cluster_workers,
                        cpus.len()
                    ),
                    "set CLUSTER_WORKERS=0 (one shard per listed CPU) or list as many CPUs",
                ));
            }
            Ok(_) => {}
        }
    }
}

/// `SHARD_CPUS=3` arrives from the environment as a number, `1-3` as text.
pub(super) fn text_or_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(u64),
    }
    Ok(
        <Option<Raw> as serde::Deserialize>::deserialize(d)?.map(|r| match r {
            Raw::Text(s) => s,
            Raw::Number(n) => n.to_string(),
        }),
    )
}

/// Parses `1-3,5`: CPU numbers and inclusive ranges, no repeats.
fn cpu_list(spec: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let num = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| format!("{part:?} is not a CPU number or range"))
        };
        let (a, b) = (num(a)?, num(b)?);
        if a > b || b >= 4096 {
            return Err(format!("{part:?} is not a CPU range"));
        }
        for cpu in a..=b {
            if out.contains(&cpu) {
                return Err(format!("CPU {cpu} is listed twice"));
            }
            out.push(cpu);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(cpu_list("1-3,5"), Ok(vec![1, 2, 3, 5]));
        assert_eq!(cpu_list(" 0 "), Ok(vec![0]));
        assert!(cpu_list("3-1").is_err());
        assert!(cpu_list("1,1").is_err());
        assert!(cpu_list("a").is_err());
        assert!(cpu_list("").is_err());
    }

    #[test]
    fn workers_must_match_the_list() {
        let c = Config {
            shard_cpus: Some("1-3".into()),
            cluster_workers: 2,
            ..Config::default()
        };
        let mut found = Vec::new();
        c.cpu_problems(&mut found);
        assert_eq!(found.len(), 1);
        let c = Config {
            cluster_workers: 0,
            ..c
        };
        assert_eq!(c.shards(), 3);
    }
}
