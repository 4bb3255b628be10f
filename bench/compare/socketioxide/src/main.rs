//! In-memory comparison server for `gatrix-chat-bench`: the subset of the
//! gatrix-chat wire contract (docs/protocol.md) that the benchmark uses,
//! on socketioxide + axum, one tokio thread (current_thread runtime).
//!
//! - Socket.IO CONNECT with `{"token":"<jwt>"}`: HS256-verified with
//!   JWT_SECRET (refused with `44` otherwise); `sub` is the user id.
//! - `POST /api/v1/channels` (Bearer JWT) -> 201 `{"channel":{"id":…}}`.
//! - `join_channel` -> joins the room, ack `{"ok":true,"lastSeq":N}`.
//! - `send_message` -> next per-channel seq, `message` to the room
//!   (sender included), ack `{"ok":true,"message":{…}}`.
//! Nothing is persisted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

#[derive(Deserialize)]
struct Auth {
    token: Option<String>,
}

/// The user id of a connected socket (kept in its extensions).
#[derive(Clone)]
struct UserId(Arc<str>);

#[derive(Deserialize)]
struct JoinReq {
    #[serde(rename = "channelId")]
    channel_id: String,
}

#[derive(Deserialize)]
struct SendReq {
    #[serde(rename = "channelId")]
    channel_id: String,
    content: String,
}

#[derive(Serialize)]
struct Message<'a> {
    id: String,
    #[serde(rename = "channelId")]
    channel_id: &'a str,
    seq: u64,
    #[serde(rename = "userId")]
    user_id: &'a str,
    content: &'a str,
    #[serde(rename = "createdAt")]
    created_at: String,
}

struct Keys {
    key: DecodingKey,
    validation: Validation,
}

impl Keys {
    fn user(&self, token: &str) -> Option<String> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .ok()
            .map(|d| d.claims.sub)
    }
}

static NEXT_CHANNEL: AtomicU64 = AtomicU64::new(1);
static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(1);
/// Deliveries a broadcast could not queue (a socket's buffer full or the
/// socket closed): logged once a second while it grows.
static DROPPED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// channel id -> last seq. One runtime thread, so a thread-local map
    /// is the whole store.
    static CHANNELS: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
}

fn now_iso() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn create_channel(
    State(keys): State<Arc<Keys>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let user = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| keys.user(t));
    let Some(user) = user else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error":{"code":"UNAUTHORIZED","message":"bad token"}})),
        );
    };
    let id = NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed).to_string();
    CHANNELS.with(|c| c.borrow_mut().insert(id.clone(), 0));
    let name = body.get("name").cloned().unwrap_or(Value::Null);
    let kind = body.get("type").cloned().unwrap_or(json!("public"));
    (
        StatusCode::CREATED,
        Json(json!({"channel":{"id":id,"name":name,"type":kind,"createdBy":user,"createdAt":now_iso(),"lastSeq":0}})),
    )
}

async fn on_connect(s: SocketRef) {
    s.on(
        "join_channel",
        async |s: SocketRef, Data(req): Data<JoinReq>, ack: AckSender| {
            let last = CHANNELS.with(|c| c.borrow().get(&req.channel_id).copied());
            match last {
                Some(last) => {
                    s.join(req.channel_id);
                    let _ = ack.send(&json!({"ok":true,"lastSeq":last}));
                }
                None => {
                    let _ = ack.send(&json!({"ok":false,"error":{"code":"NOT_FOUND","message":"no such channel"}}));
                }
            }
        },
    );
    s.on(
        "send_message",
        async |s: SocketRef, Data(req): Data<SendReq>, ack: AckSender| {
            let seq = CHANNELS.with(|c| {
                c.borrow_mut().get_mut(&req.channel_id).map(|n| {
                    *n += 1;
                    *n
                })
            });
            let Some(seq) = seq else {
                let _ = ack.send(&json!({"ok":false,"error":{"code":"NOT_FOUND","message":"no such channel"}}));
                return;
            };
            let user = s.extensions.get::<UserId>().map(|u| u.0).unwrap_or_else(|| "".into());
            let msg = Message {
                id: NEXT_MESSAGE.fetch_add(1, Ordering::Relaxed).to_string(),
                channel_id: &req.channel_id,
                seq,
                user_id: &user,
                content: &req.content,
                created_at: now_iso(),
            };
            // Broadcast to the room, sender included (encoded once).
            if let Err(e) = s.within(req.channel_id.clone()).emit("message", &msg).await {
                let n = match e {
                    socketioxide::BroadcastError::Socket(v) => v.len() as u64,
                    _ => 1,
                };
                DROPPED.fetch_add(n, Ordering::Relaxed);
            }
            let _ = ack.send(&json!({"ok":true,"message":msg}));
        },
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let secret = std::env::var("JWT_SECRET").expect("JWT_SECRET must be set");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.required_spec_claims.insert("sub".into());
    let keys = Arc::new(Keys {
        key: DecodingKey::from_secret(secret.as_bytes()),
        validation,
    });
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);

    let (layer, io) = SocketIo::builder().build_layer();
    let k = keys.clone();
    // Connect middleware: a refusal is sent as CONNECT_ERROR (`44`).
    let auth = async move |s: SocketRef, Data(auth): Data<Auth>| -> Result<(), &'static str> {
        let user = auth.token.as_deref().and_then(|t| k.user(t)).ok_or("UNAUTHORIZED")?;
        s.extensions.insert(UserId(user.into()));
        Ok(())
    };
    use socketioxide::handler::ConnectHandler;
    io.ns("/", on_connect.with(auth));

    let app = axum::Router::new()
        .route("/api/v1/channels", post(create_channel))
        .with_state(keys)
        .layer(layer);
    // TCP_NODELAY on every accepted socket (default), as Node.js's http
    // server and gatrix-chat do; axum::serve alone leaves Nagle on, which
    // NODELAY=0 keeps (fewer, larger packets; delayed-ACK stalls).
    let nodelay = std::env::var("NODELAY").map_or(true, |v| v != "0");
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind")
        .tap_io(move |tcp| {
            if nodelay {
                let _ = tcp.set_nodelay(true);
            }
        });
    tokio::spawn(async {
        let mut last = 0;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = DROPPED.load(Ordering::Relaxed);
            if now != last {
                eprintln!("broadcast deliveries dropped so far: {now}");
                last = now;
            }
        }
    });
    eprintln!("socketioxide comparison server on 127.0.0.1:{port} (TCP_NODELAY {nodelay})");
    axum::serve(listener, app).await.expect("serve");
}
