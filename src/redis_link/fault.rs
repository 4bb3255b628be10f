//! What kind of failure a Redis error is: one classification for every
//! thread's log lines (`fault = <code>`), so an operator reads the same
//! words whichever subsystem met it.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// A Redis failure by kind. Every kind drops the connection it happened
/// on (the thread connects again after its backoff): a connection that
/// saw a timeout may still deliver the late answer, and a fresh one is
/// cheap next to reasoning about which state an error left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// No answer within the timeout (a stopped or overloaded server, a
    /// dead host).
    Timeout,
    /// The connection could not be made or broke (refused, reset, closed).
    Unreachable,
    /// The server refused our credentials.
    Auth,
    /// The server is loading its data set or is a read-only replica:
    /// it will serve us later, or another node will.
    Unavailable,
    /// Redis Cluster: the slot is elsewhere, moving, or the cluster is
    /// down.
    Cluster,
    /// A script failed or is missing: a bug or a server without scripting.
    Script,
    /// Anything else (an answer of an unexpected type, a server error).
    Other,
}

impl Fault {
    /// The kind of `e`.
    pub(crate) fn of(e: &RedisError) -> Self {
        if e.is_timeout() {
            return Fault::Timeout;
        }
        match e.kind() {
            ErrorKind::Io => Fault::Unreachable,
            ErrorKind::AuthenticationFailed => Fault::Auth,
            ErrorKind::Server(ServerErrorKind::NoPerm) => Fault::Auth,
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::MasterDown,
            ) => Fault::Unavailable,
            ErrorKind::Server(
                ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::CrossSlot,
            )
            | ErrorKind::ClusterConnectionNotFound => Fault::Cluster,
            ErrorKind::Server(ServerErrorKind::NoScript) => Fault::Script,
            _ if e.code() == Some("ERR") && e.to_string().contains("script") => Fault::Script,
            _ => Fault::Other,
        }
    }

    /// The code in log lines.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Fault::Timeout => "timeout",
            Fault::Unreachable => "unreachable",
            Fault::Auth => "auth",
            Fault::Unavailable => "unavailable",
            Fault::Cluster => "cluster",
            Fault::Script => "script",
            Fault::Other => "other",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_kind() {
        let io: RedisError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        assert_eq!(Fault::of(&io), Fault::Unreachable);
        let slow: RedisError = std::io::Error::from(std::io::ErrorKind::TimedOut).into();
        assert_eq!(Fault::of(&slow), Fault::Timeout);
        let moved: RedisError = (ErrorKind::Server(ServerErrorKind::Moved), "MOVED").into();
        assert_eq!(Fault::of(&moved), Fault::Cluster);
        let auth: RedisError = (ErrorKind::AuthenticationFailed, "WRONGPASS").into();
        assert_eq!(Fault::of(&auth), Fault::Auth);
        let loading: RedisError =
            (ErrorKind::Server(ServerErrorKind::BusyLoading), "LOADING").into();
        assert_eq!(Fault::of(&loading).code(), "unavailable");
        let parse: RedisError = (ErrorKind::UnexpectedReturnType, "not a number").into();
        assert_eq!(Fault::of(&parse), Fault::Other);
    }
}
