//! Start-up and shutdown of the whole server: the main thread's part.
//!
//! config → limits → auth → port → metrics → mesh → store (`store::open`:
//! SQLite or MySQL, its lock, migrations and threads) → the bus (with
//! Redis: `bus::prepare` gives the writer its fan-out, then its threads
//! start from the database's last `pos`) → shards (one pinned
//! glommio executor each; each says on a channel whether it listens) →
//! ready → signals. `run` returns once every shard has drained (or its
//! deadline passed) and the store has stopped; the binary then exits 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use crossbeam_channel::Receiver;
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};

use crate::auth::Authenticator;
use crate::bus::{self, ServerFanout};
use crate::chat;
use crate::chat::commit::MeshFanout;
use crate::config::{Config, LogFormat};
use crate::mailbox::Mesh;
use crate::metrics::Metrics;
use crate::notify::{Heartbeats, Notifier};
use crate::shard::{self, Admission, ShardSetup, Shutdown};
use crate::store;
use crate::tls::Tls;

mod settings;
mod signals;
use settings::{chat_limits, endpoint, recovery_sessions, store_settings};
use signals::watch_signals;

/// Batches a ring between two shards holds before its sender waits.
const MESH_RING_BATCHES: usize = 1024;
/// Listen backlog per shard (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

/// Sets up `tracing` from RUST_LOG (else the Node.js server's LOG_LEVEL,
/// else `info`) in the configured format.
///
/// No log line at any level carries a token or message content: the
/// WebSocket framing is our own (it logs no payloads), and the tests check
/// a trace-level log for tokens.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = crate::config::log_filter_from_env();
        tracing_subscriber::EnvFilter::new(level.as_deref().unwrap_or("info"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: not in journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Runs the server until SIGTERM or SIGINT, then drains and returns.
/// SIGHUP reloads the TLS certificate.
pub fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::new(config.shards());
    let notifier = Arc::new(Notifier::from_env());
    let tls = match config.tls_files() {
        Some((cert, key)) => Some(Tls::from_files(cert, key)?),
        None => None,
    };
    let signals = watch_signals(shutdown.clone(), notifier.clone(), tls.clone())?;
    let result = run_until(config, shutdown, notifier, tls);
    signals.close();
    result
}

/// Runs the server until `shutdown` is triggered.
pub fn run_until(
    config: Config,
    shutdown: Arc<Shutdown>,
    notifier: Arc<Notifier>,
    tls: Option<Arc<Tls>>,
) -> anyhow::Result<()> {
    let shards = config.shards();
    notifier.status("starting: opening the store");
    raise_fd_limit(config.ws_max_connections);
    let auth = Arc::new(Authenticator::from_config(&config).context("JWT settings")?);
    // Port 0: reserve one port for all shards with a bound, non-listening
    // SO_REUSEPORT socket held until every shard has bound it.
    let (listen, reservation) = reserve_port(config.listen_addr()?)?;
    let metrics = Metrics::new();
    let metrics_addr = config.metrics_addr()?;
    let mesh = Mesh::new(shards, MESH_RING_BATCHES);
    // With Redis, the writer's commits go through the bus (an ordered log
    // that every instance applies); without, straight into the mesh.
    // Without Redis: where this process's recovery offsets start, once
    // the store is migrated (below).
    let start = Arc::new(std::sync::OnceLock::new());
    let (fanout, bus) = match bus::prepare(&config, &mesh, &metrics)? {
        Some((fanout, pending)) => (ServerFanout::Bus(fanout), Some(pending)),
        None => (
            ServerFanout::Mesh(MeshFanout::new(
                mesh.clone(),
                config.compression(),
                config.sequencer_partitions,
                start.clone(),
            )),
            None,
        ),
    };
    // The store (lock, migrations, its threads), committing into the mesh;
    // stopped once every shard, and so every store handle, is gone.
    let (store, store_guard) = store::open(&config, &store_settings(&config, &metrics), fanout)?;
    // The bus's threads, from the database's last commit position: after
    // the migrations, before any shard (and so any commit).
    let bus = match bus {
        Some(pending) => Some(pending.start(&config, mesh.clone(), &metrics)?),
        None => {
            let last =
                store::last_positions(&config).context("reading the last commit positions")?;
            let _ = start.set(last);
            None
        }
    };
    // Several instances: presence and ephemeral events through Redis.
    // The user directory of the Gatrix dialect, one for the process: the
    // shards' frames read it, REST and the cluster's subscriber change it.
    let directory = Arc::new(crate::chat::gatrix::Directory::new(
        config.gatrix_directory_cache_users,
    ));
    let cluster = chat::cluster::Cluster::from_config(&config, &mesh, &metrics, directory.clone())?;
    let watchdog = notifier
        .is_enabled()
        .then(crate::notify::watchdog_interval)
        .flatten();
    let heartbeats = Heartbeats::new(shards);
    let sessions = recovery_sessions(&config, &mesh, &metrics)?;
    let setup = ShardSetup {
        listen,
        backlog: LISTEN_BACKLOG,
        endpoint: endpoint(&config),
        chat_limits: chat_limits(
            &config,
            bus.as_ref()
                .map(bus::BusGuard::start)
                .or(start.get().map(Vec::as_slice)),
            directory,
        ),
        gatrix_compat: config.gatrix_compat,
        backend_service_token: config.backend_service_token.as_deref().map(Into::into),
        auth,
        mesh,
        // Only `post_external` is used: one lock-free queue per shard.
        handoff: Mesh::new(shards, 1),
        store,
        sessions,
        cluster,
        admission: Admission::new(
            config.ws_max_connections,
            config.ws_max_connections_per_ip,
            crate::shard::admission::ConnectionRate {
                per_sec: config.ws_connection_rate_per_ip,
                burst: config.ws_connection_burst_per_ip,
            },
        ),
        shutdown: shutdown.clone(),
        drain_timeout: config.shutdown_timeout(),
        rest: crate::rest::RestSettings::from_config(&config),
        metrics: metrics.clone(),
        metrics_on_main_port: config.metrics_enabled && metrics_addr.is_none(),
        refusal_log_interval: Duration::from_millis(config.refusal_log_interval_ms),
        tls: tls.clone(),
        heartbeat: watchdog.map(|w| (heartbeats.clone(), crate::notify::beat_period(w))),
    };
    // /metrics on its own address, bound before any shard starts: a bad
    // METRICS_LISTEN stops the start, and a unit that is READY can be
    // scraped.
    if let Some(addr) = metrics_addr.filter(|_| config.metrics_enabled) {
        let local = crate::metrics::listen::start(addr, metrics.clone())
            .map_err(|e| metrics_bind_error(addr, &e))?;
        tracing::info!(%local, "metrics on http://{local}/metrics");
    }
    let (handles, bound) = start_shards(&config, setup)?;
    let failed = bind_failures(&bound, shards);
    drop(reservation);

    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        %listen,
        shards,
        version = crate::config::VERSION,
        store = %config.store_description(),
        metrics = %config.metrics_location(),
        "gatrix-chat listening on {scheme}://{listen}"
    );
    if failed == 0 && !shutdown.is_triggered() {
        // Every shard listens and the store is migrated: systemd may start
        // what depends on this unit.
        notifier.ready(&format!(
            "serving on {scheme}://{listen} with {shards} shards"
        ));
        if let Some(interval) = watchdog {
            crate::notify::start_watchdog(notifier.clone(), interval, heartbeats)
                .context("starting the watchdog thread")?;
        }
    } else if failed > 0 {
        notifier.status(&format!("{failed} of {shards} shards could not listen"));
        // The shards that bound keep running until told to stop.
        shutdown.trigger();
    }

    let results = handles.join_all();
    // Every shard (and so every store handle) is gone: the writer commits
    // what is still queued and stops, then the store's other threads.
    store_guard.stop();
    // After the writer, whose fan-out feeds it.
    if let Some(bus) = bus {
        bus.stop();
    }
    let failed = results.iter().filter(|r| !matches!(r, Ok(true))).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {shards} shards failed (see the log above)");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts one executor per shard. Each shard says on the returned channel
/// whether it could bind its listener (the first thing it does); a shard
/// whose executor never ran drops its sender unsaid.
fn start_shards(
    config: &Config,
    setup: ShardSetup,
) -> anyhow::Result<(PoolThreadHandles<bool>, Receiver<bool>)> {
    let (bound_tx, bound) = crossbeam_channel::bounded::<bool>(config.shards());
    let next_index = Arc::new(AtomicUsize::new(0));
    let handles = LocalExecutorPoolBuilder::new(placement(config, config.shards())?)
        .name("gatrix-shard")
        .io_memory(config.io_memory_bytes())
        .ring_depth(config.io_ring_depth)
        .on_all_shards(move || {
            let index = next_index.fetch_add(1, Ordering::SeqCst);
            async move {
                let result = shard::run(index, setup, |ok| {
                    let _ = bound_tx.send(ok);
                })
                .await;
                if let Err(e) = &result {
                    tracing::error!(shard = index, error = %e, "shard failed");
                }
                result.is_ok()
            }
        })
        .map_err(|e| anyhow::anyhow!("starting the shard executors: {e}"))?;
    Ok((handles, bound))
}

/// Waits until each of the `shards` has said whether it listens; returns
/// how many do not (a shard that never said counts).
fn bind_failures(bound: &Receiver<bool>, shards: usize) -> usize {
    // Ends early only when every sender is gone: no shard is left to say.
    shards - bound.iter().take(shards).filter(|ok| *ok).count()
}

/// Where the shards run: with `shard_cpus`, one shard pinned to each listed
/// CPU; otherwise spread over the CPUs this process may use (`taskset`,
/// systemd's `CPUAffinity=`), one per CPU while there are enough, and
/// fenced to them beyond. (glommio's own default would pick from every
/// online CPU, ignoring the process's affinity, so CPUs kept for network
/// interrupts would get shards.)
fn placement(config: &Config, shards: usize) -> anyhow::Result<PoolPlacement> {
    let online = CpuSet::online().map_err(|e| anyhow::anyhow!("reading the CPU topology: {e}"))?;
    if let Some(cpus) = config.shard_cpu_list()? {
        let mut sets = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            let set = online.clone().filter(|l| l.cpu == cpu);
            anyhow::ensure!(
                !set.is_empty(),
                "SHARD_CPUS lists CPU {cpu}, which is not online"
            );
            sets.push(set);
        }
        return Ok(PoolPlacement::Custom(sets));
    }
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok();
    let set = online.filter(|l| allowed.is_none_or(|a| a.is_set(l.cpu).unwrap_or(false)));
    anyhow::ensure!(
        !set.is_empty(),
        "no online CPU is in this process's CPU affinity"
    );
    Ok(if shards <= set.len() {
        PoolPlacement::MaxSpread(shards, Some(set))
    } else {
        PoolPlacement::Fenced(shards, set)
    })
}

/// The start error for a METRICS_LISTEN that cannot be bound, naming the
/// setting and the way out: two servers on one machine both default to
/// 127.0.0.1:9402.
fn metrics_bind_error(addr: SocketAddr, e: &std::io::Error) -> anyhow::Error {
    let why = if e.kind() == std::io::ErrorKind::AddrInUse {
        "is in use (another gatrix-chat on this machine?)".to_owned()
    } else {
        format!("cannot be bound: {e}")
    };
    anyhow::anyhow!(
        "METRICS_LISTEN (metrics_listen) {addr} {why}: set METRICS_LISTEN to a free address \
         (e.g. 127.0.0.1:{}), `public` for the public port, or METRICS_ENABLED=false",
        addr.port().wrapping_add(1)
    )
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
