//! Serving certificate hot reload.
//!
//! The certificate and key files themselves are watched, not their folder: a busy
//! file beside them (a log written thousands of times a second) must cost nothing,
//! and a folder watch hears every write in the folder. The watch follows symlinks
//! to the files' current targets. When a target is replaced (kubelet swaps the
//! `..data` symlink of a mounted Secret and deletes the old folder; a writer renames
//! a new file over the old), the old target reports its removal and the watch is
//! set again on the new one. The files are also re-read every few seconds in case
//! an event is missed. A changed pair is validated before it is swapped in; a bad
//! pair is refused with an error log and the old one keeps serving.

use super::metrics::{CertCheck, Metrics};
use super::tls::{parse_pair, read_files, CertResolver, TlsFiles};
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
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
    // Watching before this returns: a change made once the server is up is seen.
    let changed = Arc::new(Notify::new());
    let mut watch = FileWatch::new(&files, changed.clone());
    watch.arm();
    tokio::spawn(async move {
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
        loop {
            let trigger = tokio::select! {
                _ = shutdown.changed() => break,
                _ = changed.notified() => {
                    tokio::time::sleep(SETTLE).await;
                    CertCheck::Change
                }
                _ = tick.tick() => CertCheck::Poll,
            };
            if *shutdown.borrow() {
                break;
            }
            // After an event the target may be a new file: watch that one. Set the
            // watch before reading, so that a change made meanwhile is not missed.
            if trigger == CertCheck::Change || !watch.armed {
                watch.arm();
            }
            reloader.check(trigger);
        }
    })
}

/// A watch on the certificate and key files (their symlink targets).
struct FileWatch {
    paths: Vec<PathBuf>,
    watcher: Option<notify::RecommendedWatcher>,
    /// Every path is watched; otherwise [`FileWatch::arm`] is tried again at each poll.
    armed: bool,
}

impl FileWatch {
    fn new(files: &TlsFiles, changed: Arc<Notify>) -> FileWatch {
        let mut paths = vec![files.cert.clone()];
        if files.key != files.cert {
            paths.push(files.key.clone());
        }
        let handler = move |res: notify::Result<notify::Event>| match res {
            // Opening, reading and closing (our own reads among them) change nothing;
            // a write also reports a Modify.
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(_) => changed.notify_one(),
            Err(e) => tracing::debug!(error = %e, "certificate watch error"),
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the certificate files; checking them every few seconds instead");
                None
            }
        };
        FileWatch {
            paths,
            watcher,
            armed: false,
        }
    }

    /// (Re-)watches every path's current target.
    fn arm(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let mut armed = true;
        for path in &self.paths {
            // The old target may be gone, and its watch with it.
            let _ = watcher.unwatch(path);
            if let Err(e) = watcher.watch(path, RecursiveMode::NonRecursive) {
                tracing::debug!(path = %path.display(), error = %e, "cannot watch a certificate file for now; checking it every few seconds");
                armed = false;
            }
        }
        self.armed = armed;
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
    fn check(&mut self, trigger: CertCheck) {
        self.metrics.count_cert_check(trigger);
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
