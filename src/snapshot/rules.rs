//! Stored DestinationRules by the services their hosts can name: the rules a change
//! to a service or a namespace can affect (contract section 8), and those that may
//! cover the same host (the multi-rule warning).
//!
//! The index is kept without the cluster domain or the namespaces known, which a
//! host's resolution depends on ([`crate::decision::resolve_host`]): it files each
//! rule under the one service or namespace its host can resolve to, whatever those
//! are, so that a look-up gives a superset that the caller resolves.

use super::namespace::Name;
use std::collections::{BTreeMap, HashMap};
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

/// The rules filed under one target namespace, each list sorted.
#[derive(Debug, Clone, Default)]
struct Filed {
    /// Rules with host `*.ns.svc.<domain>` (every service of the namespace).
    wide: Arc<Vec<RuleKey>>,
    /// Rules naming one service, by service name.
    services: BTreeMap<Name, Arc<Vec<RuleKey>>>,
}

impl Filed {
    fn slot(&mut self, service: Option<Name>) -> &mut Arc<Vec<RuleKey>> {
        match service {
            None => &mut self.wide,
            Some(name) => self.services.entry(name).or_default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.wide.is_empty() && self.services.is_empty()
    }

    /// Every rule filed here: the namespace-wide ones first, then by service.
    fn iter(&self) -> impl Iterator<Item = &RuleKey> {
        std::iter::once(&self.wide)
            .chain(self.services.values())
            .flat_map(|r| r.iter())
    }
}

/// The rules filed by the namespace their host can name.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleTargets {
    /// Target namespace -> its rules (copied on write, one namespace at a time).
    by_namespace: imbl::HashMap<Name, Arc<Filed>>,
    /// Rules with other wildcard hosts.
    wildcards: imbl::OrdSet<RuleKey>,
}

/// The namespace and service (`None`: all of them) a candidate files a rule under.
fn place(candidate: HostCandidate) -> Option<(Name, Option<Name>)> {
    match candidate {
        HostCandidate::Service(ns, name) => Some((ns, Some(name))),
        HostCandidate::Namespace(ns) => Some((ns, None)),
        HostCandidate::Wildcard | HostCandidate::None => None,
    }
}

impl RuleTargets {
    /// The index of every rule at once, from each rule's candidate (a bulk build).
    pub(crate) fn from_filed(rules: impl IntoIterator<Item = (HostCandidate, RuleKey)>) -> Self {
        let mut by_namespace: HashMap<Name, Filed> = HashMap::new();
        let mut wildcards = imbl::OrdSet::new();
        for (candidate, rule) in rules {
            if candidate == HostCandidate::Wildcard {
                wildcards.insert(rule);
                continue;
            }
            let Some((namespace, service)) = place(candidate) else {
                continue;
            };
            let slot = by_namespace.entry(namespace).or_default().slot(service);
            Arc::get_mut(slot).expect("not shared yet").push(rule);
        }
        let by_namespace = by_namespace
            .into_iter()
            .map(|(ns, mut filed)| {
                let slots = std::iter::once(&mut filed.wide).chain(filed.services.values_mut());
                for rules in slots {
                    let rules = Arc::get_mut(rules).expect("not shared yet");
                    rules.sort_unstable();
                    rules.dedup();
                }
                (ns, Arc::new(filed))
            })
            .collect();
        RuleTargets {
            by_namespace,
            wildcards,
        }
    }

    /// Files (`add`) or unfiles a rule under the candidate of its host.
    pub(crate) fn set(&mut self, candidate: HostCandidate, rule: RuleKey, add: bool) {
        if candidate == HostCandidate::Wildcard {
            if add {
                self.wildcards.insert(rule);
            } else {
                self.wildcards.remove(&rule);
            }
            return;
        }
        let Some((namespace, service)) = place(candidate) else {
            return;
        };
        if !add && !self.by_namespace.contains_key(&namespace) {
            return;
        }
        let filed = Arc::make_mut(self.by_namespace.entry(namespace.clone()).or_default());
        let is_wide = service.is_none();
        let slot = filed.slot(service.clone());
        match (slot.binary_search(&rule), add) {
            (Err(i), true) => Arc::make_mut(slot).insert(i, rule),
            (Ok(i), false) => {
                Arc::make_mut(slot).remove(i);
            }
            _ => {}
        }
        if !is_wide && slot.is_empty() {
            filed.services.remove(&service.expect("not wide"));
        }
        if filed.is_empty() {
            self.by_namespace.remove(&namespace);
        }
    }

    /// Rules whose host can name service `namespace/service`, itself or by wildcard.
    pub(crate) fn for_service<'a>(
        &'a self,
        namespace: &str,
        service: &str,
    ) -> impl Iterator<Item = &'a RuleKey> + 'a {
        let filed = self.by_namespace.get(namespace);
        let named = filed.and_then(|f| f.services.get(service));
        let wide = filed.map(|f| &f.wide);
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
            .flat_map(|f| f.iter())
            .chain(self.wildcards.iter())
    }
}
