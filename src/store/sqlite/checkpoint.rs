//! WAL checkpoints off the writer thread.
//!
//! By default SQLite checkpoints inside the commit that crosses 1000 WAL
//! pages, on the committing connection: the writer thread. With
//! synchronous=NORMAL a checkpoint is where the fsyncs happen (the WAL, then
//! the database file), so every few hundred small commits one of them took
//! milliseconds and every message queued behind it waited: at 1,000
//! messages/s this was most of the broadcast latency. The server's store
//! connections run with `wal_autocheckpoint=0` and this thread checkpoints
//! instead, PASSIVE (never blocking the writer), every [`EVERY`]. If the
//! writer outruns it so that the WAL passes [`RESTART_FRAMES`], it runs a
//! RESTART checkpoint, which does wait for the writer, to bound the WAL;
//! `journal_size_limit` then truncates the file back.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};
use rusqlite::Connection;

use super::{db_path, open_connection};

/// How often the WAL is checkpointed.
const EVERY: Duration = Duration::from_millis(100);
/// WAL size (in pages) above which a checkpoint may stall the writer.
const RESTART_FRAMES: i64 = 16_384;

/// The checkpoint thread; [`Checkpointer::stop`] ends it after a final
/// TRUNCATE checkpoint (a tidy WAL for backups and the next start).
pub struct Checkpointer {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let conn = open_connection(&db_path(data_dir))?;
        let (stop, stopped) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("gatrix-store-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    match checkpoint(&conn, "PASSIVE") {
                        Ok(frames) if frames > RESTART_FRAMES => {
                            tracing::info!(frames, "WAL large; checkpoint waits for the writer");
                            if let Err(e) = checkpoint(&conn, "RESTART") {
                                tracing::warn!(error = %e, "WAL checkpoint failed");
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                    }
                }
                if let Err(e) = checkpoint(&conn, "TRUNCATE") {
                    tracing::warn!(error = %e, "final WAL checkpoint failed");
                }
            })?;
        Ok(Self { stop, thread })
    }

    /// Ends the thread after a final checkpoint.
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// Runs one checkpoint; returns the WAL's size in pages.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        r.get::<_, i64>(1)
    })
}
