//! The Gatrix backend's access tokens (docs/protocol.md, "The Gatrix
//! dialect"): HS256 with the backend's secret, `iss: gatrix`,
//! `aud: gatrix-users`, the user id in `sub` or, as the backend signs them,
//! in `userId` (a string, or a number in older builds). A connection whose
//! token carries the backend's issuer is checked here and nowhere else, so
//! its refusal speaks the words the Gatrix frontend acts on.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    AuthError, Claims, LEEWAY_SECS, MAX_TOKEN_BYTES, check_sub, from_jwt_error, header_alg,
};
use crate::config::Config;

/// Verifies the Gatrix backend's tokens; built only with `gatrix_compat`.
#[derive(Clone)]
pub(crate) struct GatrixVerifier {
    key: DecodingKey,
    validation: Validation,
    issuer: String,
    user_claim: String,
}

impl GatrixVerifier {
    /// `None` unless `gatrix_compat` is on with a secret (config validation
    /// refuses it on without one).
    pub(crate) fn from_config(config: &Config) -> Option<Self> {
        let secret = config
            .gatrix_jwt_secret
            .as_deref()
            .filter(|s| config.gatrix_compat && !s.is_empty())?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_audience(&[&config.gatrix_jwt_audience]);
        validation.set_issuer(&[&config.gatrix_jwt_issuer]);
        // `sub` is not required: the backend puts the user in `userId`.
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        Some(Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            issuer: config.gatrix_jwt_issuer.clone(),
            user_claim: config.gatrix_user_id_claim.clone(),
        })
    }

    /// Whether `token` says it is the backend's (its `iss`, not yet
    /// verified): the dialect is chosen by this, then [`Self::verify`]
    /// decides. A native token never carries the backend's issuer.
    pub(crate) fn claims_issuer(&self, token: &str) -> bool {
        #[derive(Deserialize)]
        struct IssOnly {
            iss: Option<String>,
        }
        if token.len() > MAX_TOKEN_BYTES {
            return false;
        }
        let Some(payload) = token.split('.').nth(1) else {
            return false;
        };
        URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice::<IssOnly>(&json).ok())
            .and_then(|c| c.iss)
            .is_some_and(|iss| iss == self.issuer)
    }

    /// Checks the algorithm (HS256 only), signature, `exp`, `aud` and `iss`;
    /// the user id is `sub`, else the configured claim (a string, or an
    /// integer taken as its decimal string).
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong);
        }
        let alg = header_alg(token)?;
        if alg != "HS256" {
            return Err(AuthError::AlgorithmNotAllowed(super::printable(&alg)));
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(from_jwt_error)?;
        let claims = data.claims;
        let user = match claims.get("sub").or_else(|| claims.get(&self.user_claim)) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
            Some(_) => return Err(AuthError::BadSubject),
            None => return Err(AuthError::MissingClaim("sub")),
        };
        check_sub(&user)?;
        let number = |k: &str| claims.get(k).and_then(Value::as_u64);
        Ok(Claims {
            sub: user,
            name: None,
            exp: number("exp").ok_or(AuthError::MissingClaim("exp"))?,
            nbf: number("nbf"),
            iat: number("iat"),
        })
    }
}

/// The CONNECT_ERROR `message` of a refused backend token. The Gatrix
/// frontend refreshes its token and reconnects only when the message holds
/// `jwt`, `expired` or `Authentication error`: an expired token says so;
/// any other refusal keeps the native `unauthorized`, since a refreshed
/// token would be refused the same way and the client would loop.
pub(crate) fn refusal_message(e: &AuthError) -> &'static str {
    match e {
        AuthError::Expired => "Authentication error: jwt expired",
        _ => "unauthorized",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "backend-secret-of-at-least-32-bytes!!";

    fn verifier() -> GatrixVerifier {
        let config = Config {
            gatrix_compat: true,
            gatrix_jwt_secret: Some(SECRET.into()),
            ..Config::default()
        };
        GatrixVerifier::from_config(&config).expect("on")
    }

    fn sign(claims: Value, secret: &str) -> String {
        let key = EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    fn backend(user: Value, exp_in: i64) -> Value {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        json!({"userId": user, "email": "a@b.c", "orgId": "o", "iat": now,
               "exp": now + exp_in, "iss": "gatrix", "aud": "gatrix-users"})
    }

    #[test]
    fn backend_tokens_verify_with_string_or_number_user_ids() {
        let v = verifier();
        let t = sign(backend(json!("01HZX3"), 900), SECRET);
        assert!(v.claims_issuer(&t));
        assert_eq!(v.verify(&t).unwrap().sub, "01HZX3");
        let t = sign(backend(json!(42), 900), SECRET);
        assert_eq!(v.verify(&t).unwrap().sub, "42");
    }

    #[test]
    fn refusals() {
        let v = verifier();
        let expired = sign(backend(json!("u"), -3600), SECRET);
        let e = v.verify(&expired).unwrap_err();
        assert!(matches!(e, AuthError::Expired), "{e}");
        assert!(refusal_message(&e).contains("expired"));
        let forged = sign(backend(json!("u"), 900), "another-secret-another-secret-x");
        let e = v.verify(&forged).unwrap_err();
        assert!(matches!(e, AuthError::BadSignature), "{e}");
        assert_eq!(refusal_message(&e), "unauthorized");
        let mut refresh = backend(json!("u"), 900);
        refresh["aud"] = json!("gatrix-refresh");
        let e = v.verify(&sign(refresh, SECRET)).unwrap_err();
        assert!(matches!(e, AuthError::WrongAudience), "{e}");
        let mut anon = backend(json!("u"), 900);
        anon.as_object_mut().unwrap().remove("userId");
        let e = v.verify(&sign(anon, SECRET)).unwrap_err();
        assert!(matches!(e, AuthError::MissingClaim("sub")), "{e}");
    }

    #[test]
    fn native_tokens_are_not_the_backends() {
        let v = verifier();
        let native = crate::auth::mint_hs256(SECRET, "alice", None, 60, None, None).unwrap();
        assert!(!v.claims_issuer(&native));
        let other = crate::auth::mint_hs256(SECRET, "alice", None, 60, None, Some("me")).unwrap();
        assert!(!v.claims_issuer(&other));
        assert!(!v.claims_issuer("not.a.jwt"));
    }
}
