//! What the tests read of a process from /proc.

/// The resident memory of process `pid` in KiB (`VmRSS` of
/// /proc/<pid>/status), or None when it cannot be read (the process ended).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The peak resident memory of process `pid` so far in KiB (`VmHWM`): what
/// an attack made the server hold at its worst, even if it was freed since.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl super::TestServer {
    /// The server's resident memory in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).expect("VmRSS in /proc/<pid>/status")
    }

    /// The server's peak resident memory so far in KiB (`VmHWM`).
    #[allow(dead_code)] // not every test binary reads it
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.pid()).expect("VmHWM in /proc/<pid>/status")
    }
}
