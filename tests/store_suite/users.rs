//! Store suite: the user directory (schema 6).

use super::*;
use gatrix_chat::store::UserRecord;

fn user(id: &str, name: Option<&str>, status: Option<&str>, at: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        username: format!("{id}@example.com"),
        name: name.map(str::to_owned),
        email: Some(format!("{id}@example.com")),
        avatar_url: Some(format!("https://cdn.example/{id}.png")),
        status: status.map(str::to_owned),
        custom_status: None,
        created_at: at.into(),
        updated_at: at.into(),
    }
}

pub(super) fn users_upsert_keep_created_and_status(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    assert_eq!(s.user("01HUSER").expect("user"), None);
    s.upsert_users(&[user("01HUSER", Some("Ann"), None, &clock.at(0))])
        .expect("insert");
    let first = s.user("01HUSER").expect("user").expect("stored");
    assert_eq!(
        first.status.as_deref(),
        Some("offline"),
        "new users are offline"
    );
    assert_eq!(first.display_name(), "Ann");
    // An update without a status keeps it and created_at; the rest changes.
    assert!(
        s.set_user_status("01HUSER", "busy", Some("lunch"), &clock.at(1))
            .expect("status")
    );
    let mut again = user("01HUSER", Some("Ann B"), None, &clock.at(2));
    again.avatar_url = None;
    s.upsert_users(&[again]).expect("update");
    let got = db.open().user("01HUSER").expect("user").expect("stored");
    assert_eq!(got.name.as_deref(), Some("Ann B"));
    assert_eq!(got.avatar_url, None);
    assert_eq!(got.status.as_deref(), Some("busy"));
    assert_eq!(got.custom_status.as_deref(), Some("lunch"));
    assert_eq!(got.created_at, clock.at(0));
    assert_eq!(got.updated_at, clock.at(2));
    // A status given in the upsert wins; the same status twice is still a
    // known user.
    s.upsert_users(&[user("01HUSER", None, Some("online"), &clock.at(3))])
        .expect("update");
    let got = s.user("01HUSER").expect("user").expect("stored");
    assert_eq!(got.status.as_deref(), Some("online"));
    assert_eq!(
        got.display_name(),
        "01HUSER@example.com",
        "no name: the username"
    );
    assert!(
        s.set_user_status("01HUSER", "online", None, &clock.at(3))
            .expect("status")
    );
    assert!(
        !s.set_user_status("nobody", "online", None, &clock.at(3))
            .expect("status")
    );
}

pub(super) fn users_page_search_and_delete(s: &mut dyn Store, _db: &dyn Backend) {
    let clock = Clock::new();
    let batch: Vec<UserRecord> = ["u1", "u2", "u3", "x_%"]
        .iter()
        .map(|id| user(id, Some(&format!("Name {id}")), None, &clock.at(0)))
        .collect();
    s.upsert_users(&batch).expect("bulk");
    let (page, total) = s.users_page(None, 1, 2).expect("page");
    assert_eq!(total, 4);
    let ids: Vec<&str> = page.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["u2", "u3"], "ordered by id, offset 1, limit 2");
    // Wildcards in the search are plain characters.
    let (found, total) = s.users_page(Some("x_%"), 0, 10).expect("search");
    assert_eq!((found.len(), total), (1, 1));
    assert_eq!(found[0].id, "x_%");
    let (found, total) = s.users_page(Some("%"), 0, 10).expect("search");
    assert_eq!((found.len(), total), (1, 1), "a literal %");
    let (found, _) = s.users_page(Some("Name u"), 0, 10).expect("search");
    assert_eq!(found.len(), 3);
    assert!(s.delete_user("u2").expect("delete"));
    assert!(!s.delete_user("u2").expect("delete"));
    assert_eq!(s.user("u2").expect("user"), None);
    assert_eq!(s.users_page(None, 0, 10).expect("page").1, 3);
}

pub(super) fn read_marks_move_forward_per_member(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let c = channel("c-read", ChannelType::Public, "owner", &clock.at(0));
    s.create_channel(&c, &["bob".to_owned()]).expect("create");
    let fresh = s
        .read_state("c-read", "bob")
        .expect("state")
        .expect("a member");
    assert_eq!((fresh.seq, fresh.at, fresh.message_id), (0, None, None));
    assert_eq!(s.read_state("c-read", "eve").expect("state"), None);
    assert!(
        s.mark_read("c-read", "bob", 5, Some(id(5)), &clock.at(1))
            .expect("mark")
    );
    // Never back; a mark without a message id keeps the last one.
    assert!(
        s.mark_read("c-read", "bob", 3, Some(id(3)), &clock.at(2))
            .expect("mark")
    );
    let got = db
        .open()
        .read_state("c-read", "bob")
        .expect("state")
        .expect("a member");
    assert_eq!((got.seq, got.message_id), (5, Some(id(5))));
    assert_eq!(got.at.as_deref(), Some(clock.at(1).as_str()));
    assert!(
        s.mark_read("c-read", "bob", 7, None, &clock.at(3))
            .expect("mark")
    );
    let got = s
        .read_state("c-read", "bob")
        .expect("state")
        .expect("a member");
    assert_eq!((got.seq, got.message_id), (7, Some(id(5))));
    assert!(
        !s.mark_read("c-read", "eve", 7, None, &clock.at(3))
            .expect("mark"),
        "no member"
    );
    assert_eq!(
        s.read_state("c-read", "owner")
            .expect("state")
            .map(|r| r.seq),
        Some(0),
        "per member"
    );
}
