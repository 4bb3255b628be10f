//! One authenticated REST request as the route handlers see it ([`Call`]):
//! who asks, the shard's REST [`Context`], and the two ways to reach the
//! store. Plus the small JSON readers the handlers validate bodies with.

use serde_json::{Map, Value};

use super::context::Context;
use super::reply::ApiError;
use crate::store::Store;

pub(crate) struct Call<'a> {
    pub ctx: &'a Context,
    /// The caller's user id (the token's `sub`).
    pub user: String,
}

impl Call<'_> {
    /// Runs `f` on a store reader thread. A full queue is 503 at once
    /// rather than a wait: the shard never blocks on the store.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Store) -> Result<T, ApiError> + Send + 'static,
    {
        let rx = self.ctx.store.read(f)?;
        rx.await.map_err(|_| gone())?
    }

    /// Runs `f` on the store writer thread. Every REST write goes there, in
    /// one order with messages, so a permission check and the change it
    /// guards (inside the same `f`) cannot interleave with another write.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Store) -> Result<T, ApiError> + Send + 'static,
    {
        let rx = self.ctx.store.write(f)?;
        rx.await.map_err(|_| gone())?
    }
}

/// The store thread dropped the job: it is shutting down.
fn gone() -> ApiError {
    ApiError::unavailable("the store is shutting down")
}

/// The request body as a JSON object.
pub(crate) fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid("the body must be a JSON object")),
        Err(e) => Err(ApiError::invalid(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// What an optional, nullable string field holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Absent,
    Null,
    Text(String),
}

/// A string field of at most `max_chars` characters (Unicode scalar
/// values, as users count them), or absent, or null.
pub(crate) fn text(p: &Map<String, Value>, key: &str, max_chars: usize) -> Result<Field, ApiError> {
    match p.get(key) {
        None => Ok(Field::Absent),
        Some(Value::Null) => Ok(Field::Null),
        Some(Value::String(s)) if s.chars().count() <= max_chars => Ok(Field::Text(s.clone())),
        Some(Value::String(_)) => Err(ApiError::invalid(format!(
            "{key} is longer than {max_chars} characters"
        ))),
        Some(_) => Err(ApiError::invalid(format!("{key} must be a string"))),
    }
}

/// A decimal message id from a path (ids are u64, below 2^53).
pub(crate) fn message_id(s: &str) -> Result<u64, ApiError> {
    let valid = !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    valid
        .then(|| s.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::invalid("a message id is a decimal number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_and_fields() {
        assert!(object(b"{").is_err());
        assert!(object(b"[1]").is_err());
        let p = object(br#"{"a":"xy","b":null,"c":1}"#).unwrap();
        assert_eq!(text(&p, "a", 2), Ok(Field::Text("xy".into())));
        assert!(text(&p, "a", 1).is_err());
        assert_eq!(text(&p, "b", 1), Ok(Field::Null));
        assert_eq!(text(&p, "z", 1), Ok(Field::Absent));
        assert!(text(&p, "c", 1).is_err());
        let p = json!({"n": "ééé"});
        assert!(matches!(
            text(p.as_object().unwrap(), "n", 3),
            Ok(Field::Text(_))
        ));
    }

    #[test]
    fn message_ids() {
        assert_eq!(message_id("18446744073709551615"), Ok(u64::MAX));
        for bad in ["", "-1", "1.5", "abc", "18446744073709551616", "+1"] {
            assert!(message_id(bad).is_err(), "{bad}");
        }
    }
}
