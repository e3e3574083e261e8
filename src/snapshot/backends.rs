//! The Services the API server calls (contract section 8): each webhook of a
//! Mutating- or ValidatingWebhookConfiguration and each APIService that names a
//! Service, reduced to that Service and port. The API server is not in the mesh: a
//! STRICT server mode there refuses its calls.

use crate::model::backend::{ServiceReference, DEFAULT_BACKEND_PORT};
use crate::model::{MeshObject, ObjectKind, ObjectRef};
use std::sync::Arc;

/// One Service port the API server calls, and who calls it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    /// The webhook configuration or APIService (cluster-scoped: no namespace).
    pub caller: ObjectRef,
    /// The names of the configuration's webhooks that call this port (none for an APIService).
    pub webhooks: Vec<String>,
    pub namespace: String,
    pub service: String,
    /// The Service port called (443 unless the reference gives one).
    pub port: u32,
}

/// The backends of one object, in the order its webhooks name them.
pub(crate) fn backends_of(obj: &MeshObject) -> Option<Vec<Backend>> {
    let caller = |kind| ObjectRef {
        kind,
        namespace: String::new(),
        name: obj.name().to_string(),
    };
    let mut out: Vec<Backend> = Vec::new();
    let mut add = |kind, webhook: Option<&str>, svc: &ServiceReference| {
        let port = svc.port().unwrap_or(DEFAULT_BACKEND_PORT);
        let same = |b: &&mut Backend| {
            b.namespace == svc.namespace && b.service == svc.name && b.port == port
        };
        match out.iter_mut().find(same) {
            Some(b) => b.webhooks.extend(webhook.map(str::to_string)),
            None => out.push(Backend {
                caller: caller(kind),
                webhooks: webhook.map(str::to_string).into_iter().collect(),
                namespace: svc.namespace.clone(),
                service: svc.name.clone(),
                port,
            }),
        }
    };
    match obj {
        MeshObject::Webhooks(kind, config) => {
            for hook in &config.webhooks {
                if let Some(svc) = &hook.client_config.service {
                    add(*kind, Some(&hook.name), svc);
                }
            }
        }
        MeshObject::APIService(api) => {
            if let Some(svc) = &api.spec.service {
                add(ObjectKind::APIService, None, svc);
            }
        }
        _ => return None,
    }
    Some(out)
}

/// Every stored caller's backends, by (kind, name).
pub(crate) type Backends = imbl::OrdMap<(ObjectKind, String), Arc<Vec<Backend>>>;
