//! Host resolution (contract section 3, "Host resolution").

use crate::model::DestinationRule;
use crate::snapshot::Snapshot;
use std::borrow::Cow;
use std::sync::Arc;

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

/// The stored DestinationRules of `namespace` whose host is the same as `host` after
/// resolution (contract section 8, the multi-rule warning): the same service, or the
/// same wildcard or external name as written (case and a final dot aside). Oldest
/// first (creation time, then name; none counts as newest); `host`'s own rule is
/// among them when it is stored.
pub fn rules_with_host<'a>(
    snapshot: &'a Snapshot,
    namespace: &str,
    host: &str,
    cluster_domain: &str,
) -> Vec<&'a Arc<DestinationRule>> {
    let written = |h: &str| lower(h.trim().trim_end_matches('.')).into_owned();
    let target = resolve_host(snapshot, host, namespace, cluster_domain);
    let same = |rule: &DestinationRule| {
        let other = resolve_host(snapshot, &rule.spec.host, namespace, cluster_domain);
        match (&target, &other) {
            (
                HostTarget::Service {
                    namespace: a,
                    name: b,
                    ..
                },
                HostTarget::Service {
                    namespace: c,
                    name: d,
                    ..
                },
            ) => a == c && b == d,
            (HostTarget::Service { .. }, _) | (_, HostTarget::Service { .. }) => false,
            _ => written(&rule.spec.host) == written(host),
        }
    };
    let in_namespace =
        |r: &&Arc<DestinationRule>| r.metadata.namespace.as_deref() == Some(namespace);
    let mut rules: Vec<&Arc<DestinationRule>> = match &target {
        HostTarget::Service {
            namespace: ns,
            name,
            ..
        } => snapshot
            .rules_for_service(ns, name)
            .filter(in_namespace)
            .filter(|r| same(r))
            .collect(),
        _ => snapshot.rules_in(namespace).filter(|r| same(r)).collect(),
    };
    rules.sort_by_key(|r| {
        let created = r.metadata.created();
        (created.is_none(), created, r.metadata.name.clone())
    });
    rules
}
