//! Tests of [`Authenticator`] against tokens built every way a client could
//! send them, good and bad. RS256/ES256 use the fixed test-only keys in
//! `tests/fixtures/`.

use super::*;
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
const RS_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/rs256_test_only_private.pem");
const RS_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/rs256_public.pem");
const ES_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/es256_test_only_private.pem");

fn fixture(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn hs256_auth() -> Authenticator {
    let config = Config {
        jwt_secret: Some(SECRET.into()),
        ..Config::default()
    };
    Authenticator::from_config(&config).unwrap()
}

fn key_auth(file: &str) -> Authenticator {
    let config = Config {
        jwt_public_key_file: Some(fixture(file)),
        ..Config::default()
    };
    Authenticator::from_config(&config).unwrap()
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs256(claims: Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &claims,
    )
}

fn good_claims() -> Value {
    json!({ "sub": "user-42", "name": "Ada", "exp": now() + 600, "iat": now() })
}

/// Verifies and insists that the refusal does not echo the token.
fn refused(auth: &Authenticator, token: &str) -> AuthError {
    let err = auth.verify(token).expect_err("token should be refused");
    assert!(
        !token.is_empty() && !err.to_string().contains(token),
        "{err}"
    );
    err
}

#[test]
fn a_valid_hs256_token_gives_its_claims() {
    let (exp, nbf) = (now() + 600, now() - 10);
    let token =
        hs256(json!({ "sub": "user-42", "name": "Ada", "exp": exp, "nbf": nbf, "extra": [1] }));
    let claims = hs256_auth().verify(&token).unwrap();
    assert_eq!(claims.sub, "user-42");
    assert_eq!(claims.name.as_deref(), Some("Ada"));
    assert_eq!((claims.exp, claims.nbf, claims.iat), (exp, Some(nbf), None));
    let unnamed = hs256(json!({ "sub": "u1", "name": "", "exp": exp }));
    assert_eq!(hs256_auth().verify(&unnamed).unwrap().name, None);
}

#[test]
fn minted_tokens_verify_and_carry_aud_and_iss() {
    let token = mint_hs256(
        SECRET,
        "u1",
        Some("Bob"),
        3600,
        Some("chat"),
        Some("gatrix"),
    )
    .unwrap();
    let config = Config {
        jwt_secret: Some(SECRET.into()),
        jwt_audience: Some("chat".into()),
        jwt_issuer: Some("gatrix".into()),
        ..Config::default()
    };
    let claims = Authenticator::from_config(&config)
        .unwrap()
        .verify(&token)
        .unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.name.as_deref()),
        ("u1", Some("Bob"))
    );
    assert!(claims.exp >= now() + 3590 && claims.iat.is_some());
    assert!(matches!(
        mint_hs256(SECRET, "", None, 60, None, None),
        Err(AuthError::BadSubject)
    ));
    assert!(matches!(
        mint_hs256("", "u1", None, 60, None, None),
        Err(AuthError::NoKey)
    ));
}

#[test]
fn a_wrong_secret_is_a_bad_signature() {
    let token = mint_hs256(
        "another-secret-another-secret-xx",
        "u1",
        None,
        60,
        None,
        None,
    )
    .unwrap();
    assert!(matches!(
        refused(&hs256_auth(), &token),
        AuthError::BadSignature
    ));
}

#[test]
fn expiry_is_required_and_enforced_with_a_small_leeway() {
    let auth = hs256_auth();
    let expired = hs256(json!({ "sub": "u1", "exp": now() - 3600 }));
    assert!(matches!(refused(&auth, &expired), AuthError::Expired));
    let no_exp = hs256(json!({ "sub": "u1" }));
    assert!(matches!(
        refused(&auth, &no_exp),
        AuthError::MissingClaim("exp")
    ));
    let string_exp = hs256(json!({ "sub": "u1", "exp": "tomorrow" }));
    assert!(matches!(
        refused(&auth, &string_exp),
        AuthError::Malformed | AuthError::BadClaim("exp")
    ));
    let just_expired = hs256(json!({ "sub": "u1", "exp": now() - 1 }));
    assert!(auth.verify(&just_expired).is_ok(), "within LEEWAY_SECS");
}

#[test]
fn nbf_in_the_future_is_refused() {
    let auth = hs256_auth();
    let early = hs256(json!({ "sub": "u1", "exp": now() + 7200, "nbf": now() + 3600 }));
    assert!(matches!(refused(&auth, &early), AuthError::NotYetValid));
}

#[test]
fn sub_must_be_a_short_non_empty_string() {
    let auth = hs256_auth();
    for sub in [json!(""), json!("x".repeat(MAX_SUB_BYTES + 1))] {
        let token = hs256(json!({ "sub": sub, "exp": now() + 60 }));
        assert!(matches!(refused(&auth, &token), AuthError::BadSubject));
    }
    let missing = hs256(json!({ "exp": now() + 60 }));
    assert!(matches!(
        refused(&auth, &missing),
        AuthError::MissingClaim("sub")
    ));
    let number = hs256(json!({ "sub": 42, "exp": now() + 60 }));
    assert!(auth.verify(&number).is_err());
    let longest = hs256(json!({ "sub": "x".repeat(MAX_SUB_BYTES), "exp": now() + 60 }));
    assert!(auth.verify(&longest).is_ok());
}

#[test]
fn aud_and_iss_are_checked_only_when_configured() {
    let strict = Authenticator::from_config(&Config {
        jwt_secret: Some(SECRET.into()),
        jwt_audience: Some("chat".into()),
        jwt_issuer: Some("gatrix".into()),
        ..Config::default()
    })
    .unwrap();
    let with = |aud: Value, iss: Value| {
        let mut claims = good_claims();
        claims["aud"] = aud;
        claims["iss"] = iss;
        hs256(claims)
    };
    assert!(strict.verify(&with(json!("chat"), json!("gatrix"))).is_ok());
    assert!(
        strict
            .verify(&with(json!(["chat", "other"]), json!("gatrix")))
            .is_ok()
    );
    assert!(matches!(
        refused(&strict, &with(json!("billing"), json!("gatrix"))),
        AuthError::WrongAudience
    ));
    assert!(matches!(
        refused(&strict, &with(json!("chat"), json!("evil"))),
        AuthError::WrongIssuer
    ));
    let mut no_aud = good_claims();
    no_aud["iss"] = json!("gatrix");
    assert!(matches!(
        refused(&strict, &hs256(no_aud)),
        AuthError::MissingClaim("aud")
    ));
    assert!(matches!(
        refused(&strict, &hs256(good_claims())),
        AuthError::MissingClaim("aud" | "iss")
    ));

    // Unconfigured: whatever aud/iss the issuer put in is accepted.
    assert!(
        hs256_auth()
            .verify(&with(json!("billing"), json!("anyone")))
            .is_ok()
    );
}

#[test]
fn alg_none_is_refused_cleanly() {
    let encode = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!(
        "{}.{}.",
        encode(json!({"alg":"none","typ":"JWT"})),
        encode(good_claims())
    );
    let err = refused(&hs256_auth(), &token);
    assert!(
        matches!(&err, AuthError::AlgorithmNotAllowed(alg) if alg == "none"),
        "{err}"
    );
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let auth = hs256_auth();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
    for token in [
        "x",
        "a.b",
        "...",
        "not a token",
        "e30.e30.e30",
        &format!("{header}.%%%.x"),
        &format!("{header}.e30"),
    ] {
        assert!(auth.verify(token).is_err(), "{token}");
    }
    assert!(matches!(
        refused(&auth, &"a".repeat(MAX_TOKEN_BYTES + 1)),
        AuthError::TooLong
    ));
    let weird_alg = format!(
        "{}.e30.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256\n<script>"}"#)
    );
    let err = refused(&auth, &weird_alg);
    assert!(
        matches!(&err, AuthError::AlgorithmNotAllowed(alg) if alg == "HS256script"),
        "{err}"
    );
}

#[test]
fn hs256_is_refused_by_a_public_key_only_server() {
    let auth = key_auth("rs256_public.pem");
    assert_eq!(auth.algorithms(), [Algorithm::RS256]);
    let token = hs256(good_claims());
    assert!(
        matches!(refused(&auth, &token), AuthError::AlgorithmNotAllowed(alg) if alg == "HS256")
    );
    // The classic key-confusion attack: HMAC keyed with the public PEM.
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RS_PUBLIC),
        &good_claims(),
    );
    assert!(matches!(
        refused(&auth, &forged),
        AuthError::AlgorithmNotAllowed(_)
    ));
}

#[test]
fn rs256_and_es256_tokens_verify_with_their_public_keys() {
    let rs = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RS_PRIVATE).unwrap(),
        &good_claims(),
    );
    let es = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(ES_PRIVATE).unwrap(),
        &good_claims(),
    );
    let rs_auth = key_auth("rs256_public.pem");
    let es_auth = key_auth("es256_public.pem");
    assert_eq!(rs_auth.verify(&rs).unwrap().sub, "user-42");
    assert_eq!(es_auth.verify(&es).unwrap().sub, "user-42");
    assert!(matches!(
        refused(&rs_auth, &es),
        AuthError::AlgorithmNotAllowed(_)
    ));
    assert!(matches!(
        refused(&es_auth, &rs),
        AuthError::AlgorithmNotAllowed(_)
    ));

    // A token signed by another RSA key: same alg, wrong signature.
    let mut tampered = rs.clone();
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    assert!(matches!(
        refused(&rs_auth, &tampered),
        AuthError::BadSignature
    ));
}

#[test]
fn secret_and_key_together_accept_both() {
    let config = Config {
        jwt_secret: Some(SECRET.into()),
        jwt_public_key_file: Some(fixture("es256_public.pem")),
        ..Config::default()
    };
    let auth = Authenticator::from_config(&config).unwrap();
    assert_eq!(auth.algorithms(), [Algorithm::HS256, Algorithm::ES256]);
    let es = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(ES_PRIVATE).unwrap(),
        &good_claims(),
    );
    assert!(auth.verify(&es).is_ok());
    assert!(auth.verify(&hs256(good_claims())).is_ok());
    assert!(!format!("{auth:?}").contains(SECRET));
}

#[test]
fn building_needs_a_usable_key() {
    assert!(matches!(
        Authenticator::from_config(&Config::default()),
        Err(AuthError::NoKey)
    ));
    let bad = Config {
        jwt_public_key_file: Some(fixture("p384_public.pem")),
        ..Config::default()
    };
    assert!(matches!(
        Authenticator::from_config(&bad),
        Err(AuthError::Key { .. })
    ));
}
