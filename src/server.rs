//! Start-up and shutdown of the whole server: the main thread's part.
//!
//! config → limits → auth → store (SQLite or MySQL: migrations, then its
//! threads) → shards (one pinned glommio executor each) → signals. `run`
//! returns once every shard has drained (or its deadline passed); the binary
//! then exits 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use std::time::Duration;

use crate::auth::Authenticator;
use crate::chat;
use crate::chat::ChatLimits;
use crate::config::{Backend, Config, LogFormat};
use crate::protocol::{self, QueueLimits};
use crate::shard::mailbox::Mesh;
use crate::shard::{self, Admission, ShardSetup, Shutdown};
use crate::store::handle::StoreSettings;
use crate::store::mysql::upkeep::Upkeep;
use crate::store::mysql::{self, MysqlStore};
use crate::store::sqlite::SqliteStore;
use crate::store::writer::WriterSettings;
use crate::store::{self, Store, StoreError};
use crate::transport::Endpoint;

/// Batches a ring between two shards holds before its sender waits.
const MESH_RING_BATCHES: usize = 1024;
/// Listen backlog per shard (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

/// Sets up `tracing` from RUST_LOG (default `info`) in the configured format.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Runs the server until SIGTERM or SIGINT, then drains and returns.
pub fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::new(config.shards());
    let signals = watch_signals(shutdown.clone())?;
    let result = run_until(config, shutdown);
    signals.close();
    result
}

/// Runs the server until `shutdown` is triggered.
pub fn run_until(config: Config, shutdown: Arc<Shutdown>) -> anyhow::Result<()> {
    let shards = config.shards();
    raise_fd_limit(config.ws_max_connections);
    let auth = Arc::new(Authenticator::from_config(&config).context("JWT settings")?);
    let requested = config.listen_addr()?;
    // Port 0: reserve one port for all shards with a bound, non-listening
    // SO_REUSEPORT socket held until every shard has bound it.
    let (listen, reservation) = reserve_port(requested)?;

    let backend = config.backend()?;
    let (open, upkeep) = open_store(&config, &backend)?;
    let mesh = Mesh::new(shards, MESH_RING_BATCHES);
    let (store, store_threads) = store::handle::start(
        &StoreSettings {
            data_dir: config.data_dir.clone(),
            writer: WriterSettings {
                max_batch: config.broadcast_batch_size,
                window: Duration::from_micros(config.store_commit_window_us),
            },
            writer_queue: config.store_writer_queue,
            readers: config.store_reader_threads(),
            reader_queue: config.store_writer_queue,
        },
        open,
        chat::commit::sink(mesh.clone()),
    )
    .context("starting the store threads")?;

    let max_payload = config.max_payload;
    let endpoint = Endpoint {
        opts: protocol::Options {
            ping_interval: config.ping_interval(),
            ping_timeout: config.ping_timeout(),
            connect_timeout: config.connect_timeout(),
            max_payload,
        },
        queue: QueueLimits {
            max_frames: config.outbound_queue_messages,
            max_bytes: config.outbound_queue_bytes,
        },
        max_header_bytes: config.max_http_header_bytes,
        handshake_timeout: config.handshake_timeout(),
    };
    let setup = ShardSetup {
        listen,
        backlog: LISTEN_BACKLOG,
        endpoint,
        chat_limits: ChatLimits {
            max_message_length: config.max_message_length,
            max_channels_per_connection: config.max_channels_per_connection,
            rate_per_sec: config.rate_limit_per_sec,
            rate_burst: config.rate_limit_burst,
            rate_disconnect_after: config.rate_limit_disconnect_after,
            typing_timeout: config.typing_timeout(),
            recovery_window: config.recovery_window(),
        },
        auth,
        mesh,
        store,
        sessions: chat::recovery::Sessions::new(),
        admission: Admission::new(config.ws_max_connections, config.ws_max_connections_per_ip),
        shutdown: shutdown.clone(),
        drain_timeout: config.shutdown_timeout(),
        rest: crate::rest::RestSettings::from_config(&config),
    };

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let placement = if shards <= cores {
        PoolPlacement::MaxSpread(shards, None)
    } else {
        PoolPlacement::Unbound(shards)
    };
    let next_index = Arc::new(AtomicUsize::new(0));
    let bound = Arc::new(AtomicUsize::new(0));
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("gatrix-shard")
        .io_memory(config.io_memory_bytes())
        .ring_depth(config.io_ring_depth)
        .on_all_shards({
            let bound = bound.clone();
            move || {
                let index = next_index.fetch_add(1, Ordering::SeqCst);
                let setup = setup.clone();
                let bound = bound.clone();
                async move {
                    // `run` binds first; count the shard as bound once it
                    // got past that point or failed.
                    let result = shard::run(index, setup, || {
                        bound.fetch_add(1, Ordering::SeqCst);
                    })
                    .await;
                    if let Err(e) = &result {
                        tracing::error!(shard = index, error = %e, "shard failed");
                    }
                    result.is_ok()
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("starting the shard executors: {e}"))?;

    while bound.load(Ordering::SeqCst) < shards && !shutdown.is_triggered() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(reservation);
    tracing::info!(%listen, shards, "gatrix-chat listening on http://{listen}");

    let results = handles.join_all();
    // Every shard (and so every store handle) is gone: the writer commits
    // what is still queued and stops.
    store_threads.join();
    if let Some(upkeep) = upkeep {
        upkeep.stop();
    }
    let failed = results.iter().filter(|r| !matches!(r, Ok(true))).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {shards} shards failed (see the log above)");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Opens one store connection; called once per store thread.
type OpenStore = Box<dyn Fn() -> Result<Box<dyn Store>, StoreError>>;

/// Applies the migrations of the configured store and returns how to open
/// a connection to it, plus (MySQL) the daily partition upkeep, after one
/// pass now.
fn open_store(config: &Config, backend: &Backend) -> anyhow::Result<(OpenStore, Option<Upkeep>)> {
    match backend {
        Backend::Sqlite(data_dir) => {
            let applied = store::sqlite::migrate(data_dir)
                .with_context(|| format!("opening the store in DATA_DIR {}", data_dir.display()))?;
            if applied > 0 {
                tracing::info!(applied, data_dir = %data_dir.display(), "store migrated");
            }
            let data_dir = data_dir.clone();
            let open: OpenStore =
                Box::new(move || Ok(Box::new(SqliteStore::open(&data_dir)?) as Box<dyn Store>));
            Ok((open, None))
        }
        Backend::Mysql(opts) => {
            let database = mysql::describe(opts);
            let applied = mysql::migrate(opts)
                .with_context(|| format!("migrating the MySQL store at {database}"))?;
            tracing::info!(%database, applied, pool = config.store_reader_threads() + 1, "MySQL store");
            // The catch-all partition takes any message, so a failed pass
            // is not fatal; the daily one retries.
            if let Err(e) = mysql::upkeep::run_once(opts, config.partition_policy()) {
                tracing::error!(error = %e, "message partition upkeep failed; retrying daily");
            }
            let upkeep = Upkeep::start(opts.clone(), config.partition_policy())
                .context("starting the partition upkeep thread")?;
            let opts = opts.clone();
            let open: OpenStore =
                Box::new(move || Ok(Box::new(MysqlStore::open(&opts)?) as Box<dyn Store>));
            Ok((open, Some(upkeep)))
        }
    }
}

/// Keeps a port for the shards when the configured one is 0.
fn reserve_port(addr: SocketAddr) -> anyhow::Result<(SocketAddr, Option<socket2::Socket>)> {
    if addr.port() != 0 {
        return Ok((addr, None));
    }
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    let local = sock
        .local_addr()?
        .as_socket()
        .context("the reserved address is not an IP socket")?;
    Ok((local, Some(sock)))
}

/// Raises the soft open-files limit to the hard one: every connection is a
/// descriptor. Warns when the configured maximum cannot fit.
fn raise_fd_limit(wanted: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        tracing::warn!(soft, hard, "could not raise the open-files limit");
    }
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(s, _)| s);
    if wanted as u64 + 64 > limit {
        tracing::warn!(
            ws_max_connections = wanted,
            open_files_limit = limit,
            "WS_MAX_CONNECTIONS exceeds the open-files limit: raise LimitNOFILE (systemd) or ulimit -n"
        );
    }
}

/// A thread that turns SIGTERM/SIGINT into a drain; a second signal exits
/// at once.
fn watch_signals(shutdown: Arc<Shutdown>) -> anyhow::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("gatrix-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if shutdown.is_triggered() {
                    tracing::warn!(signal = sig, "second signal: exiting now");
                    std::process::exit(1);
                }
                tracing::info!(signal = sig, "shutting down: draining connections");
                shutdown.trigger();
            }
        })
        .context("starting the signal thread")?;
    Ok(handle)
}
