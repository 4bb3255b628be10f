//! systemd's notification protocol (sd_notify), for `Type=notify` units.
//!
//! Written by hand over a `UnixDatagram` (it is one datagram of text per
//! state change): `READY=1` once every shard listens and the store is
//! migrated, `STOPPING=1` when a drain begins, `STATUS=` lines for
//! `systemctl status`, and the watchdog. Without `NOTIFY_SOCKET` (not run
//! by systemd) everything here does nothing.
//!
//! The watchdog (`WatchdogSec=` sets `WATCHDOG_USEC`): every shard runs a
//! task that bumps its own [`Heartbeats`] slot every quarter interval; a
//! thread sends `WATCHDOG=1` every half interval, but only when every slot
//! moved since the last ping. A stalled shard (a blocking call, a busy
//! loop) stops the pings, so systemd restarts the unit.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where to send notifications, from `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From the environment; a missing or unusable `NOTIFY_SOCKET` gives a
    /// notifier that sends nothing (the latter with a warning).
    pub fn from_env() -> Self {
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Self { target: None };
        };
        match connect(&value.to_string_lossy()) {
            Ok(target) => Self {
                target: Some(target),
            },
            Err(e) => {
                tracing::warn!(error = %e, "NOTIFY_SOCKET is set but unusable; not notifying systemd");
                Self { target: None }
            }
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (newline-separated `KEY=value` lines).
    /// Failures are logged, never fatal: the server works without systemd.
    pub fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }
}

/// `@name` is a Linux abstract socket; anything else a path.
fn connect(value: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match value.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None if value.starts_with('/') => SocketAddr::from_pathname(value)?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{value:?} is neither an absolute path nor @abstract"),
            ));
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// The watchdog interval systemd expects pings within, from
/// `WATCHDOG_USEC` (ignored when `WATCHDOG_PID` names another process).
pub(crate) fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// One counter per shard, bumped by the shard's own heartbeat task.
#[derive(Debug)]
pub(crate) struct Heartbeats(Box<[AtomicU64]>);

impl Heartbeats {
    pub(crate) fn new(shards: usize) -> Arc<Self> {
        Arc::new(Self((0..shards).map(|_| AtomicU64::new(0)).collect()))
    }

    /// Called by shard `shard` from its own loop.
    pub(crate) fn beat(&self, shard: usize) {
        if let Some(slot) = self.0.get(shard) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> Vec<u64> {
        self.0.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }
}

/// The shards that did not beat between two snapshots.
fn stalled(before: &[u64], now: &[u64]) -> Vec<usize> {
    before
        .iter()
        .zip(now)
        .enumerate()
        .filter(|(_, (b, n))| b == n)
        .map(|(i, _)| i)
        .collect()
}

/// How often each shard beats, for a watchdog `interval`.
pub(crate) fn beat_period(interval: Duration) -> Duration {
    (interval / 4).max(Duration::from_millis(1))
}

/// Starts the thread that pings the watchdog every `interval / 2` while
/// every shard keeps beating. It runs until the process exits.
pub(crate) fn start_watchdog(
    notifier: Arc<Notifier>,
    interval: Duration,
    beats: Arc<Heartbeats>,
) -> std::io::Result<()> {
    let every = (interval / 2).max(Duration::from_millis(1));
    std::thread::Builder::new()
        .name("gatrix-watchdog".into())
        .spawn(move || {
            let mut last = beats.snapshot();
            let mut was_stalled = false;
            loop {
                std::thread::sleep(every);
                let now = beats.snapshot();
                let late = stalled(&last, &now);
                if late.is_empty() {
                    notifier.send("WATCHDOG=1");
                    was_stalled = false;
                    last = now;
                } else if !was_stalled {
                    // Keep `last`: a shard that beats again resumes pings.
                    tracing::error!(shards = ?late, "shard loop stalled: not pinging the systemd watchdog");
                    was_stalled = true;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_that_did_not_beat_is_stalled() {
        let beats = Heartbeats::new(3);
        let before = beats.snapshot();
        beats.beat(0);
        beats.beat(2);
        assert_eq!(stalled(&before, &beats.snapshot()), vec![1]);
        beats.beat(1);
        assert!(stalled(&before, &beats.snapshot()).is_empty());
    }

    #[test]
    fn the_watchdog_pings_only_while_every_shard_beats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let notifier = Arc::new(Notifier {
            target: Some(connect(path.to_str().unwrap()).unwrap()),
        });
        let beats = Heartbeats::new(2);
        // Pings every 20 ms; shard 0 beats, shard 1 is stalled.
        start_watchdog(notifier, Duration::from_millis(40), beats.clone()).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let beater = {
            let (beats, stop) = (beats.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    beats.beat(0);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let mut buf = [0u8; 64];
        assert!(
            rx.recv(&mut buf).is_err(),
            "a ping while shard 1 never beat"
        );
        stop.store(true, Ordering::Relaxed);
        beater.join().unwrap();
        // Both shards beat once more: the next check pings, then no more.
        beats.beat(0);
        beats.beat(1);
        let n = rx.recv(&mut buf).expect("a ping once every shard beat");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        assert!(rx.recv(&mut buf).is_err(), "pings without new beats");
    }

    #[test]
    fn notifications_reach_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some(connect(path.to_str().unwrap()).unwrap()),
        };
        n.ready("up");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("gatrix-test-{}", std::process::id());
        let abs = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&abs).unwrap();
        let n = Notifier {
            target: Some(connect(&format!("@{name}")).unwrap()),
        };
        n.stopping("draining");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\nSTATUS=draining");
        assert!(connect("relative/path").is_err());
    }
}
