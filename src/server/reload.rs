//! Serving certificate hot reload.
//!
//! The parent folders of the certificate and key are watched (kubelet updates a
//! mounted Secret by renaming a `..data` symlink, so events arrive for the folder,
//! not for `tls.crt` itself), and the files are also re-read every few seconds in
//! case an event is missed. A changed pair is validated before it is swapped in; a
//! bad pair is refused with an error log and the old one keeps serving.

use super::metrics::Metrics;
use super::tls::{parse_pair, read_files, CertResolver, TlsFiles};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long to wait after a file event for the writer to finish (a Secret update
/// is several renames; a plain writer may write the certificate and key separately).
const SETTLE: Duration = Duration::from_millis(150);

/// Watches `files` and swaps changed pairs into `resolver` until `shutdown` turns true.
pub(crate) fn spawn(
    files: TlsFiles,
    resolver: Arc<CertResolver>,
    metrics: Arc<Metrics>,
    poll_interval: Duration,
    initial: (Vec<u8>, Vec<u8>),
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        // Kept alive for as long as the task runs.
        let _watcher = watch_folders(&files, tx);
        let mut reloader = Reloader {
            files,
            resolver,
            metrics,
            seen: initial,
            last_read_error: None,
        };
        let mut tick = tokio::time::interval(poll_interval.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut watching = true;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                event = rx.recv(), if watching => {
                    if event.is_none() {
                        // The watcher is gone; polling still works.
                        watching = false;
                        continue;
                    }
                    tokio::time::sleep(SETTLE).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = tick.tick() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            reloader.check();
        }
    })
}

fn watch_folders(
    files: &TlsFiles,
    tx: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let folders: BTreeSet<PathBuf> = [&files.cert, &files.key]
        .into_iter()
        .map(|p| parent_folder(p))
        .collect();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
        Ok(_) => {
            let _ = tx.send(());
        }
        Err(e) => tracing::debug!(error = %e, "certificate watch error"),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the certificate files; checking them every few seconds instead");
            return None;
        }
    };
    for folder in &folders {
        if let Err(e) = watcher.watch(folder, RecursiveMode::NonRecursive) {
            tracing::warn!(folder = %folder.display(), error = %e, "cannot watch the certificate folder; checking it every few seconds instead");
        }
    }
    Some(watcher)
}

fn parent_folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

struct Reloader {
    files: TlsFiles,
    resolver: Arc<CertResolver>,
    metrics: Arc<Metrics>,
    /// The contents last looked at (served or refused), so that each change is
    /// handled once.
    seen: (Vec<u8>, Vec<u8>),
    last_read_error: Option<String>,
}

impl Reloader {
    fn check(&mut self) {
        let contents = match read_files(&self.files) {
            Ok(c) => c,
            Err(e) => {
                // Missing for a moment during a swap is normal; say it once if it lasts.
                let text = format!("{e:#}");
                if self.last_read_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, "cannot read the serving certificate files; the current certificate keeps serving");
                    self.last_read_error = Some(text);
                }
                return;
            }
        };
        self.last_read_error = None;
        if contents == self.seen {
            return;
        }
        match parse_pair(&contents.0, &contents.1) {
            Ok(pair) => {
                let info = pair.info.clone();
                self.resolver.set(pair);
                self.metrics.set_cert_expiry(info.not_after);
                self.metrics.count_cert_reload(true);
                tracing::info!(
                    cert = %self.files.cert.display(),
                    subject = %info.subject,
                    names = ?info.names,
                    serial = %info.serial,
                    not_after = info.not_after,
                    "serving certificate reloaded; new connections use it"
                );
            }
            Err(e) => {
                self.metrics.count_cert_reload(false);
                tracing::error!(
                    cert = %self.files.cert.display(),
                    key = %self.files.key.display(),
                    error = %format!("{e:#}"),
                    "refused the changed serving certificate; the previous one keeps serving"
                );
            }
        }
        self.seen = contents;
    }
}
