//! Loading the configured public key (`JWT_PUBLIC_KEY_FILE`) for RS256 or
//! ES256, with the algorithm decided by the key itself.
//!
//! The key type picks the algorithm rather than a separate setting, so that
//! the two can never disagree, and a key that cannot serve (a private key, an
//! EC key on another curve) is refused at start-up rather than failing every
//! login later.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

use super::AuthError;

/// Reads the PEM file at `path`: an RSA public key gives RS256, a P-256
/// public key ES256. X.509 certificates holding such a key are accepted too.
pub(super) fn load_public_key(path: &Path) -> Result<(Algorithm, DecodingKey), AuthError> {
    let pem = std::fs::read(path).map_err(|e| {
        key_error(
            path,
            format!("cannot be read: {e}"),
            "point it at a readable PEM public key",
        )
    })?;
    if pem
        .windows(b"PRIVATE KEY".len())
        .any(|w| w == b"PRIVATE KEY")
    {
        // The server only verifies; holding the private key widens what a
        // leak of the server's files gives away.
        return Err(key_error(
            path,
            "holds a private key",
            "give the public key instead (openssl pkey -in private.pem -pubout -out public.pem)",
        ));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, key));
    }
    let Ok(key) = DecodingKey::from_ec_pem(&pem) else {
        return Err(key_error(
            path,
            "is not a PEM RSA or EC public key",
            "give a file starting with -----BEGIN PUBLIC KEY-----",
        ));
    };
    // ES256 is defined on P-256 only: its public point is 65 bytes
    // uncompressed (0x04 || x || y) or 33 compressed; P-384's is 97 or 49.
    match key.kind() {
        DecodingKeyKind::SecretOrDer(point) if point.len() == 65 || point.len() == 33 => {
            Ok((Algorithm::ES256, key))
        }
        _ => Err(key_error(
            path,
            "is an EC key on a curve other than P-256",
            "ES256 needs a P-256 (prime256v1) key",
        )),
    }
}

fn key_error(path: &Path, problem: impl Into<String>, fix: &str) -> AuthError {
    AuthError::Key {
        path: path.to_owned(),
        problem: problem.into(),
        fix: fix.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn the_key_type_picks_the_algorithm() {
        assert_eq!(
            load_public_key(&fixture("rs256_public.pem")).unwrap().0,
            Algorithm::RS256
        );
        assert_eq!(
            load_public_key(&fixture("es256_public.pem")).unwrap().0,
            Algorithm::ES256
        );
    }

    #[test]
    fn unusable_keys_are_refused_at_start_up() {
        let refused = |name: &str| load_public_key(&fixture(name)).unwrap_err().to_string();
        assert!(refused("rs256_test_only_private.pem").contains("holds a private key"));
        assert!(refused("p384_public.pem").contains("other than P-256"));
        assert!(refused("README.md").contains("not a PEM RSA or EC public key"));
        let missing = refused("no-such-key.pem");
        assert!(
            missing.starts_with("JWT_PUBLIC_KEY_FILE (jwt_public_key_file)"),
            "{missing}"
        );
        assert!(missing.contains("cannot be read"), "{missing}");
    }
}
