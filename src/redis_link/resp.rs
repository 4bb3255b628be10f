//! A sharded pub/sub subscriber's connection to one Redis node, with the
//! little of RESP2 it needs: the `redis` crate's sync `PubSub` has no
//! SSUBSCRIBE, skips `smessage`s in RESP2 and hides the server's own
//! `sunsubscribe` (a slot that moved), and its plain connection counts a
//! read timeout as a reply to skip later, which a subscriber probing an
//! idle connection meets every few seconds. Commands are still encoded by
//! the crate (`Cmd::get_packed_command`); only replies are read here, into
//! the crate's `Value`, from a buffer that keeps a partly received reply
//! across a read timeout.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use redis::{Cmd, ErrorKind, RedisError, RedisResult, Value};

/// The longest reply accepted (a bulk string, an array's length): the
/// events are small; anything larger is a broken stream.
const MAX_LEN: usize = 64 << 20;

fn protocol(what: &'static str) -> RedisError {
    (ErrorKind::Parse, "RESP", what.to_owned()).into()
}

/// One node's subscriber connection.
pub(crate) struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects to `host:port` within `timeout` (each read and write
    /// bounded by it too), authenticating as `client`'s settings say.
    pub(crate) fn connect(
        host: &str,
        port: u16,
        like: &redis::Client,
        timeout: Duration,
    ) -> RedisResult<Self> {
        let addr = (host, port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| protocol("no address"))?;
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut conn = Self {
            stream,
            buf: Vec::new(),
        };
        let settings = like.get_connection_info().redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
            conn.send(&auth)?;
            conn.read()?;
        }
        Ok(conn)
    }

    /// How long a read waits before it returns a timeout.
    pub(crate) fn set_read_timeout(&self, d: Duration) -> RedisResult<()> {
        Ok(self.stream.set_read_timeout(Some(d))?)
    }

    pub(crate) fn send(&mut self, cmd: &Cmd) -> RedisResult<()> {
        Ok(self.stream.write_all(&cmd.get_packed_command())?)
    }

    /// The next reply or push. A timeout (`is_timeout`) loses nothing:
    /// what arrived of a reply stays buffered for the next call. An error
    /// reply is an `Err` of the server's kind.
    pub(crate) fn read(&mut self) -> RedisResult<Value> {
        loop {
            if let Some((value, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return value;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One RESP2 value from the start of `buf` and the bytes it took, or
/// `None` if `buf` holds only part of it. An error reply is the inner
/// `Err`; a malformed stream the outer one.
type Parsed = Option<(RedisResult<Value>, usize)>;

fn parse(buf: &[u8]) -> RedisResult<Parsed> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..end].split_first() else {
        return Err(protocol("an empty line"));
    };
    let text = std::str::from_utf8(line).map_err(|_| protocol("a line not UTF-8"))?;
    let after = end + 2;
    let number = || -> RedisResult<i64> { text.parse().map_err(|_| protocol("not a number")) };
    match kind {
        b'+' => Ok(Some((Ok(Value::SimpleString(text.to_owned())), after))),
        b'-' => {
            let (code, message) = text.split_once(' ').unwrap_or((text, ""));
            let e = RedisError::from((
                ErrorKind::Server(redis::ServerErrorKind::ResponseError),
                "server error",
                format!("{code} {message}"),
            ));
            Ok(Some((Err(e), after)))
        }
        b':' => Ok(Some((Ok(Value::Int(number()?)), after))),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Ok(Value::Nil), after)));
            }
            let len = usize::try_from(len).map_err(|_| protocol("a length"))?;
            if len > MAX_LEN {
                return Err(protocol("a bulk string too long"));
            }
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            let bytes = buf[after..after + len].to_vec();
            Ok(Some((Ok(Value::BulkString(bytes)), after + len + 2)))
        }
        b'*' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Ok(Value::Nil), after)));
            }
            let len = usize::try_from(len).map_err(|_| protocol("a length"))?;
            if len > MAX_LEN {
                return Err(protocol("an array too long"));
            }
            let mut items = Vec::with_capacity(len.min(16));
            let mut at = after;
            for _ in 0..len {
                let Some((item, used)) = parse(&buf[at..])? else {
                    return Ok(None);
                };
                items.push(item?);
                at += used;
            }
            Ok(Some((Ok(Value::Array(items)), at)))
        }
        _ => Err(protocol("an unknown type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> (Value, usize) {
        let (v, n) = parse(bytes).expect("well formed").expect("complete");
        (v.expect("not an error reply"), n)
    }

    #[test]
    fn pub_sub_replies_are_read_whole_or_not_at_all() {
        let msg = b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n+OK\r\n";
        let (v, n) = one(msg);
        assert_eq!(
            v,
            Value::Array(vec![
                Value::BulkString(b"smessage".to_vec()),
                Value::BulkString(b"ch".to_vec()),
                Value::BulkString(b"hello".to_vec()),
            ])
        );
        assert_eq!(&msg[n..], b"+OK\r\n");
        // Every prefix is incomplete, never an error.
        for cut in 0..n {
            assert!(parse(&msg[..cut]).expect("a prefix").is_none(), "cut {cut}");
        }
        assert_eq!(one(b":12\r\n").0, Value::Int(12));
        assert_eq!(one(b"$-1\r\n").0, Value::Nil);
        let (e, _) = parse(b"-MOVED 3999 127.0.0.1:6381\r\n")
            .expect("well formed")
            .expect("complete");
        assert!(e.expect_err("an error reply").to_string().contains("MOVED"));
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b"$abc\r\n").is_err());
        assert!(parse(b"$999999999999\r\n").is_err());
    }
}
