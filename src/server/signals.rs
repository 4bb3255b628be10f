//! The signal thread: SIGTERM/SIGINT drain the server (a second exits at
//! once), SIGHUP reloads the TLS certificate.

use std::sync::Arc;

use anyhow::Context as _;

use crate::notify::Notifier;
use crate::shard::Shutdown;
use crate::tls::Tls;

/// A thread that turns SIGTERM/SIGINT into a drain (a second signal exits
/// at once) and SIGHUP into a reload of the TLS certificate.
pub(super) fn watch_signals(
    shutdown: Arc<Shutdown>,
    notifier: Arc<Notifier>,
    tls: Option<Arc<Tls>>,
) -> anyhow::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("gatrix-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    reload(tls.as_deref());
                    continue;
                }
                if shutdown.is_triggered() {
                    tracing::warn!(signal = sig, "second signal: exiting now");
                    std::process::exit(1);
                }
                tracing::info!(signal = sig, "shutting down: draining connections");
                notifier.stopping("draining connections");
                shutdown.trigger();
            }
        })
        .context("starting the signal thread")?;
    Ok(handle)
}

/// SIGHUP: reload the TLS certificate and key; a bad file keeps the old ones.
fn reload(tls: Option<&Tls>) {
    match tls {
        None => tracing::info!("SIGHUP: nothing to reload (TLS is off)"),
        Some(tls) => match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded; new connections use it"),
            Err(e) => {
                tracing::error!("SIGHUP: TLS reload failed, keeping the current certificate: {e:#}")
            }
        },
    }
}
