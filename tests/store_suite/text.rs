//! Store suite: Text.

use super::*;

// ---------------------------------------------------------------------------
// Text

/// Emoji (4-byte UTF-8), supplementary-plane letters, ZWJ sequences,
/// combining marks, right-to-left text, and characters that look like SQL.
const TRICKY: &[&str] = &[
    "😀",
    "hello 👋🏽 world",
    "👨‍👩‍👧‍👦 family",
    "𝄞 𝕳𝖊𝖑𝖑𝖔 𠜎𠜱𠝹",
    "é vs e\u{301}",
    "مرحبا שלום",
    "漢字かなカナ한국어",
    "quotes ' \" ` \\ ; -- /* */ %_",
    "tab\tnewline\nnul-free end",
    "🏳️‍🌈🇫🇷🧑🏿‍🚀",
];

pub(super) fn utf8mb4_round_trips(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let c = ChannelRecord {
        name: "général 🎉 𝄞".into(),
        description: Some("Ünïcödé 🌍 description 👨‍👩‍👧".into()),
        ..channel("c-😀", ChannelType::Public, "ôwner 🦀", &clock.at(0))
    };
    s.create_channel(&c, &["mémbre 🐍".into()]).expect("create");
    assert_eq!(
        unnumbered(s.channel("c-😀").expect("channel")).as_ref(),
        Some(&c)
    );
    assert_eq!(member_set(s, "c-😀"), set(&["ôwner 🦀", "mémbre 🐍"]));
    assert_eq!(
        channel_ids(&s.channels_of("mémbre 🐍").expect("channels_of")),
        ["c-😀"]
    );

    let mut rows: Vec<MessageRecord> = TRICKY
        .iter()
        .enumerate()
        .map(|(i, text)| {
            message(
                i as u64 + 1,
                "c-😀",
                i as u64 + 1,
                "ûser 🦊",
                Some(&format!("cm-{i}-🔑")),
                text,
                &clock.at(i as i64),
            )
        })
        .collect();
    s.insert_messages(&mut rows).expect("insert");

    let mut again = db.open();
    let (history, _) = again.history("c-😀", Page::Latest, 100).expect("history");
    assert_eq!(history, rows, "history changed the text");
    for (i, m) in rows.iter().enumerate() {
        assert_eq!(again.message(m.id).expect("message").as_ref(), Some(m));
        assert_eq!(
            again
                .find_by_client_id("ûser 🦊", &format!("cm-{i}-🔑"))
                .expect("find")
                .as_ref(),
            Some(m)
        );
    }
    // Different emoji are different keys (no collation folding them).
    assert_eq!(
        again.find_by_client_id("ûser 🦊", "cm-0-🔒").expect("find"),
        None
    );
    assert_eq!(
        again.find_by_client_id("ûser 🐺", "cm-0-🔑").expect("find"),
        None
    );

    let edited = again
        .edit_message(rows[0].id, "edited 🙂 → 🙃 𝄞", &clock.at(1000))
        .expect("edit")
        .expect("edited");
    assert_eq!(edited.content, "edited 🙂 → 🙃 𝄞");
    assert_eq!(
        s.message(rows[0].id).expect("message").unwrap().content,
        "edited 🙂 → 🙃 𝄞"
    );
    let u = s
        .update_channel(
            "c-😀",
            Some("renamed 🚀"),
            Some(Some("new 🌙")),
            &clock.at(2000),
        )
        .expect("update")
        .expect("a channel");
    assert_eq!(
        (u.name.as_str(), u.description.as_deref()),
        ("renamed 🚀", Some("new 🌙"))
    );
    let replayed = s
        .replay(
            &[ReplayRange {
                channel: "c-😀".to_owned(),
                after: 0,
                upto_pos: u64::MAX,
                max_seq: 100,
            }],
            100,
        )
        .expect("replay");
    assert_eq!(replayed.len(), rows.len());
    assert_eq!(replayed[1..], rows[1..]);
}

/// The longest values the server accepts, made of 4-byte characters:
/// ids of MAX_ID_LEN (128) bytes, names of 100 characters, descriptions of
/// 1000, a message of MAX_MESSAGE_LENGTH (4000 by default) characters, a
/// type of 32 bytes.
pub(super) fn values_at_the_api_limits_round_trip(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let id128 = |c: char| -> String { std::iter::repeat_n(c, 32).collect() };
    assert_eq!(id128('🦀').len(), 128);
    let (channel_id, owner, member, user, cmid) = (
        id128('📺'),
        id128('👑'),
        id128('👤'),
        id128('🦀'),
        id128('🔑'),
    );
    let c = ChannelRecord {
        name: "🎉".repeat(100),
        description: Some("📜".repeat(1000)),
        ..channel(&channel_id, ChannelType::Private, &owner, &clock.at(0))
    };
    s.create_channel(&c, std::slice::from_ref(&member))
        .expect("create a channel at the limits");
    let mut rows = vec![MessageRecord {
        kind: "k".repeat(32),
        reply_to: Some(id128('↩')),
        ..message(
            1,
            &channel_id,
            1,
            &user,
            Some(&cmid),
            &"𝄞".repeat(4000),
            &clock.at(1),
        )
    }];
    s.insert_messages(&mut rows)
        .expect("insert a message at the limits");

    let mut again = db.open();
    assert_eq!(
        unnumbered(again.channel(&channel_id).expect("channel")),
        Some(c)
    );
    assert_eq!(
        member_set(again.as_mut(), &channel_id),
        set(&[&owner, &member])
    );
    assert_eq!(
        again.message(rows[0].id).expect("message").as_ref(),
        Some(&rows[0])
    );
    assert_eq!(
        again
            .find_by_client_id(&user, &cmid)
            .expect("find")
            .as_ref(),
        Some(&rows[0])
    );
    assert_eq!(again.last_seq(&channel_id).expect("last_seq"), 1);
    let long_edit = "✏".repeat(4000);
    let edited = again
        .edit_message(rows[0].id, &long_edit, &clock.at(2))
        .expect("edit")
        .expect("edited");
    assert_eq!(edited.content, long_edit);
}

/// User, channel and clientMessageIds are opaque strings: ids that differ
/// only in case, accents or which emoji are different ids (no collation
/// may fold them together).
pub(super) fn ids_are_compared_exactly(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let users = ["bob", "Bob", "BOB", "böb", "bøb", "🦊", "🐺", "ｂｏｂ"];
    let c = channel("c-x", ChannelType::Public, "bob", &clock.at(0));
    let members: Vec<String> = users[1..].iter().map(|u| (*u).to_owned()).collect();
    s.create_channel(&c, &members).expect("create");
    assert_eq!(member_set(s, "c-x"), set(&users), "members folded together");
    assert!(
        s.channel("C-X").expect("channel").is_none(),
        "channel ids folded"
    );
    assert!(s.channels_of("bOb").expect("channels_of").is_empty());
    assert!(
        s.add_member("c-x", "boB", &clock.at(1)).expect("add"),
        "boB taken for bob"
    );
    assert!(s.remove_member("c-x", "BOB").expect("remove"));
    assert!(
        member_set(s, "c-x").contains("Bob"),
        "removing BOB removed Bob"
    );

    let c2 = channel("C-X", ChannelType::Public, "Bob", &clock.at(2));
    s.create_channel(&c2, &[])
        .expect("a channel id differing only in case");
    assert_eq!(unnumbered(s.channel("C-X").expect("channel")), Some(c2));

    let mut rows: Vec<MessageRecord> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            message(
                i as u64 + 1,
                "c-x",
                i as u64 + 1,
                u,
                Some("cm-😀"),
                u,
                &clock.at(i as i64),
            )
        })
        .collect();
    rows.push(message(
        50,
        "c-x",
        9,
        "bob",
        Some("CM-😀"),
        "upper",
        &clock.at(9),
    ));
    rows.push(message(
        51,
        "c-x",
        10,
        "bob",
        Some("cm-😃"),
        "other emoji",
        &clock.at(10),
    ));
    s.insert_messages(&mut rows)
        .expect("insert: ids differing in case are different");
    let mut again = db.open();
    for m in &rows {
        let found = again
            .find_by_client_id(&m.user_id, m.client_message_id.as_deref().unwrap())
            .expect("find")
            .unwrap_or_else(|| panic!("{} / {:?} not found", m.user_id, m.client_message_id));
        assert_eq!(
            &found, m,
            "found another user's or clientMessageId's message"
        );
    }
    assert_eq!(again.find_by_client_id("bob", "cm-😁").expect("find"), None);
    assert_eq!(
        again.last_seq("C-X").expect("last_seq"),
        0,
        "c-x's seqs counted for C-X"
    );
    let (history, _) = again.history("C-X", Page::Latest, 10).expect("history");
    assert!(history.is_empty(), "c-x's messages in C-X's history");
}

/// "bob" and "bob " are two users, "c-1" and "c-1 " two channels, "x" and
/// "x " two clientMessageIds (SQL's PAD SPACE collations compare them
/// equal). Every way it shows is listed before the check fails.
pub(super) fn ids_differing_in_trailing_spaces_are_distinct(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let mut problems: Vec<String> = Vec::new();
    let c = channel("c-1", ChannelType::Private, "bob", &clock.at(0));
    s.create_channel(&c, &["bob ".into()]).expect("create");
    let members = member_set(s, "c-1");
    if members != set(&["bob", "bob "]) {
        problems.push(format!(
            "members of c-1 created by \"bob\" with \"bob \": {members:?}"
        ));
    }
    if !s.channels_of("bob  ").expect("channels_of").is_empty() {
        problems.push("channels_of(\"bob  \") lists bob's channel".into());
    }
    if s.channel("c-1 ").expect("channel").is_some() {
        problems.push("channel(\"c-1 \") is c-1".into());
    }
    if !s
        .add_member("c-1", "bob  ", &clock.at(1))
        .expect("add_member")
    {
        problems.push("add_member(c-1, \"bob  \") says already a member".into());
    }
    let mut rows = vec![
        message(1, "c-1", 1, "bob", Some("x"), "bob's", &clock.at(1)),
        message(2, "c-1", 2, "bob ", Some("x"), "bob-space's", &clock.at(2)),
        message(
            3,
            "c-1",
            3,
            "bob",
            Some("x "),
            "bob's x-space",
            &clock.at(3),
        ),
    ];
    s.insert_messages(&mut rows).expect("insert");
    let mut again = db.open();
    for m in &rows {
        let (user, cmid) = (&m.user_id, m.client_message_id.as_deref().unwrap());
        let found = again.find_by_client_id(user, cmid).expect("find");
        if found.as_ref() != Some(m) {
            problems.push(format!(
                "find_by_client_id({user:?}, {cmid:?}) gave message {:?} of {:?}, not {} of {user:?}",
                found.as_ref().map(|f| f.seq),
                found.as_ref().map(|f| f.user_id.as_str()),
                m.seq
            ));
        }
    }
    let last = again.last_seq("c-1 ").expect("last_seq");
    if last != 0 {
        problems.push(format!("last_seq(\"c-1 \") = {last} (c-1's)"));
    }
    let (history, _) = again.history("c-1 ", Page::Latest, 10).expect("history");
    if !history.is_empty() {
        problems.push(format!(
            "history(\"c-1 \") holds {} of c-1's messages",
            history.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "ids that differ only in trailing spaces are taken for one another:\n  {}",
        problems.join("\n  ")
    );
}
