//! A keep-alive HTTP/1.1 client for the REST API tests, and a caller
//! bound to one user.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

use super::TestServer;

/// Read timeout of the client.
const SEC: Duration = Duration::from_secs(5);

/// One answer: status, lower-cased headers, and the body as JSON (Null
/// when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub json: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("<none>")
    }
}

/// A blocking HTTP/1.1 client on one keep-alive connection.
pub struct Http {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    pub fn connect(server: &TestServer) -> Http {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, server.port())).expect("connect");
        stream.set_read_timeout(Some(SEC)).unwrap();
        Http {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends one request and reads its answer (bodies have Content-Length).
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Answer {
        self.send_with(method, path, &[], token, body)
    }

    /// [`Http::send`] with extra request headers (`Origin`, ...).
    pub fn send_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Answer {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        self.stream.write_all(&bytes).expect("write request");
        self.read_answer(method == "HEAD")
    }

    pub fn read_answer(&mut self, head_only: bool) -> Answer {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            self.fill();
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("UTF-8 head");
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let len = if head_only { 0 } else { len };
        while self.buf.len() < len {
            self.fill();
        }
        let body: Vec<u8> = self.buf.drain(..len).collect();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).expect("a JSON body")
        };
        Answer {
            status,
            headers,
            json,
        }
    }

    pub fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).expect("read answer");
        assert!(n > 0, "connection closed before a full answer");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Did the server close the connection (EOF within `within`)?
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => panic!("unexpected bytes from the server"),
        }
    }
}

/// The API as one user sees it; each call on a fresh connection.
pub struct Api<'a> {
    pub server: &'a TestServer,
    pub token: Option<String>,
}

impl Api<'_> {
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string());
        self.raw(method, path, body.as_deref().map(str::as_bytes))
    }

    pub fn raw(&self, method: &str, path: &str, body: Option<&[u8]>) -> Answer {
        Http::connect(self.server).send(method, path, self.token.as_deref(), body)
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None)
    }

    pub fn create(&self, name: &str, kind: &str, members: &[&str]) -> Value {
        let body = json!({"name": name, "type": kind, "members": members});
        let a = self.call("POST", "/api/v1/channels", Some(body));
        assert_eq!(a.status, 201, "{a:?}");
        a.json["channel"].clone()
    }

    pub fn send(&self, channel: &str, content: &str) -> Value {
        let body = json!({"channelId": channel, "content": content});
        let a = self.call("POST", "/api/v1/messages", Some(body));
        assert_eq!(a.status, 201, "{a:?}");
        a.json["message"].clone()
    }
}

pub fn as_user<'a>(server: &'a TestServer, user: &str) -> Api<'a> {
    Api {
        server,
        token: Some(server.token(user)),
    }
}
