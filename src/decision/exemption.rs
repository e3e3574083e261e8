//! The ingress exemption (contract section 4).

use super::server::{Level, ServerDecision, ServerMode};
use crate::model::ObjectRef;
use crate::settings::{IngressGateway, Settings};
use crate::snapshot::{Snapshot, INGRESS_EXPOSED_ANNOTATION};

/// How a service is known to be reached through a non-mesh ingress.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IngressVia {
    /// A backend of this networking.k8s.io/v1 Ingress, whose class is not Istio's.
    Ingress(ObjectRef),
    /// The Service's `mtls-guard.io/ingress-exposed: "true"` annotation.
    Annotation,
    /// Named by the operator with `--ingress-service`.
    Operator,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Exemption {
    /// (a): reached through a non-mesh ingress, and no Istio ingress gateway.
    Ingress(IngressVia),
    /// (b): a targeted PLAINTEXT setting (service, service-port, workload or workload-port level).
    Targeted { object: ObjectRef, level: Level },
}

impl Exemption {
    pub fn reason(&self, service: &str) -> String {
        match self {
            Exemption::Ingress(via) => {
                let via = match via {
                    IngressVia::Ingress(obj) => format!("non-mesh {obj}"),
                    IngressVia::Annotation => {
                        format!("a non-mesh ingress (annotation {INGRESS_EXPOSED_ANNOTATION})")
                    }
                    IngressVia::Operator => "a non-mesh ingress (--ingress-service)".to_string(),
                };
                format!(
                    "{service} is reached through {via} and there is no Istio ingress gateway, so it is exempt from mutual TLS"
                )
            }
            Exemption::Targeted { object, level } => {
                format!("{object} exempts {service} from mutual TLS ({level} level)")
            }
        }
    }
}

/// Whether the Istio ingress gateway is present, by setting or by detection.
pub fn ingress_gateway_present(snapshot: &Snapshot, settings: &Settings) -> bool {
    match settings.ingress_gateway {
        IngressGateway::Present => true,
        IngressGateway::Absent => false,
        IngressGateway::Detect => snapshot
            .namespace(&settings.root_namespace)
            .is_some_and(|ns| ns.has_ingress_gateway),
    }
}

/// The exemption of service `namespace/name` at a port whose server side is `server`.
/// A targeted exemption (b) is named first: it is the one the server side agrees with.
pub fn exemption(
    snapshot: &Snapshot,
    settings: &Settings,
    gateway_present: bool,
    namespace: &str,
    name: &str,
    server: &ServerDecision,
) -> Option<Exemption> {
    if let (ServerMode::Plaintext, Some(d)) = (server.mode, &server.decider) {
        if d.level.is_targeted() {
            return Some(Exemption::Targeted {
                object: d.object.clone(),
                level: d.level,
            });
        }
    }
    if gateway_present {
        return None;
    }
    if settings
        .ingress_services
        .iter()
        .any(|(ns, n)| ns == namespace && n == name)
    {
        return Some(Exemption::Ingress(IngressVia::Operator));
    }
    let ns = snapshot.namespace(namespace)?;
    if ns.services.get(name).is_some_and(|s| s.ingress_exposed) {
        return Some(Exemption::Ingress(IngressVia::Annotation));
    }
    ns.ingress_backends
        .get(name)
        .map(|obj| Exemption::Ingress(IngressVia::Ingress(obj.clone())))
}
