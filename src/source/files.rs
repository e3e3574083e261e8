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
    drop(loaded);
    crate::allocator::release_freed_memory();
    Ok(snapshot)
}

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// What identifies the current content of the files under `paths`: each file's
/// path, size and modification time (a ConfigMap update through kubelet's
/// symlink swap changes them too).
fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    fn walk(path: &Path, out: &mut Fingerprint) {
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
            // Load only once the files have stayed the same for a short settle time: a
            // writer may be half-way through (an empty file would load as "no policies").
            // The settle time is short and retried, not one whole interval: files
            // rewritten more often than the interval would otherwise never load.
            let Some(now) = settled(&paths, now, settle_time(interval)).await else {
                continue;
            };
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

/// How long the files must stay unchanged before a load.
fn settle_time(interval: Duration) -> Duration {
    interval.min(Duration::from_millis(250))
}

/// Tries a few times for the files to stay the same for `settle`; `None` when they
/// kept changing (the next poll tries again).
async fn settled(
    paths: &[PathBuf],
    mut last: Fingerprint,
    settle: Duration,
) -> Option<Fingerprint> {
    for _ in 0..SETTLE_TRIES {
        tokio::time::sleep(settle).await;
        let now = current(paths).await;
        if now == last {
            return Some(now);
        }
        last = now;
    }
    None
}

const SETTLE_TRIES: usize = 8;

async fn current(paths: &[PathBuf]) -> Fingerprint {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Reloads(AtomicUsize);

    impl SourceObserver for Reloads {
        fn reloaded(&self, ok: bool) {
            assert!(ok, "every version written loads");
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn policy(name: &str) -> String {
        format!(
            "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata:\n  name: {name}\n  namespace: bookinfo\nspec:\n  peers:\n  - mtls: {{}}\n"
        )
    }

    /// A GitOps tool or a soak rewriting the files more often than the poll interval
    /// must still get them loaded (before, a load waited for one whole quiet interval).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_rewritten_more_often_than_the_interval_are_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, policy("default")).unwrap();
        let store = SnapshotStore::new(Settings::default());
        let reloads = Arc::new(Reloads::default());
        let (stop_tx, stop) = watch::channel(false);
        let task = watch_files(
            vec![dir.path().to_path_buf()],
            store,
            reloads.clone(),
            Duration::from_secs(1),
            stop,
        );
        // Rewrites every 600 ms for up to 20 s: never quiet for a whole interval.
        for i in 0..34 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            std::fs::write(&file, policy(&format!("p{}", i % 7))).unwrap();
            if reloads.0.load(Ordering::SeqCst) > 0 {
                break;
            }
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(
            reloads.0.load(Ordering::SeqCst) > 0,
            "files changed every 600 ms were never reloaded with a 1 s poll interval"
        );
    }
}
