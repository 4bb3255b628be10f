//! A generated HS256 secret for when none is configured.
//!
//! `cargo run --release` should work out of the box, with tokens minted by
//! `gatrix-chat token`, yet there must never be a well-known default secret
//! (anyone could mint tokens for any user). So the first start generates a
//! random secret into `<data_dir>/jwt_secret` (mode 0600) and later starts,
//! and the `token` command, reuse it. The server logs a warning naming the
//! file, so that production deployments set `JWT_SECRET` instead.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use super::validate::MIN_SECRET_BYTES;
use super::{Config, ConfigError, Environment};

/// File name of the generated secret inside `data_dir`.
pub const DEV_SECRET_FILE: &str = "jwt_secret";

/// Random bytes in a generated secret: 384 bits, more than HS256 can use,
/// and a multiple of 3 so the base64 text has no padding.
const DEV_SECRET_BYTES: usize = 48;

impl Config {
    /// When neither `jwt_secret` nor `jwt_public_key_file` is set, loads the
    /// development secret from `<data_dir>/jwt_secret`, creating it first if
    /// absent, sets `jwt_secret` to it and returns the file's path (for the
    /// caller's warning). Returns `None`, touching nothing, when a secret or
    /// key is configured.
    pub fn resolve_dev_secret(&mut self) -> Result<Option<PathBuf>, ConfigError> {
        if self.jwt_secret.is_some() || self.jwt_public_key_file.is_some() {
            return Ok(None);
        }
        let path = self.data_dir.join(DEV_SECRET_FILE);
        if self.environment == Environment::Production {
            // `validate` refuses this too; `token` does not validate.
            return Err(dev_secret_error(
                &path,
                "is not used: ENVIRONMENT (environment) is production",
                "set JWT_SECRET (at least 32 random bytes) or JWT_PUBLIC_KEY_FILE",
            ));
        }
        let secret = match read_secret(&path)? {
            Some(secret) => secret,
            None => create_secret(&path)?,
        };
        self.jwt_secret = Some(secret);
        Ok(Some(path))
    }
}

/// The secret in `path`, or `None` when the file does not exist.
fn read_secret(path: &Path) -> Result<Option<String>, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) if text.trim().len() >= MIN_SECRET_BYTES => Ok(Some(text.trim().to_owned())),
        Ok(_) => Err(dev_secret_error(
            path,
            format!("holds fewer than {MIN_SECRET_BYTES} bytes"),
            "delete the file so a new secret is generated, or set JWT_SECRET",
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(dev_secret_error(
            path,
            format!("cannot be read: {e}"),
            "make it readable by the server's user, or set JWT_SECRET",
        )),
    }
}

/// Writes a new random secret to `path` and returns it.
///
/// The secret goes to a private temporary file first and is then hard-linked
/// into place, which never replaces an existing file: a crash cannot leave a
/// half-written secret, and when two processes start at once exactly one
/// secret wins and the other process reads it.
fn create_secret(path: &Path) -> Result<String, ConfigError> {
    let io_error = |e: std::io::Error| {
        dev_secret_error(
            path,
            format!("cannot be created: {e}"),
            "make DATA_DIR (data_dir) writable by the server's user, or set JWT_SECRET",
        )
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_error)?;

    let mut bytes = [0u8; DEV_SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);

    let tmp = dir.join(format!(".{DEV_SECRET_FILE}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp); // left over from a crash of an earlier process with our pid
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(secret.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        })
        .and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(secret),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => read_secret(path)?.ok_or_else(|| {
            dev_secret_error(
                path,
                "vanished while being created",
                "start the server again",
            )
        }),
        Err(e) => Err(io_error(e)),
    }
}

fn dev_secret_error(path: &Path, problem: impl Into<String>, fix: &str) -> ConfigError {
    ConfigError::DevSecret {
        path: path.to_owned(),
        problem: problem.into(),
        fix: fix.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config_in(dir: &Path) -> Config {
        Config {
            data_dir: dir.join("data"),
            ..Config::default()
        }
    }

    #[test]
    fn creates_a_private_random_secret_and_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = config_in(dir.path());
        let path = first.resolve_dev_secret().unwrap().expect("a secret file");
        assert_eq!(path, dir.path().join("data").join(DEV_SECRET_FILE));

        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let secret = first.jwt_secret.clone().unwrap();
        assert_eq!(secret.len(), 64, "48 bytes in unpadded base64");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&secret).unwrap().len(),
            DEV_SECRET_BYTES
        );
        assert!(
            first.warnings().is_empty(),
            "the generated secret is long enough"
        );

        let mut second = config_in(dir.path());
        assert_eq!(second.resolve_dev_secret().unwrap(), Some(path));
        assert_eq!(
            second.jwt_secret,
            Some(secret),
            "the same secret on every start"
        );

        let mut other = config_in(tempfile::tempdir().unwrap().path());
        other.resolve_dev_secret().unwrap();
        assert_ne!(
            other.jwt_secret, second.jwt_secret,
            "secrets are random, not fixed"
        );
        let leftovers = fs::read_dir(dir.path().join("data")).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn a_configured_secret_or_key_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut with_secret = Config {
            jwt_secret: Some("s".repeat(40)),
            ..config_in(dir.path())
        };
        assert_eq!(with_secret.resolve_dev_secret().unwrap(), None);
        assert_eq!(with_secret.jwt_secret, Some("s".repeat(40)));

        let mut with_key = Config {
            jwt_public_key_file: Some("k.pem".into()),
            ..config_in(dir.path())
        };
        assert_eq!(with_key.resolve_dev_secret().unwrap(), None);
        assert_eq!(with_key.jwt_secret, None);
        assert!(!dir.path().join("data").exists(), "nothing was written");
    }

    #[test]
    fn production_never_generates_or_reads_a_development_secret() {
        let dir = tempfile::tempdir().unwrap();
        let mut dev = config_in(dir.path());
        dev.resolve_dev_secret().unwrap();
        let mut prod = Config {
            environment: Environment::Production,
            ..config_in(dir.path())
        };
        let msg = prod.resolve_dev_secret().unwrap_err().to_string();
        assert!(
            msg.contains("ENVIRONMENT (environment) is production"),
            "{msg}"
        );
        assert_eq!(
            prod.jwt_secret, None,
            "the existing file is not used either"
        );
    }

    #[test]
    fn a_truncated_secret_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("data")).unwrap();
        fs::write(dir.path().join("data").join(DEV_SECRET_FILE), "abc\n").unwrap();
        let msg = config_in(dir.path())
            .resolve_dev_secret()
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("jwt_secret") && msg.contains("delete the file"),
            "{msg}"
        );
    }
}
