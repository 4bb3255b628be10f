//! An offset ahead of what the instance has applied (a client that
//! reconnects to another instance within its bus lag): nothing at or
//! below it is sent again, in one partition or in one of several.

use super::*;

/// An offset ahead of what the instance has applied (a reconnect to
/// another instance within its bus lag; here sent ahead on purpose, which
/// is what such a client holds): live messages of its restored channels at
/// or below it are left out, and the offsets it is sent are never below
/// it; a channel joined after the recovery gets all of its messages.
/// One partition (SQLite): offsets are single positions.
#[test]
fn an_offset_ahead_of_the_instance_is_not_sent_again() {
    let mut env: Vec<(&str, &str)> = NO_RATE_LIMIT.to_vec();
    env.push(("RECOVERY_WINDOW_MS", "120000"));
    let server = TestServer::start_with(&env);
    let general = server.create_channel("owner", "general", "public", &[]);
    let later = server.create_channel("owner", "later", "public", &[]);
    let (alice_token, bob_token) = (server.token("alice"), server.token("bob"));
    let (mut alice, pid) = connect_with(&server, &json!({ "token": alice_token }));
    let (mut bob, _) = connect_with(&server, &json!({ "token": bob_token }));
    join(&mut alice, &general);
    join(&mut bob, &general);
    join(&mut bob, &later);
    send_all(&mut bob, &general, 10, &one("seen"));
    let o: u64 = next(&mut alice).offset.parse().expect("one position");
    drop(alice);
    // Alice says she has two positions more than were committed.
    let ahead = o + 2;
    let auth = json!({ "token": server.token("alice"), "pid": pid, "offset": ahead.to_string() });
    let (mut alice, got) = connect_with(&server, &auth);
    assert_eq!(got, pid, "recovered");
    join(&mut alice, &later);
    // Positions o+1 (later), o+2 .. o+5 (general).
    send_all(&mut bob, &later, 20, &one("on later"));
    for i in 0..4u64 {
        send_all(&mut bob, &general, 30 + i, &one(&format!("b{i}")));
    }
    let got: Vec<(String, u64)> = (0..4)
        .map(|_| {
            let m = next(&mut alice);
            (m.content, m.offset.parse().expect("one position"))
        })
        .collect();
    assert_eq!(
        got,
        [
            ("on later".to_owned(), ahead),
            ("b1".to_owned(), o + 3),
            ("b2".to_owned(), o + 4),
            ("b3".to_owned(), o + 5),
        ],
        "b0 (at o+2, within her offset) left out; offsets never below hers"
    );
}

/// The same with four partitions (MariaDB): ahead in one partition only.
#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn an_offset_ahead_in_one_partition_is_not_sent_again() {
    let OnePartitioned {
        server,
        channels,
        mut alice,
        pid,
        mut bob,
    } = one_partitioned();
    let seen = send_round(&mut bob, &channels, "seen", 1, 10);
    let mut held = Vec::new();
    for _ in 0..seen.len() {
        held = vector(&next(&mut alice).offset);
    }
    drop(alice);
    // Ahead by two in partition 2 only.
    let mut ahead = held.clone();
    ahead[2] += 2;
    let offset = ahead
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let auth = json!({ "token": server.token("alice"), "pid": pid, "offset": offset });
    let (mut alice, got) = connect_with(&server, &auth);
    assert_eq!(got, pid, "recovered");
    for i in 0..4u64 {
        send_all(&mut bob, &channels[2], 20 + i, &one(&format!("p2 {i}")));
    }
    send_all(&mut bob, &channels[1], 30, &one("p1"));
    let got: Vec<Got> = (0..3).map(|_| next(&mut alice)).collect();
    let contents: Vec<&str> = got.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["p2 2", "p2 3", "p1"], "p2 0 and 1 left out");
    for m in &got {
        let v = vector(&m.offset);
        assert!(
            v.iter().zip(&ahead).all(|(a, b)| a >= b),
            "offset {v:?} below hers {ahead:?}"
        );
    }
    assert_eq!(vector(&got[1].offset)[2], ahead[2] + 2);
}

/// A client dropped in the middle of a replay holds the replay's offset
/// (its own, raised per partition to what was replayed), which recovers
/// exactly the rest.
#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn a_client_dropped_mid_replay_recovers_exactly_the_rest() {
    let OnePartitioned {
        server,
        channels,
        mut alice,
        pid,
        mut bob,
    } = one_partitioned();
    let early = send_round(&mut bob, &channels[..1], "early", 3, 10);
    let mut offset = String::new();
    for _ in 0..early.values().map(Vec::len).sum::<usize>() {
        offset = next(&mut alice).offset;
    }
    drop(alice);
    let mut left = send_round(&mut bob, &channels, "missed", 3, 100);
    let auth = json!({ "token": server.token("alice"), "pid": pid, "offset": offset });
    let (mut alice, got) = connect_with(&server, &auth);
    assert_eq!(got, pid, "recovered");
    // Five of the twelve, then the client is gone.
    let mut last = vector(&offset);
    for _ in 0..5 {
        let m = next(&mut alice);
        let v = vector(&m.offset);
        assert!(
            v.iter().zip(&last).all(|(a, b)| a >= b),
            "{v:?} after {last:?}"
        );
        last = v;
        let list = left.get_mut(&m.channel).expect("a channel of hers");
        assert_eq!(list.first(), Some(&m.content), "in seq order");
        list.remove(0);
        offset = m.offset;
    }
    drop(alice);
    left.retain(|_, l| !l.is_empty());
    let auth = json!({ "token": server.token("alice"), "pid": pid, "offset": offset });
    let (mut alice, got) = connect_with(&server, &auth);
    assert_eq!(got, pid, "recovered again");
    for (c, l) in send_round(&mut bob, &channels, "live", 1, 200) {
        left.entry(c).or_default().extend(l);
    }
    expect_exactly(&mut alice, &left, &last);
}
