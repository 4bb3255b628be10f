//! The Gatrix platform's channel roles and member limits (issue 15 item 5;
//! docs/api.md, "The Gatrix REST dialect" and "Who may do what"), against
//! the real binary: an admin (made in the database, as imported data
//! makes them: no route gives the role, in the original as here) changes
//! a channel as its owner does, only the owner deletes it, and
//! `maxMembers` refuses joins over REST and over Socket.IO.

mod common;

use std::time::Duration;

use common::TestServer;
use common::client::Client;
use common::rest::{Answer, Http, as_user};
use serde_json::{Value, json};

const SERVICE_TOKEN: &str = "gatrix-roles-service-token-of-the-tests-0123456789";

fn server() -> TestServer {
    TestServer::start_with(&[
        ("GATRIX_COMPAT", "true"),
        ("BACKEND_SERVICE_TOKEN", SERVICE_TOKEN),
        (
            "GATRIX_JWT_SECRET",
            "gatrix-roles-backend-secret-of-the-tests-0123456789",
        ),
    ])
}

/// A Gatrix REST call as the backend's proxy sends it for `user`.
fn gx(server: &TestServer, method: &str, path: &str, user: &str, body: Option<Value>) -> Answer {
    let body = body.map(|b| b.to_string());
    Http::connect(server).send_with(
        method,
        &format!("/api/v1{path}"),
        &[("X-API-Token", SERVICE_TOKEN), ("X-User-ID", user)],
        None,
        body.as_deref().map(str::as_bytes),
    )
}

fn ok(a: Answer) -> Value {
    assert!(a.status < 300 && a.json["success"] == true, "{a:?}");
    a.json["data"].clone()
}

/// What imported data does: `user` becomes an admin of channel `num`;
/// the channel's native id.
fn make_admin(server: &TestServer, num: u64, user: &str) -> String {
    let db = rusqlite::Connection::open(server.db_path()).expect("open the server's database");
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let id: String = db
        .query_row(
            "SELECT id FROM channels WHERE num = ?1",
            [num as i64],
            |r| r.get(0),
        )
        .expect("the channel");
    let n = db
        .execute(
            "UPDATE channel_members SET role = 'admin' WHERE channel_id = ?1 AND user_id = ?2",
            [&id, user],
        )
        .expect("update the role");
    assert_eq!(n, 1, "{user} is a member of {id}");
    id
}

fn role_in(server: &TestServer, user: &str, num: u64) -> Value {
    let mine = ok(gx(server, "GET", "/channels/my", user, None));
    let row = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == num)
        .cloned()
        .unwrap_or_else(|| panic!("{num} not among {user}'s channels: {mine}"));
    row["role"].clone()
}

#[test]
fn admins_change_channels_and_delete_messages_only_the_owner_deletes_the_channel() {
    let server = server();
    let settings = json!({"allowFileUpload": false, "maxFileSize": 1024});
    let made = gx(
        &server,
        "POST",
        "/channels",
        "own",
        Some(
            json!({"name": "team", "type": "public", "memberIds": ["adm", "mem"],
                    "settings": settings, "maxMembers": 50}),
        ),
    );
    assert_eq!(made.status, 201, "{made:?}");
    let made = ok(made);
    assert_eq!(
        (&made["settings"], &made["maxMembers"]),
        (&settings, &json!(50))
    );
    let num = made["id"].as_u64().expect("a number");
    let native_id = make_admin(&server, num, "adm");
    assert_eq!(role_in(&server, "own", num), "owner");
    assert_eq!(role_in(&server, "adm", num), "admin");
    assert_eq!(role_in(&server, "mem", num), "member");

    // A member may not change the channel; an admin may, settings and
    // limit too (the original's check: owner or admin).
    let refused = gx(
        &server,
        "PUT",
        &format!("/channels/{num}"),
        "mem",
        Some(json!({"name": "x"})),
    );
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.json["success"], false);
    let changed = ok(gx(
        &server,
        "PUT",
        &format!("/channels/{num}"),
        "adm",
        Some(json!({"name": "renamed", "settings": {"isReadOnly": true}, "maxMembers": 5})),
    ));
    assert_eq!(changed["name"], "renamed");
    assert_eq!(changed["settings"], json!({"isReadOnly": true}));
    assert_eq!(changed["maxMembers"], 5);
    let seen = ok(gx(&server, "GET", &format!("/channels/{num}"), "mem", None));
    assert_eq!(
        (&seen["settings"], &seen["maxMembers"]),
        (&changed["settings"], &json!(5))
    );
    let bad = gx(
        &server,
        "PUT",
        &format!("/channels/{num}"),
        "adm",
        Some(json!({"maxMembers": 0})),
    );
    assert_eq!(bad.status, 400, "{bad:?}");

    // Natively too (a Bearer token): the admin renames; roles and settings
    // stay out of the native body.
    let native = as_user(&server, "adm").call(
        "PUT",
        &format!("/api/v1/channels/{native_id}"),
        Some(json!({"description": "by the admin"})),
    );
    assert_eq!(native.status, 200, "{native:?}");
    assert_eq!(native.json["channel"]["description"], "by the admin");
    assert!(
        native.json["channel"].get("settings").is_none(),
        "{native:?}"
    );
    let member = as_user(&server, "mem").call(
        "PUT",
        &format!("/api/v1/channels/{native_id}"),
        Some(json!({"name": "x"})),
    );
    assert_eq!(member.status, 403, "{member:?}");

    // An admin deletes a member's message (the original: author, owner or
    // admin); a member does not delete the admin's.
    let sent = gx(
        &server,
        "POST",
        &format!("/channels/{num}/messages"),
        "mem",
        Some(json!({"content": "hi"})),
    );
    let mid = ok(sent)["id"].as_u64().unwrap();
    let theirs = ok(gx(
        &server,
        "POST",
        &format!("/channels/{num}/messages"),
        "adm",
        Some(json!({"content": "mine"})),
    ));
    let not_yours = gx(
        &server,
        "DELETE",
        &format!("/messages/{}", theirs["id"]),
        "mem",
        None,
    );
    assert_eq!(not_yours.status, 403, "{not_yours:?}");
    ok(gx(
        &server,
        "DELETE",
        &format!("/messages/{mid}"),
        "adm",
        None,
    ));
    assert_eq!(
        gx(&server, "GET", &format!("/messages/{mid}"), "own", None).status,
        404
    );

    // Only the owner deletes the channel (the original's check).
    let by_admin = gx(&server, "DELETE", &format!("/channels/{num}"), "adm", None);
    assert_eq!(by_admin.status, 403, "{by_admin:?}");
    ok(gx(
        &server,
        "DELETE",
        &format!("/channels/{num}"),
        "own",
        None,
    ));
    assert_eq!(
        gx(&server, "GET", &format!("/channels/{num}"), "own", None).status,
        404
    );
}

#[test]
fn max_members_refuses_joins_over_rest_and_socket_io() {
    let server = server();
    // More members at creation than the limit: refused.
    let over = gx(
        &server,
        "POST",
        "/channels",
        "own",
        Some(json!({"name": "small", "type": "public", "memberIds": ["a", "b"], "maxMembers": 2})),
    );
    assert_eq!(over.status, 400, "{over:?}");
    let made = ok(gx(
        &server,
        "POST",
        "/channels",
        "own",
        Some(json!({"name": "small", "type": "public", "maxMembers": 2})),
    ));
    let num = made["id"].as_u64().unwrap();
    let native_id: String = {
        let db = rusqlite::Connection::open(server.db_path()).unwrap();
        db.query_row(
            "SELECT id FROM channels WHERE num = ?1",
            [num as i64],
            |r| r.get(0),
        )
        .unwrap()
    };
    // One place left: a REST join takes it; the next is refused, with the
    // same refusal over Socket.IO; a member joins again freely.
    ok(gx(
        &server,
        "POST",
        &format!("/channels/{num}/join"),
        "a",
        None,
    ));
    let full = gx(&server, "POST", &format!("/channels/{num}/join"), "b", None);
    assert_eq!(full.status, 403, "{full:?}");
    assert_eq!(full.json["error"]["code"], "FORBIDDEN");
    let wording = full.json["error"]["message"].as_str().unwrap().to_owned();
    assert!(wording.starts_with("Channel is full"), "{wording}");
    let mut b = Client::connect(&server, "b");
    let ack = b.call("join_channel", json!({"channelId": native_id}));
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "FORBIDDEN");
    assert_eq!(ack["error"]["message"], wording.as_str());
    let again = ok(gx(
        &server,
        "POST",
        &format!("/channels/{num}/join"),
        "a",
        None,
    ));
    assert_eq!(again["message"], "Already a member of this channel");
    let mut a = Client::connect(&server, "a");
    assert_eq!(
        a.call("join_channel", json!({"channelId": native_id}))["ok"],
        true
    );
    // The owner raises the limit: the joins that were refused pass.
    ok(gx(
        &server,
        "PUT",
        &format!("/channels/{num}"),
        "own",
        Some(json!({"maxMembers": 4})),
    ));
    assert_eq!(
        b.call("join_channel", json!({"channelId": native_id}))["ok"],
        true
    );
    ok(gx(
        &server,
        "POST",
        &format!("/channels/{num}/join"),
        "c",
        None,
    ));
    let mine = ok(gx(&server, "GET", "/channels/my", "c", None));
    let row = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == num)
        .cloned()
        .unwrap();
    assert_eq!(
        (&row["memberCount"], &row["maxMembers"]),
        (&json!(4), &json!(4))
    );
    // `null` clears the limit.
    let cleared = ok(gx(
        &server,
        "PUT",
        &format!("/channels/{num}"),
        "own",
        Some(json!({"maxMembers": null})),
    ));
    assert_eq!(cleared["maxMembers"], Value::Null);
    ok(gx(
        &server,
        "POST",
        &format!("/channels/{num}/join"),
        "d",
        None,
    ));
}
