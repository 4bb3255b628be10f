//! What the tests read of a process from /proc.

/// The resident memory of process `pid` in KiB (`VmRSS` of
/// /proc/<pid>/status), or None when it cannot be read (the process ended).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl super::TestServer {
    /// The server's resident memory in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).expect("VmRSS in /proc/<pid>/status")
    }
}
