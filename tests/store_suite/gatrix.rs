//! Store suite: members' roles, a channel's settings and member limit,
//! pins (schema 7).

use super::*;
use gatrix_chat::store::{MemberRole, Pin};

pub(super) fn roles_owner_admin_member(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let c = channel("c-roles", ChannelType::Public, "own", &clock.at(0));
    s.create_channel(&c, &["mem".to_owned(), "adm".to_owned()])
        .expect("create");
    assert_eq!(
        s.member_role("c-roles", "own").unwrap(),
        Some(MemberRole::Owner)
    );
    assert_eq!(
        s.member_role("c-roles", "adm").unwrap(),
        Some(MemberRole::Member)
    );
    assert_eq!(s.member_role("c-roles", "nobody").unwrap(), None);
    assert!(
        s.set_member_role("c-roles", "adm", MemberRole::Admin)
            .unwrap()
    );
    // The owner stays the owner; nobody becomes one; no member, no role.
    assert!(
        !s.set_member_role("c-roles", "own", MemberRole::Member)
            .unwrap()
    );
    assert!(
        !s.set_member_role("c-roles", "mem", MemberRole::Owner)
            .unwrap()
    );
    assert!(
        !s.set_member_role("c-roles", "nobody", MemberRole::Admin)
            .unwrap()
    );
    let mut again = db.open();
    assert_eq!(
        again.member_role("c-roles", "adm").unwrap(),
        Some(MemberRole::Admin)
    );
    assert_eq!(
        again.member_role("c-roles", "mem").unwrap(),
        Some(MemberRole::Member)
    );
    assert_eq!(
        again.member_role("c-roles", "own").unwrap(),
        Some(MemberRole::Owner)
    );
    // Back to member; a deleted channel has no roles.
    assert!(
        s.set_member_role("c-roles", "adm", MemberRole::Member)
            .unwrap()
    );
    assert_eq!(
        s.member_role("c-roles", "adm").unwrap(),
        Some(MemberRole::Member)
    );
    assert!(s.delete_channel("c-roles", &clock.at(1)).unwrap());
    assert_eq!(s.member_role("c-roles", "own").unwrap(), None);
}

pub(super) fn channel_settings_and_member_limit(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let mut c = channel("c-set", ChannelType::Public, "own", &clock.at(0));
    c.settings = Some(r#"{"allowFileUpload":true,"slowMode":0}"#.into());
    c.max_members = Some(3);
    s.create_channel(&c, &[]).expect("create");
    assert_eq!(
        unnumbered(db.open().channel("c-set").unwrap()),
        Some(c.clone())
    );
    let listed = db.open().channels_of("own").unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|c| (&c.settings, c.max_members))
            .collect::<Vec<_>>(),
        [(&c.settings, Some(3))]
    );
    // Only what is given changes; Some(None) clears.
    let got = s
        .update_channel_settings("c-set", None, Some(Some(10)), &clock.at(1))
        .unwrap()
        .expect("live");
    assert_eq!(
        (got.settings.clone(), got.max_members),
        (c.settings.clone(), Some(10))
    );
    assert_eq!(got.updated_at, clock.at(1));
    let got = s
        .update_channel_settings("c-set", Some(None), Some(None), &clock.at(2))
        .unwrap()
        .expect("live");
    assert_eq!((got.settings, got.max_members), (None, None));
    assert!(s.delete_channel("c-set", &clock.at(3)).unwrap());
    assert_eq!(
        s.update_channel_settings("c-set", Some(Some("{}")), None, &clock.at(4))
            .unwrap(),
        None
    );
}

pub(super) fn pins_set_clear_and_import(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let mut rows = vec![
        message(901, "c-pin", 1, "u", None, "one", &clock.at(0)),
        message(902, "c-pin", 2, "u", None, "two", &clock.at(1)),
    ];
    // An imported pin (the original's flag: a time, no member).
    let imported = Pin {
        at: clock.at(2),
        by: None,
    };
    rows[1].pinned = Some(imported.clone());
    s.insert_messages(&mut rows).expect("insert");
    let first = s.message(id(901)).unwrap().expect("stored");
    assert_eq!(first.pinned, None);
    assert_eq!(
        db.open().message(id(902)).unwrap().expect("stored").pinned,
        Some(imported)
    );

    let pin = Pin {
        at: clock.at(3),
        by: Some("adm".into()),
    };
    let got = s.set_pin(id(901), Some(&pin)).unwrap().expect("live");
    assert_eq!(got.pinned.as_ref(), Some(&pin));
    assert_eq!(got.content, "one", "a pin changes nothing else");
    assert_eq!(got.edited_at, None, "a pin is no edit");
    // Set again: still found (MySQL counts changed rows by default).
    assert!(s.set_pin(id(901), Some(&pin)).unwrap().is_some());
    let (page, _) = db.open().history("c-pin", Page::Latest, 10).unwrap();
    assert_eq!(page[0].pinned.as_ref(), Some(&pin));
    let got = s.set_pin(id(901), None).unwrap().expect("live");
    assert_eq!(got.pinned, None);
    // A deleted message cannot be pinned.
    s.delete_message(id(902), &clock.at(4))
        .unwrap()
        .expect("deleted");
    assert_eq!(s.set_pin(id(902), Some(&pin)).unwrap(), None);
    assert_eq!(s.set_pin(id(999), Some(&pin)).unwrap(), None);
}
