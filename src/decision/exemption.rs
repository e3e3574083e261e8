//! The ingress exemption (contract section 4, cases (a), (b) and (c)).

use super::server::{Level, ServerDecision, ServerMode};
use crate::gateway::is_mesh_controller;
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
    /// (c): the port is a backend of a Gateway API route attached to a Gateway whose
    /// class's controller is not the mesh's.
    Gateway {
        port: u32,
        /// The route, shown as `Kind namespace/name`.
        route: ObjectRef,
        /// The Gateway, shown as `Gateway namespace/name`.
        gateway: ObjectRef,
        /// Its GatewayClass's `controllerName`.
        controller: String,
    },
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
            Exemption::Gateway {
                port,
                route,
                gateway,
                controller,
            } => format!(
                "{service} port {port} is a backend of {route} on {gateway}, whose controller {controller} is not the mesh's, so it is exempt from mutual TLS"
            ),
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

/// The exemption of service `namespace/name` at port `port` (`None`: the other ports
/// of an unknown service) whose server side is `server`. A targeted exemption (b) is
/// named first: it is the one the server side agrees with; then (c), which names the
/// exact route and port and holds whether or not an Istio ingress gateway exists; then (a).
pub fn exemption(
    snapshot: &Snapshot,
    settings: &Settings,
    gateway_present: bool,
    namespace: &str,
    name: &str,
    port: Option<u32>,
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
    if let Some(port) = port {
        let via = snapshot
            .gateway()
            .backends(namespace, name, port)
            .iter()
            .find(|b| !is_mesh_controller(&b.controller, &settings.mesh_gateway_controllers));
        if let Some(b) = via {
            return Some(Exemption::Gateway {
                port,
                route: b.route.clone(),
                gateway: b.gateway.clone(),
                controller: b.controller.clone(),
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
