//! The knobs of a decision that do not come from objects (contract section 1, "mesh settings").

use std::fmt;
use std::str::FromStr;

/// What the webhook does with what it finds (contract section 6, "Modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Mode {
    /// Fill, patch, deny conflicts.
    #[default]
    Enforce,
    /// Allow everything, no patch; warn about what `enforce` would have done.
    Warn,
    /// Allow, no patch, no warnings.
    Off,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "enforce" => Ok(Mode::Enforce),
            "warn" => Ok(Mode::Warn),
            "off" => Ok(Mode::Off),
            other => Err(format!(
                "unknown mode {other:?}: expected enforce, warn or off"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Off => "off",
        })
    }
}

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

/// The settings flags shared by `check` and `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct SettingsArgs {
    /// Istio's root namespace (mesh-wide PeerAuthentications, the ingress gateway).
    #[arg(
        long,
        default_value = "istio-system",
        env = "MTLS_GUARD_ROOT_NAMESPACE"
    )]
    pub root_namespace: String,
    /// The cluster's DNS domain, for FQDN hosts.
    #[arg(
        long,
        default_value = "cluster.local",
        env = "MTLS_GUARD_CLUSTER_DOMAIN"
    )]
    pub cluster_domain: String,
    /// Treat rules without TLS as fine, because Istio auto mTLS picks the mode.
    #[arg(long, env = "MTLS_GUARD_AUTO_MTLS")]
    pub auto_mtls: bool,
    /// Whether the Istio ingress gateway is present: detect (from a Service labelled
    /// istio=ingressgateway in the root namespace), present or absent.
    #[arg(long, default_value = "detect", value_name = "present|absent|detect")]
    pub ingress_gateway: IngressGateway,
    /// A service reached through a non-mesh ingress, as NAMESPACE/NAME (repeatable).
    #[arg(long = "ingress-service", value_name = "NS/NAME", value_parser = parse_service_ref)]
    pub ingress_services: Vec<(String, String)>,
    /// What to do with findings: enforce, warn or off (a namespace's
    /// mtls-guard.io/mode label overrides it).
    #[arg(long, default_value = "enforce", env = "MTLS_GUARD_MODE")]
    pub mode: Mode,
}

impl From<SettingsArgs> for Settings {
    fn from(a: SettingsArgs) -> Settings {
        Settings {
            root_namespace: a.root_namespace,
            cluster_domain: a.cluster_domain,
            auto_mtls: a.auto_mtls,
            ingress_gateway: a.ingress_gateway,
            ingress_services: a.ingress_services,
            mode: a.mode,
        }
    }
}
