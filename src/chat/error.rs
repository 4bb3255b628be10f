//! The error codes the protocol promises to clients (docs/protocol.md).

use serde_json::json;

/// An error code a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    Unauthorized,
    Forbidden,
    NotFound,
    InvalidPayload,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
}

impl ErrorCode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::InvalidPayload => "INVALID_PAYLOAD",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::RateLimited => "RATE_LIMITED",
            Self::Unavailable => "UNAVAILABLE",
        }
    }
}

/// A refused command: its code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatError {
    pub code: ErrorCode,
    pub message: String,
}

impl ChatError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPayload, message)
    }

    /// A join beyond the channel's `maxMembers` (schema 7), refused the
    /// same way over Socket.IO and REST: `FORBIDDEN`, as for a channel
    /// the user may not join.
    pub(crate) fn channel_full(max: u32) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("Channel is full: it has its maximum of {max} members"),
        )
    }

    /// `{"code":…,"message":…}`, the body of an `error` event.
    pub(crate) fn body_json(&self) -> String {
        json!({"code": self.code.as_str(), "message": self.message}).to_string()
    }

    /// `{"ok":false,"error":{…}}`, the body of a failed ack.
    pub(crate) fn ack_json(&self) -> String {
        format!(r#"{{"ok":false,"error":{}}}"#, self.body_json())
    }
}
