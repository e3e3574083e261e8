//! Host resolution (contract section 3, "Host resolution").

use crate::snapshot::Snapshot;
use std::borrow::Cow;

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

/// `s` in lower case, allocating only when it has upper-case letters.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Resolves `host` as written in a rule admitted in `rule_namespace`.
pub fn resolve_host(
    snapshot: &Snapshot,
    host: &str,
    rule_namespace: &str,
    cluster_domain: &str,
) -> HostTarget {
    let host = lower(host.trim().trim_end_matches('.'));
    let domain = lower(cluster_domain.trim_matches('.'));
    let (host, domain) = (host.as_ref(), domain.as_ref());
    let service = |namespace: &str, name: &str| HostTarget::Service {
        known: snapshot.service(namespace, name).is_some(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    if let Some(rest) = host.strip_prefix("*.") {
        if rest == "local" || rest == domain || rest.strip_prefix("svc.") == Some(domain) {
            return HostTarget::MeshWide;
        }
        return match rest
            .strip_suffix(domain)
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
    // `name[.ns[.svc[.<domain>]]]`; the fourth part keeps its dots.
    let mut labels = host.splitn(4, '.');
    let name = labels.next().unwrap_or_default();
    match (labels.next(), labels.next(), labels.next()) {
        (None, _, _) => service(rule_namespace, name),
        (Some(ns), None, _) if snapshot.knows_namespace(ns) => service(ns, name),
        (Some(ns), Some("svc"), None) => service(ns, name),
        (Some(ns), Some("svc"), Some(rest)) if rest == domain => service(ns, name),
        _ => HostTarget::OutOfScope,
    }
}
