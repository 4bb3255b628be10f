//! A send-schedule timer with microsecond precision.
//!
//! tokio's timers have a 1 ms resolution and round up, so a send scheduled
//! with `sleep_until` leaves up to 1 ms late, and that lateness is counted
//! as latency (it is measured from the scheduled time). A server whose
//! p99 is under 1 ms cannot be measured that way. This timer is a
//! `timerfd` armed at the absolute scheduled time (CLOCK_REALTIME, the
//! clock of the schedule), awaited through the runtime's epoll: the kernel's
//! hrtimer wakes the runtime within the thread's timer slack (50 µs by
//! default), without a busy wait.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use crate::client::now_ns;

pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is checked and then owned.
        let raw = unsafe {
            libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the fd is owned by the AsyncFd and closed only when it
        // is dropped (after deregistration).
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Waits until the Unix time `ns` (nanoseconds).
    pub async fn sleep_until_unix_ns(&self, ns: u64) -> io::Result<()> {
        if now_ns() >= ns {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        let fd = self.fd.get_ref().as_raw_fd();
        // SAFETY: valid fd and itimerspec; the old value is not wanted.
        let r = unsafe {
            libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut())
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = 0u64;
            // SAFETY: reads 8 bytes into a u64 from our own timerfd.
            let n = unsafe { libc::read(fd, (&raw mut expirations).cast(), 8) };
            if n == 8 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
            guard.clear_ready();
            // Re-armed meanwhile (a new deadline) or a spurious wake-up.
            if now_ns() >= ns {
                return Ok(());
            }
        }
    }
}
