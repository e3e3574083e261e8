//! What a judgement returns: one finding per (port, subset) scope, and warnings.

use super::client::{ClientMode, ClientSource, InvalidMode};
use super::exemption::Exemption;
use super::host::HostTarget;
use super::server::ServerDecision;
use crate::model::{DestinationRuleSpec, ObjectRef};
use std::fmt;

/// The ports a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortScope {
    /// A Service port (with its name, when the Service is known).
    Port { number: u32, name: Option<String> },
    /// Every port a wildcard or unknown-service rule does not name.
    Other,
}

impl PortScope {
    pub fn number(&self) -> Option<u32> {
        match self {
            PortScope::Port { number, .. } => Some(*number),
            PortScope::Other => None,
        }
    }
}

impl fmt::Display for PortScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortScope::Port { number, .. } => write!(f, "port {number}"),
            PortScope::Other => f.write_str("other ports"),
        }
    }
}

/// The client mode the server side calls for (contract section 5, first table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Required {
    Any,
    Mode(ClientMode),
}

impl Required {
    pub fn accepts(&self, mode: &ClientMode) -> bool {
        match self {
            Required::Any => true,
            Required::Mode(m) => m == mode,
        }
    }
}

/// The verdict of one scope (contract section 5, second table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The rule sets no TLS and auto mTLS is off: add this mode.
    Fill(ClientMode),
    /// ISTIO_MUTUAL towards an exempt port: change it to this mode (DISABLE).
    Patch(ClientMode),
    Conflict,
    /// The client mode is not one Istio's schema accepts: the validating webhook
    /// denies, the mutating webhook leaves it alone. Reported once per field
    /// ([`Verdict::invalid_modes`]), not per scope.
    InvalidMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub port: PortScope,
    /// Index into `spec.subsets` and the subset's name; `None` for the rule itself.
    pub subset: Option<(usize, String)>,
    pub client: ClientMode,
    pub client_source: ClientSource,
    pub server: ServerDecision,
    pub exemption: Option<Exemption>,
    pub required: Required,
    pub outcome: Outcome,
}

/// Stable codes, documented in docs/codes.md and printed by `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WarningCode {
    /// A deciding v1alpha1 policy has a `peers` element without `mtls` (a dropped YAML null).
    PeerWithoutMtls,
    /// Several objects apply at one level; the oldest decides.
    Tie,
    /// The host names a service the snapshot does not have.
    UnknownService,
    /// A workload PeerAuthentication selects only some of the service's pods.
    PartialPeerAuthentication,
    /// `portLevelMtls` cannot be mapped through a named `targetPort`.
    NamedTargetPort,
    /// An ingress-exempt service whose server side still requires mTLS.
    MissingServerExemption,
    /// A Policy without targets not named `default`, or a MeshPolicy not named
    /// `default`: Istio ignores it (section 8, said when it is written).
    IgnoredPolicy,
    /// A PeerAuthentication with `portLevelMtls` but no selector: Istio rejects the
    /// port-level entries (section 8).
    PortLevelWithoutSelector,
    /// An older DestinationRule in the namespace covers the same host and sets a
    /// `trafficPolicy`: Istio applies that one's (section 8).
    OlderRuleForHost,
}

impl WarningCode {
    pub fn code(&self) -> &'static str {
        match self {
            WarningCode::PeerWithoutMtls => "MG201",
            WarningCode::Tie => "MG202",
            WarningCode::UnknownService => "MG203",
            WarningCode::PartialPeerAuthentication => "MG204",
            WarningCode::NamedTargetPort => "MG205",
            WarningCode::MissingServerExemption => "MG206",
            WarningCode::IgnoredPolicy => "MG207",
            WarningCode::PortLevelWithoutSelector => "MG208",
            WarningCode::OlderRuleForHost => "MG209",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub code: WarningCode,
    pub message: String,
}

/// The judgement of one DestinationRule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub rule: ObjectRef,
    /// The host as the rule writes it.
    pub host: String,
    pub target: HostTarget,
    pub findings: Vec<Finding>,
    /// Deduplicated, in the order first met.
    pub warnings: Vec<Warning>,
    /// Every `tls.mode` of the rule that Istio's schema refuses, judged or not
    /// (an out-of-scope host, a port entry for a port the Service lacks).
    pub invalid_modes: Vec<InvalidMode>,
}

/// Findings that share one fix: the same source field, outcome and reason.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    pub first: &'a Finding,
    /// Every finding of the group, `first` included, in the verdict's order.
    pub members: Vec<&'a Finding>,
}

impl Verdict {
    pub fn conflicts(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.outcome == Outcome::Conflict)
    }

    /// Findings the mutating webhook would change (fill or patch).
    pub fn changes(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| matches!(f.outcome, Outcome::Fill(_) | Outcome::Patch(_)))
    }

    pub fn has_conflict(&self) -> bool {
        self.conflicts().next().is_some()
    }

    pub fn has_change(&self) -> bool {
        self.changes().next().is_some()
    }

    /// The host as messages name it: the FQDN for one service, as written otherwise.
    pub fn display_host(&self, cluster_domain: &str) -> String {
        match &self.target {
            HostTarget::Service {
                namespace, name, ..
            } => format!("{name}.{namespace}.svc.{cluster_domain}"),
            _ => self.host.clone(),
        }
    }

    /// The service messages name: the rule's service, or "the service" for a wildcard.
    pub fn service_name(&self) -> &str {
        match &self.target {
            HostTarget::Service { name, .. } => name.as_str(),
            _ => "the service",
        }
    }

    /// The findings to report (not ok, not an invalid mode), grouped by fix in the
    /// order first met: a top-level `tls` that every subset inherits is one group.
    /// `check` prints one line per group, and the webhooks send one message per group.
    pub fn groups(&self) -> Vec<Group<'_>> {
        let service = self.service_name();
        let mut groups: Vec<(Group, String)> = Vec::new();
        for f in &self.findings {
            if matches!(f.outcome, Outcome::Ok | Outcome::InvalidMode) {
                continue;
            }
            let reason = f.reason(service);
            match groups.iter_mut().find(|(g, r)| {
                g.first.client_source == f.client_source
                    && g.first.outcome == f.outcome
                    && *r == reason
            }) {
                Some((g, _)) => g.members.push(f),
                None => groups.push((
                    Group {
                        first: f,
                        members: vec![f],
                    },
                    reason,
                )),
            }
        }
        groups.into_iter().map(|(g, _)| g).collect()
    }

    /// A group's message: its first finding's (section 6), then the other scopes it
    /// covers: "; also subsets v1, v2" (same port), or "; also port 9443, port 9443 subset v1".
    pub fn group_message(&self, group: &Group, cluster_domain: &str) -> String {
        let mut message = self.message(group.first, cluster_domain);
        let rest = &group.members[1..];
        if rest.is_empty() {
            return message;
        }
        let first = group.first;
        let same_port = rest
            .iter()
            .all(|f| f.port == first.port && f.subset.is_some());
        if same_port {
            let names: Vec<&str> = rest
                .iter()
                .filter_map(|f| f.subset.as_ref().map(|(_, n)| n.as_str()))
                .collect();
            let word = if names.len() == 1 {
                "subset"
            } else {
                "subsets"
            };
            message.push_str(&format!("; also {word} {}", names.join(", ")));
        } else {
            let scopes: Vec<String> = rest
                .iter()
                .map(|f| match &f.subset {
                    Some((_, n)) => format!("{} subset {n}", f.port),
                    None => f.port.to_string(),
                })
                .collect();
            message.push_str(&format!("; also {}", scopes.join(", ")));
        }
        message
    }

    /// The contract's section 6 message for one finding that is not ok.
    pub fn message(&self, f: &Finding, cluster_domain: &str) -> String {
        // A rule that names no port covers every port; otherwise the rest of them.
        let port = match f.port {
            PortScope::Other if self.findings.iter().all(|g| g.port == PortScope::Other) => {
                "every port".to_string()
            }
            ref p => p.to_string(),
        };
        let mut at = format!("{} {port}", self.display_host(cluster_domain));
        if let Some((_, name)) = &f.subset {
            at.push_str(&format!(" subset {name}"));
        }
        let service = self.service_name();
        let reason = f.reason(service);
        let wildcard = !matches!(self.target, HostTarget::Service { .. });
        match &f.outcome {
            Outcome::Ok => format!("{at}: tls mode {}, accepted ({reason})", f.client),
            Outcome::Fill(m) => {
                format!("{at}: no tls mode and auto mTLS is off; set {m} because {reason}")
            }
            Outcome::Patch(m) => format!("{at}: tls mode {}, but {reason}; set {m}", f.client),
            Outcome::Conflict => format!(
                "{at}: tls mode {}, but {reason}; {}",
                f.client,
                if wildcard {
                    f.fix_wildcard()
                } else {
                    f.fix(service)
                }
            ),
            Outcome::InvalidMode => format!(
                "{at}: tls mode {:?} is not a TLS mode Istio accepts; use {}",
                f.client.as_str(),
                super::client::accepted_modes()
            ),
        }
    }

    /// Where a change for `f` goes, as `check` prints it.
    pub fn location(&self, f: &Finding, spec: &DestinationRuleSpec) -> String {
        f.client_source.describe(spec)
    }
}

impl Finding {
    /// Why the required mode is what it is, naming the object that requires it.
    pub fn reason(&self, service: &str) -> String {
        if let Some(ex) = &self.exemption {
            return ex.reason(service);
        }
        let Some(d) = &self.server.decider else {
            return "no policy applies".to_string();
        };
        match self.server.mode {
            super::ServerMode::Strict => {
                format!("{} requires mutual TLS (STRICT)", d.object)
            }
            super::ServerMode::Plaintext => {
                format!("{} disables mutual TLS (PLAINTEXT)", d.object)
            }
            super::ServerMode::Permissive => {
                format!("{} accepts both (PERMISSIVE)", d.object)
            }
            super::ServerMode::None => "no policy applies".to_string(),
        }
    }

    /// How to resolve a conflict of a namespace- or mesh-wide rule, which
    /// service-level exemptions cannot resolve (contract section 5).
    pub fn fix_wildcard(&self) -> String {
        let Required::Mode(required) = &self.required else {
            return String::new();
        };
        match &self.server.decider {
            Some(d) => format!("use {required} or change {}", d.object),
            None => format!("use {required}"),
        }
    }

    /// How to resolve a conflict.
    pub fn fix(&self, service: &str) -> String {
        let Required::Mode(required) = &self.required else {
            return String::new();
        };
        if self.exemption.is_some() {
            return format!("use {required}");
        }
        let Some(d) = &self.server.decider else {
            return format!("use {required}");
        };
        use crate::model::ObjectKind;
        match (&self.server.mode, d.object.kind) {
            // A targeted STRICT setting is what must change: a newer exemption would lose the tie.
            (super::ServerMode::Strict, _) if d.level.is_targeted() => {
                format!("use {required} or change {} ({} level)", d.object, d.level)
            }
            (super::ServerMode::Strict, ObjectKind::PeerAuthentication) => format!(
                "use {required} or add a PeerAuthentication selecting {service} with mtls mode DISABLE"
            ),
            (super::ServerMode::Strict, _) => {
                format!("use {required} or add a service-specific exemption Policy")
            }
            (_, _) => format!("use {required} or enable mutual TLS in {}", d.object),
        }
    }
}
