//! Where the server's mesh snapshot comes from, and the cell reviews read it from.
//!
//! A source produces whole [`Snapshot`]s; the [`SnapshotStore`] holds the current one
//! and swaps in a new one atomically, so a review always sees one consistent snapshot.
//! Today the sources are files (`--policies`, reloaded when they change) and fixed
//! snapshots (tests, benches);
//! a cluster source (kube-rs watches) will publish into the same store.

use super::metrics::Metrics;
use crate::model::MeshObject;
use crate::snapshot::Snapshot;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Where the snapshot comes from.
pub enum SnapshotSource {
    /// Loaded at start from YAML/JSON files and folders (`--policies`), and again
    /// whenever one of them changes (see [`watch_files`]).
    Files(Vec<PathBuf>),
    /// A snapshot built by the caller.
    Fixed(Snapshot),
    /// Objects given by the caller, indexed at start.
    Objects(Vec<MeshObject>),
    /// No source yet (no `--policies`; cluster mode is still to come): an empty
    /// snapshot, under which nothing requires mutual TLS, so every rule is allowed.
    Empty,
    /// Published later through [`SnapshotStore::publish`] (the shape of a cluster
    /// source): the server is not ready, and answers reviews with 503, until then.
    Deferred,
}

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotSource::Files(paths) => f.debug_tuple("Files").field(paths).finish(),
            SnapshotSource::Fixed(_) => f.write_str("Fixed(..)"),
            SnapshotSource::Objects(objects) => write!(f, "Objects({} objects)", objects.len()),
            SnapshotSource::Empty => f.write_str("Empty"),
            SnapshotSource::Deferred => f.write_str("Deferred"),
        }
    }
}

impl SnapshotSource {
    /// Produces the first snapshot, if this source has one at start.
    pub(crate) fn initial(self) -> anyhow::Result<Option<Snapshot>> {
        match self {
            SnapshotSource::Files(paths) => load_files(&paths).map(Some),
            SnapshotSource::Fixed(snapshot) => Ok(Some(snapshot)),
            SnapshotSource::Objects(objects) => Ok(Some(Snapshot::from_objects(objects))),
            SnapshotSource::Empty => {
                tracing::warn!(
                    "no --policies given and cluster mode is not implemented yet: serving an EMPTY mesh snapshot, \
                     under which no policy requires mutual TLS, so every DestinationRule is allowed unchanged"
                );
                Ok(Some(Snapshot::default()))
            }
            SnapshotSource::Deferred => Ok(None),
        }
    }
}

fn load_files(paths: &[PathBuf]) -> anyhow::Result<Snapshot> {
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
pub(crate) fn watch_files(
    paths: Vec<PathBuf>,
    store: SnapshotStore,
    interval: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stopped = super::listener::wait_for(stop);
        tokio::pin!(stopped);
        let mut seen = current(&paths).await;
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
            store.metrics.count_snapshot_reload(ok);
            match load {
                Ok(Ok(snapshot)) => store.publish(snapshot),
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

/// The current snapshot, shared by every request.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    current: Arc<RwLock<Option<Arc<Snapshot>>>>,
    metrics: Arc<Metrics>,
}

impl SnapshotStore {
    pub(crate) fn new(metrics: Arc<Metrics>) -> SnapshotStore {
        SnapshotStore {
            current: Arc::new(RwLock::new(None)),
            metrics,
        }
    }

    /// The snapshot reviews are judged against, once one is loaded.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Swaps in a new snapshot: reviews that already started keep the old one.
    pub fn publish(&self, snapshot: Snapshot) {
        for note in snapshot.notes() {
            tracing::warn!(note = %note, "snapshot");
        }
        self.metrics.set_snapshot(snapshot.counts());
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(snapshot));
    }
}
