//! One store, one process: the exclusive lock a server (or `gatrix-chat
//! migrate`) takes on its store before touching it.
//!
//! The writer thread is the one place a channel's `seq` is assigned (and
//! SQLite's one writer connection), so a second process on the same store
//! assigns the same seqs: SQLite then refuses its sends (`UNIQUE constraint
//! failed`), and MySQL, whose partitioned `messages` cannot have that unique
//! key, stores both. Until several instances are supported, the second
//! process is refused at start instead, with [`StoreLocked`] (exit code 2).
//!
//! - SQLite: an exclusive `flock` on `DATA_DIR/gatrix-chat.lock`, held by
//!   an open descriptor for the life of the process (the kernel drops it
//!   when the process ends, however it ends). The file holds the holder's
//!   pid, host and start time, for the refusal message.
//! - MySQL: a named lock (`GET_LOCK`) held by the writer's connection: see
//!   `store::mysql::lock`.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The lock file's name in DATA_DIR.
pub const LOCK_FILE: &str = "gatrix-chat.lock";

/// Another process holds the store: the start (or `migrate`) is refused.
/// The message names the store, the holder when known, and what to do.
#[derive(Debug, thiserror::Error)]
#[error(
    "the store {store} is in use by another gatrix-chat ({holder}): one process per store, \
     or with Redis (MySQL) one per SERVER_ID; {fix}"
)]
pub struct StoreLocked {
    /// Where the store is (a directory, or a database without password).
    pub store: String,
    /// Who holds it, as far as known.
    pub holder: String,
    /// What the operator can do.
    pub fix: String,
}

/// Whether `e` (or anything in its chain) is a [`StoreLocked`]: the binary
/// exits 2 for it, as for a configuration that cannot start.
pub fn is_store_locked(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<StoreLocked>())
}

/// The SQLite store's lock: held until dropped (at the end of the process).
#[derive(Debug)]
pub struct DirLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl DirLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the exclusive lock on `data_dir` (created if missing), without
/// waiting: [`StoreLocked`] when another process holds it; any other error
/// when the lock file cannot be opened or written.
pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<DirLock> {
    use anyhow::Context as _;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating DATA_DIR {}", data_dir.display()))?;
    let path = data_dir.join(LOCK_FILE);
    // Not truncated on open: until we hold the lock, the contents are the
    // holder's.
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = describe_holder(&holder);
            return Err(StoreLocked {
                store: format!("in DATA_DIR {}", data_dir.display()),
                holder,
                fix: format!(
                    "stop it first, or give this process its own DATA_DIR (the lock is {})",
                    path.display()
                ),
            }
            .into());
        }
        Err((_, errno)) => {
            return Err(anyhow::anyhow!(
                "locking {}: {errno} (the file system must support flock; see docs/operations.md)",
                path.display()
            ));
        }
    };
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = crate::chat::message::now();
    let line = format!("pid={} host={host} started={started}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(line.as_bytes()))
        .and_then(|()| file.flush())
        .with_context(|| format!("writing the lock file {}", path.display()))?;
    Ok(DirLock { _file: file, path })
}

/// The holder as the lock file tells it: `pid 1234 on host db1, started
/// …`, from `pid=… host=… started=…`; a file written by something else is
/// not repeated (at most a few printable characters of it).
fn describe_holder(contents: &str) -> String {
    let field = |name: &str| {
        contents
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(|v| {
                v.chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(64)
                    .collect::<String>()
            })
    };
    match (field("pid"), field("host"), field("started")) {
        (Some(pid), host, started) => {
            let mut s = format!("pid {pid}");
            if let Some(h) = host.filter(|h| !h.is_empty()) {
                s.push_str(&format!(" on host {h}"));
            }
            if let Some(t) = started {
                s.push_str(&format!(", started {t}"));
            }
            s
        }
        _ => "a process that did not say who it is".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = lock_data_dir(&data).unwrap();
        // flock locks belong to the open file description: a second open
        // in the same process conflicts just as another process would.
        let e = lock_data_dir(&data).unwrap_err();
        assert!(is_store_locked(&e), "{e:#}");
        let text = format!("{e:#}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("DATA_DIR"), "{text}");
        drop(first);
        let again = lock_data_dir(&data).unwrap();
        assert!(again.path().ends_with(LOCK_FILE));
    }

    #[test]
    fn holders_are_described_from_the_file() {
        assert_eq!(
            describe_holder("pid=12 host=db1 started=2026-01-01T00:00:00.000Z\n"),
            "pid 12 on host db1, started 2026-01-01T00:00:00.000Z"
        );
        assert_eq!(
            describe_holder("garbage\u{7}\n"),
            "a process that did not say who it is"
        );
        assert_eq!(describe_holder("pid=1\u{1b}[2J host="), "pid 1[2J");
    }
}
