//! What a REST handler answers: JSON responses, and [`ApiError`], the
//! `{"error":{"code":…,"message":…}}` shape with its HTTP status
//! (docs/api.md#errors). Chat, store and auth failures become an `ApiError`
//! here, in one place, so every route maps them alike.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use crate::chat::{ChatError, ErrorCode};
use crate::store::{Busy, StoreError};

/// Every response body is complete before it is sent.
pub(crate) type Reply = Response<Full<Bytes>>;

/// A refused request. The codes are the chat layer's ([`ErrorCode`]) plus
/// the few that only HTTP has (CONFLICT, METHOD_NOT_ALLOWED).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// A 401's reason (`reason`, `claim` in the body).
    pub token: Option<crate::auth::TokenRefusal>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            token: None,
        }
    }

    /// Says why a token was refused.
    pub(crate) fn with_token_refusal(mut self, refusal: crate::auth::TokenRefusal) -> Self {
        self.token = Some(refusal);
        self
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PAYLOAD", message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }

    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error",
        )
    }

    pub(crate) fn into_reply(self) -> Reply {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        if let Some(t) = self.token {
            t.add_to(&mut error);
        }
        let body = serde_json::json!({ "error": error });
        let mut r = json(self.status, body.to_string());
        match self.status {
            // RFC 9110: a 401 names the scheme it wants.
            StatusCode::UNAUTHORIZED => {
                r.headers_mut()
                    .insert("www-authenticate", HeaderValue::from_static("Bearer"));
            }
            // Sends and reads refused for load are worth retrying soon.
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
            }
            _ => {}
        }
        r
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        let status = match e.code {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::InvalidPayload => StatusCode::BAD_REQUEST,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.code.as_str(), e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "store unavailable");
                Self::unavailable("the store is unavailable; try again")
            }
            StoreError::Conflict(detail) => {
                tracing::debug!(error = %detail, "store conflict");
                Self::new(
                    StatusCode::CONFLICT,
                    "CONFLICT",
                    "conflicts with the current state",
                )
            }
            StoreError::Other(detail) => {
                // The detail is SQL-level; it belongs in the log, not to clients.
                tracing::error!(error = %detail, "store error");
                Self::internal()
            }
        }
    }
}

impl From<Busy> for ApiError {
    fn from(_: Busy) -> Self {
        Self::unavailable("the store is busy; try again")
    }
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Answers are per caller and change with every write.
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

/// A non-JSON body (the metrics exposition) with its content type.
pub(crate) fn text(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

/// `{"<key>":<value>}`, where `value_json` is already JSON.
pub(crate) fn wrapped(status: StatusCode, key: &str, value_json: &str) -> Reply {
    json(status, format!(r#"{{"{key}":{value_json}}}"#))
}

/// 204 No Content.
pub(crate) fn no_content() -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(r: Reply) -> String {
        let b = futures_lite::future::block_on(r.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn errors_have_the_protocol_shape() {
        let r = ApiError::from(ChatError::new(ErrorCode::PayloadTooLarge, "big")).into_reply();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body(r),
            r#"{"error":{"code":"PAYLOAD_TOO_LARGE","message":"big"}}"#
        );
        let r = ApiError::unauthorized("no token").into_reply();
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }

    #[test]
    fn store_failures_map_to_statuses() {
        let s = |e| ApiError::from(e).status;
        assert_eq!(
            s(StoreError::Unavailable("x".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(s(StoreError::Conflict("x".into())), StatusCode::CONFLICT);
        assert_eq!(
            s(StoreError::Other("x".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(ApiError::from(Busy).status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
