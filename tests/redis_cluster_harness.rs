//! The Redis Cluster harness of the tests on a cluster (issue 14),
//! checked on its own: `common::redis_cluster` starts six redis-servers
//! as 3 masters with a replica each, its controls do what they say, and
//! dropping it leaves no process behind. Needs Debian's redis-server
//! (scripts/test installs it).

mod common;

use std::time::{Duration, Instant};

use common::redis_cluster::{NODES, RedisCluster, Role};
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Whether a process with this pid is still there (a reaped child is not).
fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn six_nodes_come_up_as_three_masters_with_a_replica_each_and_go_at_drop() {
    let cluster = RedisCluster::start();
    assert_eq!(cluster.nodes().len(), NODES);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    for &m in &masters {
        let replicas = cluster.replicas_of(m);
        assert_eq!(replicas.len(), 1, "replicas of node {m}: {replicas:?}");
        assert_eq!(cluster.role(replicas[0]), Role::Replica);
    }
    // Every slot has one owner; a key is served by its slot's master and
    // refused (MOVED) by the others.
    let slot = cluster.slot_of("{b7}x");
    assert_eq!(slot, cluster.slot_of("{b7}y"), "one hash tag, one slot");
    let owner = cluster.master_of_slot(slot);
    assert!(masters.contains(&owner));
    assert_eq!(cluster.master_of_key("{b7}x"), owner);
    assert_eq!(
        cluster.cli(owner, &["SET", "{b7}x", "1"]).unwrap().trim(),
        "OK"
    );
    let other = *masters.iter().find(|&&m| m != owner).unwrap();
    let refused = cluster.cli(other, &["GET", "{b7}x"]).unwrap_err();
    assert!(refused.contains("MOVED"), "{refused}");
    let pids = cluster.pids();
    assert_eq!(pids.len(), NODES);
    assert!(pids.iter().all(|&p| alive(p)));
    drop(cluster);
    let gone: Vec<u32> = pids.into_iter().filter(|&p| alive(p)).collect();
    assert!(gone.is_empty(), "still running after drop: {gone:?}");
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn a_manual_failover_a_crash_and_a_pause_move_a_slot_to_the_replica() {
    let mut cluster = RedisCluster::start();
    let slot = cluster.slot_of("k");
    let first = cluster.master_of_slot(slot);
    cluster.cli(first, &["SET", "k", "v"]).unwrap();
    // CLUSTER FAILOVER on the replica: roles swap, the data with them.
    let replica = cluster.replicas_of(first)[0];
    cluster.failover(replica);
    assert_eq!(cluster.master_of_slot(slot), replica);
    assert_eq!(cluster.role(first), Role::Replica);
    assert_eq!(cluster.cli(replica, &["GET", "k"]).unwrap().trim(), "v");
    // kill -9 of that master: its replica (the old master) takes over
    // after the node timeout.
    cluster.kill9(replica);
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.role(first) != Role::Master {
        assert!(Instant::now() < deadline, "no failover after kill -9");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Restarted, the killed node rejoins as a replica of the new master.
    cluster.restart(replica);
    cluster.wait_settled();
    assert_eq!(cluster.master_of_slot(slot), first);
    assert_eq!(cluster.replicas_of(first), vec![replica]);
    // SIGSTOP: the node answers nothing until SIGCONT.
    cluster.pause(replica);
    assert!(
        cluster.cli(replica, &["PING"]).is_err(),
        "a paused node answered"
    );
    cluster.resume(replica);
    cluster.wait_settled();
    assert_eq!(cluster.cli(replica, &["PING"]).unwrap().trim(), "PONG");
}
