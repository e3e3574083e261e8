//! Webhook and APIService backends under STRICT (contract section 8): the API server
//! is not in the mesh and calls them in plaintext, so a Service port it calls whose
//! server mode is STRICT refuses those calls, and with `failurePolicy: Fail` every
//! write that webhook sees fails too. mtls-guard's own Service is such a backend.

use super::server::{server_mode, ServerDecision, ServerMode, Subject};
use super::verdict::PortScope;
use crate::settings::Settings;
use crate::snapshot::{Backend, Snapshot};

/// A backend whose server mode on the port it is called on is STRICT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictBackend {
    pub backend: Backend,
    /// The server side of the called port (mode STRICT), with the object that decides it.
    pub server: ServerDecision,
}

impl StrictBackend {
    /// Why the calls fail, naming the caller, the Service port and what makes it STRICT.
    pub fn message(&self) -> String {
        let b = &self.backend;
        let caller = match b.webhooks.as_slice() {
            [] => b.caller.to_string(),
            [one] => format!("{} (webhook {one})", b.caller),
            many => format!("{} (webhooks {})", b.caller, many.join(", ")),
        };
        let by = self.server.decider.as_ref().map_or_else(String::new, |d| {
            format!(" by {} ({} level)", d.object, d.level)
        });
        format!(
            "Service {}/{} port {} requires mutual TLS (STRICT){by}, and {caller} calls it there: the API server is not in the mesh and calls in plaintext, so those calls fail (with failurePolicy Fail, so does every request they serve); exempt that port, e.g. a PeerAuthentication selecting the Service's pods with portLevelMtls PERMISSIVE on its target port",
            b.namespace, b.service, b.port
        )
    }
}

/// The server side of the port `backend` is called on (the Service's port, mapped to
/// its target port for a workload's `portLevelMtls`).
fn called_port_mode(snapshot: &Snapshot, settings: &Settings, backend: &Backend) -> ServerDecision {
    let entry = snapshot.service(&backend.namespace, &backend.service);
    let port = PortScope::Port {
        number: backend.port,
        name: entry
            .and_then(|s| s.port(backend.port))
            .and_then(|p| p.name.clone()),
    };
    let subject = Subject::Service {
        namespace: &backend.namespace,
        name: &backend.service,
        entry,
    };
    server_mode(
        snapshot,
        &settings.root_namespace,
        subject,
        &port,
        &mut Vec::new(),
    )
}

/// Every backend that is already STRICT on the port it is called on (for the audit),
/// in (caller, Service, port) order.
pub fn strict_backends(snapshot: &Snapshot, settings: &Settings) -> Vec<StrictBackend> {
    let mut out: Vec<StrictBackend> = snapshot
        .backends()
        .filter_map(|b| {
            let server = called_port_mode(snapshot, settings, b);
            (server.mode == ServerMode::Strict).then(|| StrictBackend {
                backend: b.clone(),
                server,
            })
        })
        .collect();
    out.sort_by(|a, b| a.backend.cmp(&b.backend));
    out
}

/// The backends STRICT in `after` that were not in `before`: those a change puts under STRICT.
pub(crate) fn newly_strict(
    before: &Snapshot,
    after: &Snapshot,
    settings: &Settings,
) -> Vec<StrictBackend> {
    strict_backends(after, settings)
        .into_iter()
        .filter(|s| called_port_mode(before, settings, &s.backend).mode != ServerMode::Strict)
        .collect()
}
