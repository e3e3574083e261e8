//! One kind's watch: kube-runtime's [`watcher`] (list, then watch; re-list after
//! a 410 or a dropped stream; the default backoff after errors), its events
//! turned into [`Change`]s for the index. The watcher says nothing when a watch
//! request succeeds again after an error, and a quiet kind may send no event for
//! long: its client tells [`ClusterStatus`] when a watch request is answered.

use super::kinds::{Watched, MESH_CONFIG_MAP};
use super::mesh::MeshConfig;
use super::status::ClusterStatus;
use crate::model::{MeshObject, ModelError};
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// An object of a watched kind, read. (Moved once through a channel: not worth
/// a box per object.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Obj {
    Mesh(MeshObject),
    MeshConfig(MeshConfig),
}

/// What a watch tells the index. `generation` tells a watch from the one that
/// replaced it (after discovery saw the kind's API change), whose late messages
/// are dropped.
#[derive(Debug)]
pub struct Change {
    pub kind: Watched,
    pub generation: u64,
    pub what: What,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum What {
    /// Every object of the kind (a list, or an empty one when the API is not served).
    Reset(Vec<Obj>),
    Apply(Obj),
    Delete {
        namespace: String,
        name: String,
    },
}

/// The watch of `kind` at `resource`, until the task is aborted.
pub(super) async fn run(
    client: kube::Client,
    kind: Watched,
    resource: ApiResource,
    istio_namespace: String,
    generation: u64,
    tx: mpsc::Sender<Change>,
    status: Arc<ClusterStatus>,
) {
    let client = observed(client, status.clone(), kind, resource.api_version.clone());
    let (api, config) = target(client, kind, &resource, &istio_namespace);
    let send = |what: What| {
        tx.send(Change {
            kind,
            generation,
            what,
        })
    };
    let mut restart = RESTART_MIN;
    // After a 404 the kind is emptied, but kube-runtime's watcher would go on
    // watching from the resourceVersion it had, and never list again: were the API
    // back with its objects (an API server restarting serves 404 for a CRD until
    // it has loaded it), the kind would stay empty. A new watcher lists first.
    loop {
        let mut listed = Vec::new();
        let mut stream = watcher(api.clone(), config.clone())
            .default_backoff()
            .boxed();
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(event) => event,
                Err(error) => {
                    let message = describe_error(&error, &resource, kind, &istio_namespace);
                    match api_status(&error).map(|(code, _)| code) {
                        // Routine: kube-runtime re-lists.
                        Some(410) => tracing::info!(kind = %kind, error = %message, "watch"),
                        // The API went away (a CRD deleted): its objects went with it.
                        Some(404) => {
                            if status.not_served(kind) {
                                tracing::warn!(kind = %kind, error = %message, "watch");
                                if send(What::Reset(Vec::new())).await.is_err() {
                                    return;
                                }
                            }
                            break;
                        }
                        _ => {
                            if status.down(kind, message.clone()) {
                                tracing::error!(kind = %kind, error = %message, "watch failed; retrying with backoff");
                            }
                        }
                    }
                    continue;
                }
            };
            let what = match event {
                Event::Init => {
                    listed.clear();
                    continue;
                }
                Event::InitApply(object) => {
                    if let Some(obj) = read(kind, &resource, object) {
                        listed.push(obj);
                    }
                    continue;
                }
                Event::InitDone => {
                    restart = RESTART_MIN;
                    What::Reset(std::mem::take(&mut listed))
                }
                Event::Apply(object) => {
                    let (namespace, name) = identity(&object);
                    match read(kind, &resource, object) {
                        Some(obj) => What::Apply(obj),
                        // What the index knew of it is no longer true: drop it.
                        None => What::Delete { namespace, name },
                    }
                }
                Event::Delete(object) => {
                    let (namespace, name) = identity(&object);
                    What::Delete { namespace, name }
                }
            };
            if let Some(down) = status.up(kind, &resource.api_version) {
                recovered(kind, down);
            }
            if send(what).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(restart).await;
        restart = (restart * 2).min(RESTART_MAX);
    }
}

/// How long a watch whose API answered 404 waits before it lists again, doubling
/// while the API stays away (kube-runtime's own backoff has the same bounds).
const RESTART_MIN: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);

fn recovered(kind: Watched, down: Duration) {
    tracing::info!(kind = %kind, failed_for_s = down.as_secs(), "watch works again");
}

/// `client`, telling `status` when a watch request of `kind` is answered 2xx (the
/// watch runs again, even if no event comes).
fn observed(
    client: kube::Client,
    status: Arc<ClusterStatus>,
    kind: Watched,
    api_version: String,
) -> kube::Client {
    let default_namespace = client.default_namespace().to_string();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let (client, status, api_version) = (client.clone(), status.clone(), api_version.clone());
        async move {
            let watch = request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
            let response = client.send(request).await?;
            if watch && response.status().is_success() {
                if let Some(down) = status.up(kind, &api_version) {
                    recovered(kind, down);
                }
            }
            Ok::<_, kube::Error>(response)
        }
    });
    kube::Client::new(service, default_namespace)
}

/// What the watch of `kind` lists and watches: every namespace, or the `istio`
/// ConfigMap alone.
pub(super) fn target(
    client: kube::Client,
    kind: Watched,
    resource: &ApiResource,
    istio_namespace: &str,
) -> (Api<DynamicObject>, watcher::Config) {
    match kind {
        Watched::MeshConfig => (
            Api::<DynamicObject>::namespaced_with(client, istio_namespace, resource),
            watcher::Config::default().fields(&format!("metadata.name={MESH_CONFIG_MAP}")),
        ),
        Watched::Mesh(_) => (
            Api::<DynamicObject>::all_with(client, resource),
            watcher::Config::default(),
        ),
    }
}

fn identity(object: &DynamicObject) -> (String, String) {
    (
        object.metadata.namespace.clone().unwrap_or_default(),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

/// Reads a watched object; one that does not fit the model is logged and skipped.
pub(super) fn read(kind: Watched, resource: &ApiResource, object: DynamicObject) -> Option<Obj> {
    let (namespace, name) = identity(&object);
    let mut value = match serde_json::to_value(object) {
        Ok(value) => value,
        Err(e) => {
            tracing::warn!(kind = %kind, namespace, name, error = %e, "object skipped");
            return None;
        }
    };
    // Items of a built-in list carry no type of their own.
    value["apiVersion"] = Value::from(resource.api_version.clone());
    value["kind"] = Value::from(resource.kind.clone());
    let read = match kind {
        Watched::Mesh(_) => match MeshObject::from_value(value) {
            Ok(Some(obj)) => Ok(Obj::Mesh(obj.without_raw())),
            Ok(None) => Err(format!(
                "{} is not a kind mtls-guard reads",
                resource.api_version
            )),
            Err(ModelError::Invalid { source, .. }) => Err(source.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Watched::MeshConfig => MeshConfig::from_config_map(&value)
            .map(Obj::MeshConfig)
            .map_err(|e| format!("{e}; Istio's defaults apply")),
    };
    match read {
        Ok(obj) => Some(obj),
        Err(error) => {
            tracing::warn!(kind = %kind, namespace, name, error, "object does not fit mtls-guard's model: left out of the snapshot");
            None
        }
    }
}

pub(super) fn api_status(error: &watcher::Error) -> Option<(u16, &str)> {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some((s.code, s.message.as_str())),
        watcher::Error::WatchError(s) => Some((s.code, s.message.as_str())),
        _ => None,
    }
}

/// The error as logged and shown by `/readyz`: a 403 names the RBAC rule to add.
pub(super) fn describe_error(
    error: &watcher::Error,
    resource: &ApiResource,
    kind: Watched,
    istio_namespace: &str,
) -> String {
    let group = &resource.group;
    let plural = &resource.plural;
    match api_status(error) {
        Some((403, message)) => {
            let scope = if kind == Watched::MeshConfig {
                format!("a Role in namespace {istio_namespace}")
            } else {
                "a ClusterRole".to_string()
            };
            format!(
                "forbidden (403): mtls-guard's identity needs {scope} rule allowing verbs [list, watch] \
                 on resource {plural:?} in API group {group:?} ({message})"
            )
        }
        Some((404, _)) => format!(
            "{} is not served (404): treated as empty, listed again until it is served",
            resource.api_version
        ),
        Some((410, message)) => format!("resource version expired (410), re-listing: {message}"),
        _ => error.to_string(),
    }
}
