//! Store suite: Channels and members.

use super::*;

// ---------------------------------------------------------------------------
// Channels and members

pub(super) fn ping_answers(s: &mut dyn Store, db: &dyn Backend) {
    s.ping().expect("ping");
    db.open().ping().expect("ping on a second connection");
}

pub(super) fn channel_create_and_get(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let kinds = [
        ("c-public", ChannelType::Public),
        ("c-private", ChannelType::Private),
        ("c-direct", ChannelType::Direct),
    ];
    for (i, (cid, kind)) in kinds.iter().enumerate() {
        let mut c = channel(cid, *kind, "owner", &clock.at(i as i64));
        if *kind == ChannelType::Private {
            c.description = None;
        }
        // The owner listed among the members again, and a member twice.
        let members = [
            "owner".to_owned(),
            "bob".into(),
            "carol".into(),
            "bob".into(),
        ];
        s.create_channel(&c, &members).expect("create_channel");
        assert_eq!(
            unnumbered(s.channel(cid).expect("channel")).as_ref(),
            Some(&c)
        );
        assert_eq!(member_set(s, cid), set(&["owner", "bob", "carol"]));
    }
    // A channel without members but its owner.
    let lonely = channel("c-lonely", ChannelType::Public, "solo", &clock.at(10));
    s.create_channel(&lonely, &[]).expect("create_channel");
    assert_eq!(member_set(s, "c-lonely"), set(&["solo"]));

    assert_eq!(unnumbered(s.channel("c-unknown").expect("channel")), None);
    assert_eq!(member_set(s, "c-unknown"), BTreeSet::new());

    // Everything is there for a new connection.
    let mut again = db.open();
    for (cid, kind) in kinds {
        let c = again.channel(cid).expect("channel").expect("stored");
        assert_eq!(c.kind, kind);
        assert_eq!(c.owner_id, "owner");
    }
    assert_eq!(
        unnumbered(again.channel("c-lonely").expect("channel")),
        Some(lonely)
    );
}

pub(super) fn channel_create_twice_is_a_conflict(s: &mut dyn Store, _db: &dyn Backend) {
    let clock = Clock::new();
    let c = channel("c-1", ChannelType::Public, "owner", &clock.at(0));
    s.create_channel(&c, &["bob".into()]).expect("create");
    let mut other = channel("c-1", ChannelType::Private, "mallory", &clock.at(1));
    other.name = "taken over".into();
    match s.create_channel(&other, &["eve".into()]) {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("creating an existing channel id: {other:?}, not a Conflict"),
    }
    // Nothing of the second attempt was kept.
    assert_eq!(unnumbered(s.channel("c-1").expect("channel")), Some(c));
    assert_eq!(member_set(s, "c-1"), set(&["owner", "bob"]));
}

pub(super) fn channel_numbers_are_unique_and_found(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let ids = ["c-n1", "c-n2", "c-n3"];
    for (i, id) in ids.iter().enumerate() {
        let c = channel(id, ChannelType::Public, "owner", &clock.at(i as i64));
        s.create_channel(&c, &[]).expect("create_channel");
    }
    let nums: Vec<u64> = ids
        .iter()
        .map(|id| s.channel(id).expect("channel").expect("stored").num)
        .collect();
    assert!(nums.iter().all(|n| *n > 0 && *n < 1 << 53), "{nums:?}");
    assert_eq!(nums.iter().collect::<BTreeSet<_>>().len(), 3, "{nums:?}");
    let mut again = db.open();
    for (id, num) in ids.iter().zip(&nums) {
        let found = again.channel_id_by_num(*num).expect("by num");
        assert_eq!(found.as_deref(), Some(*id));
    }
    assert_eq!(
        s.channel_id_by_num(nums.iter().max().unwrap() + 1000)
            .expect("by num"),
        None
    );
    // A deleted channel's number finds nothing; nobody else gets it.
    assert!(s.delete_channel("c-n2", &clock.at(9)).expect("delete"));
    assert_eq!(s.channel_id_by_num(nums[1]).expect("by num"), None);
    let later = channel("c-n4", ChannelType::Public, "owner", &clock.at(10));
    s.create_channel(&later, &[]).expect("create_channel");
    let n4 = s.channel("c-n4").expect("channel").expect("stored").num;
    assert!(!nums.contains(&n4), "{n4} reused from {nums:?}");
}

pub(super) fn channel_update(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let c = channel("c-1", ChannelType::Public, "owner", &clock.at(0));
    s.create_channel(&c, &[]).expect("create");

    // Name only.
    let u = s
        .update_channel("c-1", Some("renamed"), None, &clock.at(1000))
        .expect("update")
        .expect("a channel");
    assert_eq!(u.name, "renamed");
    assert_eq!(u.description, c.description, "description kept");
    assert_eq!(u.updated_at, clock.at(1000));
    assert_eq!(u.created_at, c.created_at, "created_at kept");
    assert_eq!(
        (u.id.as_str(), u.kind, u.owner_id.as_str()),
        ("c-1", c.kind, "owner")
    );

    // Description only.
    let u = s
        .update_channel("c-1", None, Some(Some("new words")), &clock.at(2000))
        .expect("update")
        .expect("a channel");
    assert_eq!(
        (u.name.as_str(), u.description.as_deref()),
        ("renamed", Some("new words"))
    );
    assert_eq!(u.updated_at, clock.at(2000));

    // Both; then the description cleared.
    let u = s
        .update_channel("c-1", Some("both"), Some(Some("and this")), &clock.at(3000))
        .expect("update")
        .expect("a channel");
    assert_eq!(
        (u.name.as_str(), u.description.as_deref()),
        ("both", Some("and this"))
    );
    let u = s
        .update_channel("c-1", None, Some(None), &clock.at(4000))
        .expect("update")
        .expect("a channel");
    assert_eq!((u.name.as_str(), u.description.as_deref()), ("both", None));
    assert_eq!(u.updated_at, clock.at(4000));

    assert_eq!(db.open().channel("c-1").expect("channel"), Some(u));

    // Unknown and deleted channels are not updated.
    assert_eq!(
        s.update_channel("c-unknown", Some("x"), None, &clock.at(5000))
            .expect("update"),
        None
    );
    assert!(s.delete_channel("c-1", &clock.at(6000)).expect("delete"));
    assert_eq!(
        s.update_channel("c-1", Some("x"), None, &clock.at(7000))
            .expect("update"),
        None
    );
}

pub(super) fn channel_soft_delete(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let keep = channel("c-keep", ChannelType::Public, "owner", &clock.at(0));
    let gone = channel("c-gone", ChannelType::Public, "owner", &clock.at(1));
    s.create_channel(&keep, &["bob".into()]).expect("create");
    s.create_channel(&gone, &["bob".into()]).expect("create");
    let stored = fill(s, &clock, "c-gone", 1, 3);

    assert!(s.delete_channel("c-gone", &clock.at(100)).expect("delete"));
    assert!(
        !s.delete_channel("c-gone", &clock.at(200)).expect("delete"),
        "deleted twice"
    );
    assert!(
        !s.delete_channel("c-unknown", &clock.at(200))
            .expect("delete")
    );

    assert_eq!(unnumbered(s.channel("c-gone").expect("channel")), None);
    assert_eq!(
        unnumbered(s.channel("c-keep").expect("channel")),
        Some(keep.clone())
    );
    assert_eq!(
        channel_ids(&s.channels_of("bob").expect("channels_of")),
        ["c-keep"]
    );
    assert_eq!(
        channel_ids(&s.channels_of("owner").expect("channels_of")),
        ["c-keep"]
    );
    // Soft: the messages are still there (and their seqs still taken).
    assert_eq!(s.last_seq("c-gone").expect("last_seq"), 3);
    assert_eq!(
        s.message(stored[0].id).expect("message"),
        Some(stored[0].clone())
    );

    let mut again = db.open();
    assert_eq!(unnumbered(again.channel("c-gone").expect("channel")), None);
    assert_eq!(
        channel_ids(&again.channels_of("bob").expect("channels_of")),
        ["c-keep"]
    );
}

pub(super) fn channels_of_a_user(s: &mut dyn Store, _db: &dyn Backend) {
    let clock = Clock::new();
    // Created out of id order: listed by creation time, then id.
    let specs = [
        ("c-3", "alice", 0, &["bob"][..]),
        ("c-1", "bob", 1000, &["alice", "carol"][..]),
        ("c-2", "carol", 2000, &[][..]),
        ("c-0", "dave", 2000, &["alice"][..]),
    ];
    let mut made = HashMap::new();
    for (cid, owner, at, members) in specs {
        let c = channel(cid, ChannelType::Private, owner, &clock.at(at));
        let members: Vec<String> = members.iter().map(|m| (*m).to_owned()).collect();
        s.create_channel(&c, &members).expect("create");
        made.insert(cid, c);
    }
    let of = |s: &mut dyn Store, user: &str| s.channels_of(user).expect("channels_of");
    let alice = of(s, "alice");
    assert_eq!(channel_ids(&alice), ["c-3", "c-1", "c-0"]);
    assert_eq!(
        unnumbered(Some(alice[1].clone())),
        Some(made["c-1"].clone()),
        "records as created"
    );
    assert_eq!(channel_ids(&of(s, "bob")), ["c-3", "c-1"]);
    assert_eq!(channel_ids(&of(s, "carol")), ["c-1", "c-2"]);
    assert_eq!(channel_ids(&of(s, "dave")), ["c-0"]);
    assert!(of(s, "nobody").is_empty());

    // Joining and leaving change the list.
    assert!(s.add_member("c-2", "dave", &clock.at(3000)).expect("add"));
    assert_eq!(channel_ids(&of(s, "dave")), ["c-0", "c-2"]);
    assert!(s.remove_member("c-1", "alice").expect("remove"));
    assert_eq!(channel_ids(&of(s, "alice")), ["c-3", "c-0"]);
}

pub(super) fn members_add_is_idempotent_and_the_owner_stays(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let c = channel("c-1", ChannelType::Public, "owner", &clock.at(0));
    s.create_channel(&c, &["bob".into()]).expect("create");

    assert!(s.add_member("c-1", "carol", &clock.at(1)).expect("add"));
    assert!(
        !s.add_member("c-1", "carol", &clock.at(2))
            .expect("add again"),
        "a second add says added"
    );
    assert!(
        !s.add_member("c-1", "bob", &clock.at(3))
            .expect("add a creation member")
    );
    assert!(
        !s.add_member("c-1", "owner", &clock.at(4))
            .expect("add the owner")
    );
    assert_eq!(member_set(s, "c-1"), set(&["owner", "bob", "carol"]));

    assert!(s.remove_member("c-1", "carol").expect("remove"));
    assert!(!s.remove_member("c-1", "carol").expect("remove again"));
    assert!(
        !s.remove_member("c-1", "stranger")
            .expect("remove a non-member")
    );
    assert!(
        !s.remove_member("c-1", "owner").expect("remove the owner"),
        "the owner was removed"
    );
    assert_eq!(member_set(s, "c-1"), set(&["owner", "bob"]));

    // Back again after leaving.
    assert!(s.add_member("c-1", "carol", &clock.at(5)).expect("rejoin"));
    assert_eq!(
        member_set(db.open().as_mut(), "c-1"),
        set(&["owner", "bob", "carol"])
    );
}
