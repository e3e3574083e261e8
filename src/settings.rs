//! The knobs of a decision that do not come from objects (contract section 1, "mesh settings").

use std::str::FromStr;

pub use crate::enforcement::Mode;

/// Whether the Istio ingress gateway is present: detected from the snapshot unless
/// the operator says so (`--ingress-gateway present|absent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IngressGateway {
    #[default]
    Detect,
    Present,
    Absent,
}

impl FromStr for IngressGateway {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "detect" | "auto" => Ok(IngressGateway::Detect),
            "present" => Ok(IngressGateway::Present),
            "absent" => Ok(IngressGateway::Absent),
            other => Err(format!(
                "unknown ingress gateway setting {other:?}: expected present, absent or detect"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Istio's root namespace: mesh-wide PeerAuthentications and the ingress gateway live here.
    pub root_namespace: String,
    pub cluster_domain: String,
    /// With auto mTLS on, a rule without TLS is fine: the sidecar picks mTLS by itself.
    pub auto_mtls: bool,
    pub ingress_gateway: IngressGateway,
    /// Services the operator names as reached through a non-mesh ingress (`NS/NAME`).
    pub ingress_services: Vec<(String, String)>,
    /// Global default, overridden by a namespace's `mtls-guard.io/mode` label.
    pub mode: Mode,
    /// GatewayClass controllers that belong to the mesh besides Istio's `istio.io/*`
    /// (`--mesh-gateway-controller`, e.g. OpenShift's): their Gateways exempt nothing.
    pub mesh_gateway_controllers: Vec<String>,
    /// Deny a change to a policy, Service or ingress that breaks a DestinationRule in an
    /// `enforce` namespace (`--deny-breaking-changes`; contract section 8). Off: such
    /// changes are allowed with a warning.
    pub deny_breaking_changes: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            root_namespace: "istio-system".into(),
            cluster_domain: "cluster.local".into(),
            auto_mtls: false,
            ingress_gateway: IngressGateway::Detect,
            ingress_services: Vec::new(),
            mode: Mode::Enforce,
            mesh_gateway_controllers: Vec::new(),
            deny_breaking_changes: false,
        }
    }
}

/// Parses `NS/NAME` as given to `--ingress-service`.
pub fn parse_service_ref(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
    }
}
