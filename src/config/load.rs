//! Layering the configuration with figment: defaults < TOML file <
//! environment (after `.env`) < command line.
//!
//! The environment and the command line are read through one typed layer
//! rather than figment's own `Env` provider, because `Env` guesses a type from
//! every value: a JWT secret made only of digits would become a number (and
//! `000123` would lose its zeros), and `true` a boolean. Here free-text keys
//! are taken verbatim and only numeric keys are parsed.

use std::path::Path;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Empty, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::keys::{self, Key};
use super::{Config, ConfigError, original};

/// Loads `.env` from the working directory (not its parents) into the
/// process environment. Variables already set are kept: the real
/// environment always wins. A missing file is not an error.
///
/// It goes into the process environment, not only into the config, so that
/// `RUST_LOG` and friends in `.env` work too. Call it at start-up, before
/// any thread is spawned.
pub fn load_dotenv() -> Result<(), ConfigError> {
    match dotenvy::from_path(".env") {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(fragment, _)) => Err(ConfigError::DotEnv {
            detail: describe_bad_line(&fragment),
        }),
        Err(e) => Err(ConfigError::DotEnv {
            detail: e.to_string(),
        }),
    }
}

/// Where in `.env` a parse error is, by line number and variable name.
/// dotenvy's error quotes the line or just its value, which may be a
/// secret, so only the position is reported.
fn describe_bad_line(fragment: &str) -> String {
    let text = std::fs::read_to_string(".env").unwrap_or_default();
    let found = text
        .lines()
        .enumerate()
        .find(|(_, line)| line.contains(fragment));
    match found {
        Some((index, line)) => {
            let line = line.trim_start();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let name = line.split('=').next().unwrap_or_default().trim();
            format!("line {} ({name}) does not parse", index + 1)
        }
        None => "a line does not parse".to_owned(),
    }
}

impl Config {
    /// The layered sources, without extracting: defaults, then `file` when
    /// given, then the environment, then `overrides` (`key`, raw value)
    /// from the command line, later pairs winning over earlier ones.
    pub fn figment(
        file: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            // figment skips a missing file silently; a path the operator
            // typed that does not exist is a mistake worth stopping for.
            std::fs::File::open(path).map_err(|source| ConfigError::File {
                path: path.to_owned(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        Ok(figment
            .merge(environment(&original::process_vars())?)
            .merge(command_line(overrides)?))
    }

    /// Loads the effective config from every layer. Does not validate: call
    /// [`Config::validate`].
    pub fn load(
        file: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut config: Config = Config::figment(file, overrides)?.extract()?;
        config.normalize();
        original::refuse_ignored_database(&config, &original::process_vars())?;
        Ok(config)
    }

    /// An empty optional value means "not set", whichever layer it came
    /// from (`jwt_secret = ""` in TOML is a placeholder, not a secret).
    fn normalize(&mut self) {
        for field in keys::TABLE.iter().filter_map(Key::optional) {
            field.unset_if_empty(self);
        }
    }
}

/// The known keys from the process environment, each by its own name or
/// an alias of the Node.js server's (`original`).
fn environment(vars: &original::Vars) -> Result<Layer, ConfigError> {
    let mut dict = Dict::new();
    for key in keys::TABLE {
        if let Some(raw) = original::env_value(vars, key.name)?
            && let Some(value) = typed_value(key, &raw)
        {
            dict.insert(key.name.to_owned(), value);
        }
    }
    Ok(Layer {
        name: "environment variable",
        upper_case: true,
        dict,
    })
}

/// The command-line overrides; an unknown key is an error, not ignored.
fn command_line(overrides: &[(String, String)]) -> Result<Layer, ConfigError> {
    let mut dict = Dict::new();
    for (key, raw) in overrides {
        let key = key.trim().to_ascii_lowercase();
        let Some(known) = keys::find(&key) else {
            return Err(ConfigError::UnknownKey { key });
        };
        if let Some(value) = typed_value(known, raw) {
            dict.insert(key, value);
        }
    }
    Ok(Layer {
        name: "command-line flag",
        upper_case: false,
        dict,
    })
}

/// The value for `key`, or `None` to leave lower layers in charge (an empty
/// value for a required key, e.g. `PORT=` from an unset compose variable).
fn typed_value(key: &Key, raw: &str) -> Option<Value> {
    if raw.is_empty() {
        return key
            .optional()
            .map(|_| Value::Empty(Tag::Default, Empty::None));
    }
    if key.is_text() {
        return Some(Value::from(raw.to_owned()));
    }
    // Parsing into a figment value is infallible: unparsable text stays a
    // string, and extraction then reports the key and the expected type.
    Some(raw.trim().parse().unwrap_or_else(|never| match never {}))
}

/// One layer of already-typed values, named so that figment's errors say
/// where a bad value came from (`for key "PORT" in environment variable`).
struct Layer {
    name: &'static str,
    /// Report keys in environment spelling (`PORT`) rather than TOML's.
    upper_case: bool,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let upper_case = self.upper_case;
        Metadata::named(self.name).interpolater(move |_: &Profile, keys: &[&str]| {
            let key = keys.join(".");
            if upper_case {
                key.to_ascii_uppercase()
            } else {
                key
            }
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment's error type
mod tests {
    use super::*;
    use figment::Jail;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn without_sources_the_defaults_apply() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            assert_eq!(Config::load(None, &[]).unwrap(), Config::default());
            Ok(())
        });
    }

    #[test]
    fn toml_file_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "gatrix.toml",
                "port = 4000\nhost = \"127.0.0.1\"\nlog_format = \"json\"",
            )?;
            let c = Config::load(Some(Path::new("gatrix.toml")), &[]).unwrap();
            assert_eq!(c.port, 4000);
            assert_eq!(c.host, "127.0.0.1");
            assert_eq!(c.log_format, super::super::LogFormat::Json);
            assert_eq!(
                c.ping_interval_ms, 25_000,
                "untouched keys keep their default"
            );
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "gatrix.toml",
                "port = 4000\nmax_payload = 2048\njwt_issuer = \"file\"",
            )?;
            jail.set_env("PORT", "5000");
            // Verbatim: neither a number nor stripped of its leading zeros.
            jail.set_env("JWT_SECRET", "000123456789");
            jail.set_env("JWT_ISSUER", "");
            jail.set_env("MAX_PAYLOAD", "");
            let c = Config::load(Some(Path::new("gatrix.toml")), &[]).unwrap();
            assert_eq!(c.port, 5000);
            assert_eq!(c.jwt_secret.as_deref(), Some("000123456789"));
            assert_eq!(c.jwt_issuer, None, "an empty optional value unsets it");
            assert_eq!(c.max_payload, 2048, "an empty required value is ignored");
            Ok(())
        });
    }

    #[test]
    fn command_line_overrides_the_environment() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("PORT", "5000");
            jail.set_env("DATA_DIR", "/env");
            let c =
                Config::load(None, &pairs(&[("port", "6000"), ("PING_TIMEOUT_MS", "7")])).unwrap();
            assert_eq!(c.port, 6000);
            assert_eq!(c.ping_timeout_ms, 7);
            assert_eq!(c.data_dir, Path::new("/env"));
            let later_wins = Config::load(None, &pairs(&[("port", "1"), ("port", "2")])).unwrap();
            assert_eq!(later_wins.port, 2);
            Ok(())
        });
    }

    #[test]
    fn unrelated_environment_variables_never_leak_in() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            // deny_unknown_fields would refuse these if they reached serde.
            jail.set_env("PATH", "/bin");
            jail.set_env("HOME", "/root");
            jail.set_env("GATRIX_PORT", "1");
            assert_eq!(Config::load(None, &[]).unwrap(), Config::default());
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_the_variable_and_its_source() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("PORT", "eighty");
            let msg = Config::load(None, &[]).unwrap_err().to_string();
            assert!(
                msg.contains("PORT") && msg.contains("environment variable"),
                "{msg}"
            );
            jail.set_env("PORT", "70000");
            assert!(Config::load(None, &[]).is_err(), "out of u16 range");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let err = Config::load(None, &pairs(&[("prot", "1")])).unwrap_err();
            assert!(matches!(&err, ConfigError::UnknownKey { key } if key == "prot"));
            jail.create_file("typo.toml", "prot = 1")?;
            let msg = Config::load(Some(Path::new("typo.toml")), &[])
                .unwrap_err()
                .to_string();
            assert!(msg.contains("prot"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let err = Config::load(Some(Path::new("nope.toml")), &[]).unwrap_err();
            assert!(matches!(err, ConfigError::File { .. }));
            assert!(err.to_string().contains("nope.toml"));
            Ok(())
        });
    }
}
