//! The files source: `--policies` YAML/JSON files and folders, read at start and
//! again whenever they change.

use super::{SnapshotStore, SourceObserver};
use crate::snapshot::Snapshot;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

pub(super) fn load_files(paths: &[PathBuf]) -> anyhow::Result<Snapshot> {
    // Each object is indexed as it is read: a large bundle is never held whole as
    // typed objects (a later definition replaces an earlier one, as in `check`).
    let mut snapshot = Snapshot::default();
    let loaded =
        crate::loader::stream_paths_in(paths, crate::loader::DEFAULT_NAMESPACE, &mut |object| {
            snapshot.apply(object)
        })
        .map_err(|e| anyhow::anyhow!("loading the policies from {paths:?}: {e}"))?;
    for note in &loaded.notes {
        tracing::warn!(note = %note, "policies");
    }
    for note in snapshot.notes() {
        tracing::warn!(note = %note, "snapshot");
    }
    tracing::info!(
        paths = ?paths,
        objects = ?counts_text(&snapshot),
        "loaded the mesh snapshot from files"
    );
    Ok(snapshot)
}

/// What identifies the current content of the files under `paths`: each file's
/// path, size and modification time (a ConfigMap update through kubelet's
/// symlink swap changes them too).
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    fn walk(path: &Path, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
        let Ok(meta) = std::fs::metadata(path) else {
            out.push((path.to_path_buf(), u64::MAX, None));
            return;
        };
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            for entry in entries {
                walk(&entry, out);
            }
        } else {
            out.push((path.to_path_buf(), meta.len(), meta.modified().ok()));
        }
    }
    let mut out = Vec::new();
    for path in paths {
        walk(path, &mut out);
    }
    out
}

/// Reloads the snapshot from `paths` whenever their content changes (checked every
/// `interval`) until `stop` turns true. A load that fails (a YAML error, say)
/// keeps the current snapshot, with an error log.
pub fn watch_files(
    paths: Vec<PathBuf>,
    store: SnapshotStore,
    observer: Arc<dyn SourceObserver>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    // Taken now (a few `stat`s), not when the task first runs: a change made
    // between the start and that first run would otherwise count as already seen.
    let mut seen = fingerprint(&paths);
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let now = current(&paths).await;
            if now == seen {
                continue;
            }
            // Load only once the files have stopped changing for one interval: a
            // writer may be half-way through (an empty file would load as "no policies").
            tokio::time::sleep(interval).await;
            if current(&paths).await != now {
                continue;
            }
            seen = now;
            let load = {
                let paths = paths.clone();
                tokio::task::spawn_blocking(move || load_files(&paths)).await
            };
            let ok = matches!(load, Ok(Ok(_)));
            observer.reloaded(ok);
            match load {
                Ok(Ok(snapshot)) => {
                    observer.published(snapshot.counts());
                    store.publish(snapshot);
                }
                Ok(Err(e)) => tracing::error!(
                    error = %format!("{e:#}"),
                    "the policies changed but do not load: keeping the current snapshot"
                ),
                Err(e) => tracing::error!(error = %e, "reloading the policies failed"),
            }
        }
    })
}

async fn current(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let paths = paths.to_vec();
    tokio::task::spawn_blocking(move || fingerprint(&paths))
        .await
        .unwrap_or_default()
}

fn counts_text(snapshot: &Snapshot) -> String {
    snapshot
        .counts()
        .iter()
        .map(|(kind, n)| format!("{kind}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}
