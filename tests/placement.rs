//! Where the shards run: `SHARD_CPUS` pins one shard per listed CPU.

mod common;

use common::TestServer;

/// The CPUs each shard thread may run on, from /proc.
fn shard_affinities(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc") {
        let dir = task.expect("task entry").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("gatrix-shard") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        out.push((comm.trim().to_owned(), cpus));
    }
    out
}

/// The highest online CPU (where glommio's own spreading would not put a
/// single shard first), from /sys.
fn last_online_cpu() -> String {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let last = online.trim().rsplit([',', '-']).next().unwrap_or("0");
    if last.is_empty() {
        "0".into()
    } else {
        last.to_owned()
    }
}

#[test]
fn shard_cpus_pins_each_shard() {
    let cpu = last_online_cpu();
    let server = TestServer::start_with(&[("SHARD_CPUS", &cpu), ("CLUSTER_WORKERS", "0")]);
    let threads = shard_affinities(server.pid());
    assert!(!threads.is_empty(), "no shard thread found");
    let executors: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n == "gatrix-shard-1")
        .collect();
    assert!(!executors.is_empty(), "{threads:?}");
    // The executor thread is pinned to that CPU (glommio's helper thread of
    // the same name keeps the process's affinity).
    assert!(
        executors.iter().any(|(_, cpus)| *cpus == cpu),
        "CPU {cpu}: {threads:?}"
    );
    assert!(
        threads.iter().all(|(n, _)| n == "gatrix-shard-1"),
        "one shard: {threads:?}"
    );
}

#[test]
fn a_bad_cpu_list_is_a_configuration_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatrix-chat"))
        .args(["config", "check"])
        .env("SHARD_CPUS", "0,0")
        .output()
        .expect("run gatrix-chat");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SHARD_CPUS") || text.contains("shard_cpus"),
        "{text}"
    );
    assert!(text.contains("listed twice"), "{text}");
}
