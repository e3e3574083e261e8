//! Stored DestinationRules by the services their hosts can name: the rules a change
//! to a service or a namespace can affect (contract section 8), and those that may
//! cover the same host (the multi-rule warning).
//!
//! The index is kept without the cluster domain or the namespaces known, which a
//! host's resolution depends on ([`crate::decision::resolve_host`]): it files each
//! rule under the one service or namespace its host can resolve to, whatever those
//! are, so that a look-up gives a superset that the caller resolves.

use super::namespace::Name;
use std::sync::Arc;

/// A stored rule: its namespace and name.
pub type RuleKey = (Name, Name);

/// Where a rule's host can point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostCandidate {
    /// `name`, `name.ns`, `name.ns.svc`, `name.ns.svc.<domain>`: service `ns/name`.
    Service(Name, Name),
    /// `*.ns.svc.<domain>`: every service of `ns`.
    Namespace(Name),
    /// Any other wildcard: the mesh-wide ones (`*.local`, `*.<domain>`, `*.svc.<domain>`).
    Wildcard,
    /// Names no service (external names, more labels than a service FQDN): never judged.
    None,
}

/// Where `host`, written in a rule of `rule_namespace`, can point, for any cluster
/// domain without a `svc` label and any set of known namespaces.
pub(crate) fn host_candidate(host: &str, rule_namespace: &str) -> HostCandidate {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Some(rest) = host.strip_prefix("*.") {
        return match rest.split_once(".svc.") {
            Some((ns, _)) if !ns.is_empty() && !ns.contains(['.', '*']) => {
                HostCandidate::Namespace(ns.into())
            }
            _ => HostCandidate::Wildcard,
        };
    }
    if host.is_empty() || host.contains('*') {
        return HostCandidate::None;
    }
    let mut labels = host.splitn(4, '.');
    let name = labels.next().unwrap_or_default();
    match (labels.next(), labels.next()) {
        (None, _) => HostCandidate::Service(rule_namespace.into(), name.into()),
        (Some(ns), None | Some("svc")) => HostCandidate::Service(ns.into(), name.into()),
        _ => HostCandidate::None,
    }
}

/// The rules filed by the namespace their host can name.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleTargets {
    /// Target namespace -> service (`None`: the namespace-wide wildcard) -> rules, sorted.
    by_namespace: imbl::HashMap<Name, imbl::OrdMap<Option<Name>, Arc<Vec<RuleKey>>>>,
    /// Rules with other wildcard hosts.
    wildcards: imbl::OrdSet<RuleKey>,
}

impl RuleTargets {
    /// Files (`add`) or unfiles a rule under the candidate of its host.
    pub(crate) fn set(&mut self, candidate: HostCandidate, rule: RuleKey, add: bool) {
        let (namespace, service) = match candidate {
            HostCandidate::Service(ns, name) => (ns, Some(name)),
            HostCandidate::Namespace(ns) => (ns, None),
            HostCandidate::Wildcard => {
                if add {
                    self.wildcards.insert(rule);
                } else {
                    self.wildcards.remove(&rule);
                }
                return;
            }
            HostCandidate::None => return,
        };
        let services = self.by_namespace.entry(namespace.clone()).or_default();
        let mut rules: Vec<RuleKey> = services
            .get(&service)
            .map(|r| r.as_ref().clone())
            .unwrap_or_default();
        match (rules.binary_search(&rule), add) {
            (Err(i), true) => rules.insert(i, rule),
            (Ok(i), false) => {
                rules.remove(i);
            }
            _ => return,
        }
        if rules.is_empty() {
            services.remove(&service);
            if services.is_empty() {
                self.by_namespace.remove(&namespace);
            }
        } else {
            services.insert(service, Arc::new(rules));
        }
    }

    /// Rules whose host can name service `namespace/service`, itself or by wildcard.
    pub(crate) fn for_service<'a>(
        &'a self,
        namespace: &str,
        service: &str,
    ) -> impl Iterator<Item = &'a RuleKey> + 'a {
        let services = self.by_namespace.get(namespace);
        let named = services.and_then(|s| s.get(&Some(Name::from(service))));
        let wide = services.and_then(|s| s.get(&None));
        named
            .into_iter()
            .chain(wide)
            .flat_map(|r| r.iter())
            .chain(self.wildcards.iter())
    }

    /// Rules whose host can name any service of `namespace`, known or not.
    pub(crate) fn for_namespace<'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = &'a RuleKey> + 'a {
        self.by_namespace
            .get(namespace)
            .into_iter()
            .flat_map(|s| s.values())
            .flat_map(|r| r.iter())
            .chain(self.wildcards.iter())
    }
}
