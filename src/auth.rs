//! Who is connecting: JWT verification for the Socket.IO handshake
//! (docs/protocol.md#authentication).
//!
//! A client proves its user id with a JWT. The server accepts exactly the
//! algorithms its keys were configured for: HS256 with `JWT_SECRET`, RS256 or
//! ES256 with the public key in `JWT_PUBLIC_KEY_FILE`, or both at once (say,
//! during a migration from a shared secret to an identity provider). Every
//! other algorithm, `none` included, is refused before any signature work.
//! The crypto is jsonwebtoken's; this module only picks the key by the
//! token's `alg` and turns each failure into an [`AuthError`] whose message
//! never repeats the token (it is a bearer credential and messages end up in
//! logs).

use std::path::PathBuf;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Config;

mod gatrix;
mod keys;

pub(crate) use gatrix::{GatrixVerifier, refusal_message as gatrix_refusal_message};

/// Clock skew tolerated on `exp` and `nbf`, in seconds. Small, because the
/// issuer and this server are normally NTP-synced machines, and a large
/// leeway keeps a revoked-by-expiry token alive that much longer; but not
/// zero, so a token minted a moment ago on a clock slightly ahead works.
pub(crate) const LEEWAY_SECS: u64 = 5;

/// Longest token looked at. Real tokens are a few hundred bytes; the bound
/// keeps a hostile client from making the server base64-decode megabytes.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest `sub` (user id) accepted, in bytes: user ids are keys in presence
/// maps and the store, so they are bounded.
pub(crate) const MAX_SUB_BYTES: usize = 128;

/// The claims the chat server uses, taken from a verified token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Claims {
    /// The user id: non-empty, at most [`MAX_SUB_BYTES`] bytes.
    pub sub: String,
    /// Display name shown to other users; `None` when absent or empty.
    pub name: Option<String>,
    /// Expiry (Unix seconds); always present, tokens without it are refused
    /// so that a leaked token cannot live forever.
    pub exp: u64,
    /// Not-before (Unix seconds), when the issuer set it.
    pub nbf: Option<u64>,
    /// Issued-at (Unix seconds), when the issuer set it.
    pub iat: Option<u64>,
}

/// Why a token was refused, or why the verifier could not be built.
///
/// A refused client sees `UNAUTHORIZED` ([`AuthError::code`]) and why, as a
/// [`TokenRefusal`] (a fixed code, and the claim at fault): never the
/// token, a key or a configured value. The sentence is for the server's log.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token given")]
    Missing,
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("token is not a well-formed JWT")]
    Malformed,
    /// Carries the header's `alg`, reduced to at most 16 letters and digits.
    #[error("token algorithm {0:?} is not accepted by this server")]
    AlgorithmNotAllowed(String),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("token has no {0} claim")]
    MissingClaim(&'static str),
    #[error("token claim {0} has the wrong type")]
    BadClaim(&'static str),
    #[error("token audience does not match JWT_AUDIENCE")]
    WrongAudience,
    #[error("token issuer does not match JWT_ISSUER")]
    WrongIssuer,
    #[error("token sub must be a string of 1 to {MAX_SUB_BYTES} bytes")]
    BadSubject,
    #[error(
        "no JWT key configured: set JWT_SECRET (jwt_secret) or JWT_PUBLIC_KEY_FILE (jwt_public_key_file)"
    )]
    NoKey,
    #[error("JWT_PUBLIC_KEY_FILE (jwt_public_key_file) {} {problem}: {fix}", path.display())]
    Key {
        path: PathBuf,
        problem: String,
        fix: String,
    },
    #[error("cannot sign a token: {0}")]
    Signing(String),
}

impl AuthError {
    /// Why, as the refused client is told ([`TokenRefusal`]).
    pub fn refusal(&self) -> TokenRefusal {
        use AuthError as E;
        let reason = match self {
            E::Missing => "TOKEN_MISSING",
            E::Expired => "TOKEN_EXPIRED",
            E::NotYetValid => "TOKEN_NOT_YET_VALID",
            E::MissingClaim(_) => "TOKEN_MISSING_CLAIM",
            E::BadClaim(_) | E::BadSubject => "TOKEN_INVALID_CLAIM",
            E::AlgorithmNotAllowed(_) => "TOKEN_WRONG_ALGORITHM",
            E::WrongAudience => "TOKEN_WRONG_AUDIENCE",
            E::WrongIssuer => "TOKEN_WRONG_ISSUER",
            // A signature that does not verify says nothing more: telling
            // a forger which part failed would help them.
            E::TooLong | E::Malformed | E::BadSignature => "TOKEN_INVALID",
            // Not a token's fault (never returned by `verify`).
            E::NoKey | E::Key { .. } | E::Signing(_) => "TOKEN_INVALID",
        };
        let claim = match self {
            E::MissingClaim(c) | E::BadClaim(c) => Some(*c).filter(|c| !c.contains(' ')),
            E::BadSubject => Some("sub"),
            _ => None,
        };
        TokenRefusal { reason, claim }
    }
}

/// Why a token was refused, for the client: `reason` is one of the
/// `TOKEN_*` codes of docs/protocol.md ("Refusal"), `claim` the registered
/// claim at fault (`exp`, `sub`, `aud`, `iss`, `nbf`) for
/// `TOKEN_MISSING_CLAIM` and `TOKEN_INVALID_CLAIM`. Fixed strings only:
/// nothing the client sent and nothing configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRefusal {
    pub reason: &'static str,
    pub claim: Option<&'static str>,
}

impl TokenRefusal {
    /// Adds `reason` (and `claim`) to a JSON object: the CONNECT_ERROR's
    /// `data`, a REST error.
    pub fn add_to(&self, object: &mut serde_json::Map<String, serde_json::Value>) {
        object.insert("reason".into(), self.reason.into());
        if let Some(claim) = self.claim {
            object.insert("claim".into(), claim.into());
        }
    }
}

/// Verifies tokens against the configured keys. Cheap to clone (one per
/// shard) and immutable once built.
#[derive(Clone)]
pub(crate) struct Authenticator {
    /// One entry per accepted algorithm, each with its own key, so the
    /// token's `alg` selects the key and an HS256 token can never be checked
    /// against an RSA public key used as an HMAC secret.
    verifiers: Vec<Verifier>,
    /// The Gatrix backend's tokens, with `gatrix_compat` (`gatrix.rs`).
    gatrix: Option<GatrixVerifier>,
}

#[derive(Clone)]
struct Verifier {
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of Debug output.
        f.debug_struct("Authenticator")
            .field("algorithms", &self.algorithms())
            .finish()
    }
}

impl Authenticator {
    /// Builds the verifier from `jwt_secret`, `jwt_public_key_file`,
    /// `jwt_audience` and `jwt_issuer`. Fails when no key is configured (call
    /// [`Config::resolve_dev_secret`] first) or the key file is unusable.
    pub(crate) fn from_config(config: &Config) -> Result<Self, AuthError> {
        let mut verifiers = Vec::new();
        if let Some(secret) = config.jwt_secret.as_deref().filter(|s| !s.is_empty()) {
            let key = DecodingKey::from_secret(secret.as_bytes());
            verifiers.push(Verifier::new(Algorithm::HS256, key, config));
        }
        if let Some(path) = &config.jwt_public_key_file {
            let (alg, key) = keys::load_public_key(path)?;
            verifiers.push(Verifier::new(alg, key, config));
        }
        if verifiers.is_empty() {
            return Err(AuthError::NoKey);
        }
        Ok(Authenticator {
            verifiers,
            gatrix: GatrixVerifier::from_config(config),
        })
    }

    /// The Gatrix backend's verifier, when `gatrix_compat` is on.
    pub(crate) fn gatrix(&self) -> Option<&GatrixVerifier> {
        self.gatrix.as_ref()
    }

    /// The algorithms accepted, for the start-up log.
    pub(crate) fn algorithms(&self) -> Vec<Algorithm> {
        self.verifiers.iter().map(|v| v.alg).collect()
    }

    /// Checks `token`'s algorithm, signature and claims; returns its claims.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong);
        }
        let alg = header_alg(token)?;
        let verifier = Algorithm::from_str(&alg)
            .ok()
            .and_then(|alg| self.verifiers.iter().find(|v| v.alg == alg))
            .ok_or_else(|| AuthError::AlgorithmNotAllowed(printable(&alg)))?;
        let data = jsonwebtoken::decode::<RawClaims>(token, &verifier.key, &verifier.validation)
            .map_err(from_jwt_error)?;
        let raw = data.claims;
        let sub = raw.sub.ok_or(AuthError::MissingClaim("sub"))?;
        check_sub(&sub)?;
        Ok(Claims {
            sub,
            name: raw.name.filter(|n| !n.is_empty()),
            exp: raw.exp.ok_or(AuthError::MissingClaim("exp"))?,
            nbf: raw.nbf,
            iat: raw.iat,
        })
    }
}

impl Verifier {
    fn new(alg: Algorithm, key: DecodingKey, config: &Config) -> Self {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true; // only applies when nbf is present
        let mut required = vec!["exp", "sub"];
        match &config.jwt_audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // Unconfigured: accept any aud rather than jsonwebtoken's
            // default of refusing every token that has one.
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.jwt_issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Verifier {
            alg,
            key,
            validation,
        }
    }
}

/// Signs an HS256 token for `sub`, valid `ttl_secs` from now, with `aud` and
/// `iss` when given (pass the configured ones so the server accepts it).
/// Used by `gatrix-chat token` and by tests.
pub(crate) fn mint_hs256(
    secret: &str,
    sub: &str,
    name: Option<&str>,
    ttl_secs: u64,
    aud: Option<&str>,
    iss: Option<&str>,
) -> Result<String, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::NoKey);
    }
    check_sub(sub)?;
    let iat = jsonwebtoken::get_current_timestamp();
    let claims = MintClaims {
        sub,
        name,
        iat,
        exp: iat.saturating_add(ttl_secs),
        aud,
        iss,
    };
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| AuthError::Signing(e.to_string()))
}

/// The claims as they arrive, before the checks that give [`Claims`] its
/// guarantees; optional so a missing claim is reported as missing.
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    name: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
}

#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

fn check_sub(sub: &str) -> Result<(), AuthError> {
    match sub.len() {
        1..=MAX_SUB_BYTES => Ok(()),
        _ => Err(AuthError::BadSubject),
    }
}

/// The header's `alg`, read by hand: jsonwebtoken's `Header` cannot even
/// represent `"none"`, and the refusal should name the algorithm.
fn header_alg(token: &str) -> Result<String, AuthError> {
    #[derive(Deserialize)]
    struct AlgOnly {
        alg: String,
    }
    let encoded = token.split('.').next().unwrap_or_default();
    let json = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| AuthError::Malformed)?;
    let header: AlgOnly = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    Ok(header.alg)
}

/// Client-chosen text made safe for a log line.
fn printable(alg: &str) -> String {
    alg.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect()
}

fn from_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim_name(claim)),
        ErrorKind::InvalidClaimFormat(claim) => AuthError::BadClaim(claim_name(claim)),
        _ => AuthError::Malformed,
    }
}

/// jsonwebtoken names claims with owned strings; ours are static so the
/// error stays free of anything the client wrote.
fn claim_name(claim: &str) -> &'static str {
    match claim {
        "exp" => "exp",
        "nbf" => "nbf",
        "sub" => "sub",
        "aud" => "aud",
        "iss" => "iss",
        _ => "a registered",
    }
}

#[cfg(test)]
mod tests;
