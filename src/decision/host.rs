//! Host resolution (contract section 3, "Host resolution").

use crate::snapshot::Snapshot;

/// What a DestinationRule's `host` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTarget {
    /// One service; `known` is false when the snapshot has no such Service.
    Service {
        namespace: String,
        name: String,
        known: bool,
    },
    /// `*.<n>.svc.<domain>`: every service of one namespace.
    NamespaceWide { namespace: String },
    /// `*.local`, `*.<domain>`, `*.svc.<domain>`.
    MeshWide,
    /// External names and other wildcards: allowed, never patched.
    OutOfScope,
}

/// Resolves `host` as written in a rule admitted in `rule_namespace`.
pub fn resolve_host(
    snapshot: &Snapshot,
    host: &str,
    rule_namespace: &str,
    cluster_domain: &str,
) -> HostTarget {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let domain = cluster_domain.trim_matches('.').to_ascii_lowercase();
    let service = |namespace: &str, name: &str| HostTarget::Service {
        known: snapshot.service(namespace, name).is_some(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    if let Some(rest) = host.strip_prefix("*.") {
        if rest == "local" || rest == domain || rest == format!("svc.{domain}") {
            return HostTarget::MeshWide;
        }
        return match rest
            .strip_suffix(&domain)
            .and_then(|r| r.strip_suffix(".svc."))
        {
            Some(ns) if !ns.is_empty() && !ns.contains('.') && !ns.contains('*') => {
                HostTarget::NamespaceWide {
                    namespace: ns.to_string(),
                }
            }
            _ => HostTarget::OutOfScope,
        };
    }
    if host.is_empty() || host.contains('*') {
        return HostTarget::OutOfScope;
    }
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [name] => service(rule_namespace, name),
        [name, ns] if snapshot.knows_namespace(ns) => service(ns, name),
        [name, ns, "svc"] => service(ns, name),
        [name, ns, "svc", rest @ ..] if rest.join(".") == domain => service(ns, name),
        _ => HostTarget::OutOfScope,
    }
}
