//! Everything the snapshot knows about one namespace: the objects stored in it
//! (one store per kind, keyed by name) and what the decision reads, derived from
//! them. An event changes one store and re-derives only the parts that read it; a
//! bulk build or a re-list fills the stores and derives everything once.
//!
//! The maps are plain std ones: the snapshot shares whole namespaces (`Arc`, copied
//! on write), so a namespace is copied only when an event changes it, and small
//! maps cost far less memory than persistent ones (issue 6's memory target).

use super::entries::{
    age_cmp, is_mesh_class, Classes, IngressEntry, PeerAuthEntry, PolicyEntry, PolicyTargetEntry,
    ServiceEntry, StoredPolicy,
};
use crate::enforcement::Mode;
use crate::model::{DestinationRule, ObjectKind, ObjectRef};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Names in the index: cheap to clone when a namespace is copied.
pub type Name = Arc<str>;

#[derive(Debug, Clone, Default)]
pub struct NamespaceIndex {
    /// A Namespace object was seen (other namespaces are known through their objects).
    pub has_object: bool,
    /// The namespace's `mtls-guard.io/mode` label, when valid.
    pub mode: Option<Mode>,
    pub services: HashMap<Name, Arc<ServiceEntry>>,
    /// PeerAuthentications without a selector, oldest first.
    pub wide_peer_auths: Vec<Arc<PeerAuthEntry>>,
    /// PeerAuthentications with a selector, oldest first.
    pub workload_peer_auths: Vec<Arc<PeerAuthEntry>>,
    /// Policies named `default` without targets, oldest first.
    pub default_policies: Vec<Arc<PolicyEntry>>,
    /// Policy targets by service name, oldest policy first.
    pub policy_targets: HashMap<Name, Arc<Vec<PolicyTargetEntry>>>,
    /// Services that back a non-mesh Ingress, with the oldest such Ingress.
    pub ingress_backends: HashMap<Name, ObjectRef>,
    /// A Service labelled `istio: ingressgateway` lives here.
    pub has_ingress_gateway: bool,

    // The stores, by object name.
    policies: BTreeMap<Name, Arc<StoredPolicy>>,
    peer_auths: BTreeMap<Name, Arc<PeerAuthEntry>>,
    ingresses: BTreeMap<Name, Arc<IngressEntry>>,
    rules: BTreeMap<Name, Arc<DestinationRule>>,
    /// Gateway API objects here (the gateway index holds them): they make the namespace known.
    gateway_objects: BTreeSet<(ObjectKind, Name)>,
    /// Services labelled `istio: ingressgateway`.
    gateway_services: usize,
}

impl NamespaceIndex {
    /// No object lives here and no Namespace object names it: the namespace is unknown.
    pub(crate) fn is_empty(&self) -> bool {
        !self.has_object
            && self.services.is_empty()
            && self.policies.is_empty()
            && self.peer_auths.is_empty()
            && self.ingresses.is_empty()
            && self.rules.is_empty()
            && self.gateway_objects.is_empty()
    }

    /// The DestinationRules stored in this namespace, by name.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<DestinationRule>> {
        self.rules.values()
    }

    pub fn rule(&self, name: &str) -> Option<&Arc<DestinationRule>> {
        self.rules.get(name)
    }

    /// The stored rules with the names they are stored under, by name.
    pub(crate) fn named_rules(&self) -> impl Iterator<Item = (&Name, &Arc<DestinationRule>)> {
        self.rules.iter()
    }

    pub(crate) fn has_ingresses(&self) -> bool {
        !self.ingresses.is_empty()
    }

    /// Stores (`Some`) or removes (`None`) a Service; returns whether one was stored before.
    pub(crate) fn set_service(&mut self, name: &str, entry: Option<ServiceEntry>) -> bool {
        let old = match entry {
            Some(mut entry) => {
                entry.link(&self.workload_peer_auths);
                self.gateway_services += usize::from(entry.is_ingress_gateway);
                self.services.insert(name.into(), Arc::new(entry))
            }
            None => self.services.remove(name),
        };
        if let Some(old) = &old {
            self.gateway_services -= usize::from(old.is_ingress_gateway);
        }
        self.has_ingress_gateway = self.gateway_services > 0;
        old.is_some()
    }

    pub(crate) fn set_peer_auth(&mut self, name: &str, entry: Option<PeerAuthEntry>) -> bool {
        let new_wide = entry.as_ref().map(PeerAuthEntry::is_wide);
        let old = match entry {
            Some(entry) => self.peer_auths.insert(name.into(), Arc::new(entry)),
            None => self.peer_auths.remove(name),
        };
        let old_wide = old.as_ref().map(|o| o.is_wide());
        if old_wide == Some(true) || new_wide == Some(true) {
            self.wide_peer_auths = self.sorted_peer_auths(true);
        }
        if old_wide == Some(false) || new_wide == Some(false) {
            self.workload_peer_auths = self.sorted_peer_auths(false);
            self.relink_services();
        }
        old.is_some()
    }

    fn sorted_peer_auths(&self, wide: bool) -> Vec<Arc<PeerAuthEntry>> {
        let mut v: Vec<_> = self
            .peer_auths
            .values()
            .filter(|p| p.is_wide() == wide)
            .cloned()
            .collect();
        v.sort_by(|a, b| age_cmp(a.age(), b.age()));
        v
    }

    /// Re-links every Service to the workload PeerAuthentications; only the
    /// Services whose links change are written.
    fn relink_services(&mut self) {
        for svc in self.services.values_mut() {
            if let Some(links) = svc.links(&self.workload_peer_auths) {
                Arc::make_mut(svc).set_links(links);
            }
        }
    }

    pub(crate) fn set_policy(&mut self, name: &str, policy: Option<StoredPolicy>) -> bool {
        let policy = policy.map(Arc::new);
        let old = match &policy {
            Some(p) => self.policies.insert(name.into(), p.clone()),
            None => self.policies.remove(name),
        };
        let both = || old.iter().chain(policy.iter());
        if both().any(|p| p.is_namespace_default()) {
            self.derive_default_policies();
        }
        let mut services: Vec<&str> = both()
            .flat_map(|p| p.targets.iter().map(|(s, _)| s.as_str()))
            .collect();
        services.sort_unstable();
        services.dedup();
        for service in services {
            let mut targets: Vec<PolicyTargetEntry> = self
                .policy_targets
                .get(service)
                .map(|t| {
                    t.iter()
                        .filter(|t| *t.policy.object.name != *name)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if let Some(p) = &policy {
                let own = p.targets.iter().filter(|(s, _)| s == service);
                targets.extend(own.map(|(_, t)| t.clone()));
            }
            // Stable: one policy's targets keep their order, next to each other.
            targets.sort_by(|a, b| age_cmp(a.policy.age(), b.policy.age()));
            if targets.is_empty() {
                self.policy_targets.remove(service);
            } else {
                self.policy_targets
                    .insert(service.into(), Arc::new(targets));
            }
        }
        old.is_some()
    }

    fn derive_default_policies(&mut self) {
        let mut defaults: Vec<_> = self
            .policies
            .values()
            .filter(|p| p.is_namespace_default())
            .map(|p| p.entry.clone())
            .collect();
        defaults.sort_by(|a, b| age_cmp(a.age(), b.age()));
        self.default_policies = defaults;
    }

    pub(crate) fn set_ingress(
        &mut self,
        name: &str,
        entry: Option<IngressEntry>,
        classes: &Classes,
    ) -> bool {
        let entry = entry.map(Arc::new);
        let old = match &entry {
            Some(e) => self.ingresses.insert(name.into(), e.clone()),
            None => self.ingresses.remove(name),
        };
        let mut services: Vec<&String> = old
            .iter()
            .chain(entry.iter())
            .flat_map(|i| &i.backends)
            .collect();
        services.sort_unstable();
        services.dedup();
        for service in services {
            self.derive_ingress_backend(service, classes);
        }
        old.is_some()
    }

    /// The oldest non-mesh Ingress in front of `service`.
    fn derive_ingress_backend(&mut self, service: &str, classes: &Classes) {
        let first = self
            .ingresses
            .values()
            .filter(|i| i.backends.iter().any(|b| b == service))
            .filter(|i| !is_mesh_class(classes, i.class.as_deref()))
            .min_by(|a, b| age_cmp(a.age(), b.age()));
        match first {
            Some(i) => {
                if self.ingress_backends.get(service) != Some(&i.object) {
                    self.ingress_backends
                        .insert(service.into(), i.object.clone());
                }
            }
            None => {
                self.ingress_backends.remove(service);
            }
        }
    }

    /// Every Ingress backend at once, oldest Ingress first (what
    /// [`Self::derive_ingress_backend`] gives for each service).
    fn all_ingress_backends(&self, classes: &Classes) -> HashMap<Name, ObjectRef> {
        let mut ingresses: Vec<&Arc<IngressEntry>> = self
            .ingresses
            .values()
            .filter(|i| !is_mesh_class(classes, i.class.as_deref()))
            .collect();
        ingresses.sort_by(|a, b| age_cmp(a.age(), b.age()));
        let mut backends = HashMap::new();
        for i in ingresses {
            for service in &i.backends {
                if !backends.contains_key(service.as_str()) {
                    backends.insert(Name::from(service.as_str()), i.object.clone());
                }
            }
        }
        backends
    }

    /// The Ingresses' backends under another set of IngressClasses; `None` when unchanged.
    pub(crate) fn rederive_ingresses(&self, classes: &Classes) -> Option<NamespaceIndex> {
        let backends = self.all_ingress_backends(classes);
        (backends != self.ingress_backends).then(|| NamespaceIndex {
            ingress_backends: backends,
            ..self.clone()
        })
    }

    /// Stores or removes a rule; returns the one stored before.
    pub(crate) fn set_rule(
        &mut self,
        name: Name,
        rule: Option<Arc<DestinationRule>>,
    ) -> Option<Arc<DestinationRule>> {
        match rule {
            Some(r) => self.rules.insert(name, r),
            None => self.rules.remove(&name),
        }
    }

    /// Notes that a Gateway API object is stored here (`true`) or not; returns
    /// whether it was before.
    pub(crate) fn set_gateway_object(
        &mut self,
        kind: ObjectKind,
        name: &str,
        stored: bool,
    ) -> bool {
        let key = (kind, Name::from(name));
        if stored {
            !self.gateway_objects.insert(key)
        } else {
            self.gateway_objects.remove(&key)
        }
    }

    /// Takes every stored rule out (a re-list fills the store again).
    pub(crate) fn take_rules(&mut self) -> BTreeMap<Name, Arc<DestinationRule>> {
        std::mem::take(&mut self.rules)
    }

    /// Whether an object of a namespaced `kind` named `name` is stored here.
    pub(crate) fn holds(&self, kind: ObjectKind, name: &str) -> bool {
        use ObjectKind as K;
        match kind {
            K::Policy => self.policies.contains_key(name),
            K::PeerAuthentication => self.peer_auths.contains_key(name),
            K::Service => self.services.contains_key(name),
            K::Ingress => self.ingresses.contains_key(name),
            K::DestinationRule => self.rules.contains_key(name),
            _ => self.gateway_objects.contains(&(kind, Name::from(name))),
        }
    }

    /// The number of objects of a namespaced `kind` stored here.
    pub(crate) fn len(&self, kind: ObjectKind) -> usize {
        use ObjectKind as K;
        match kind {
            K::Policy => self.policies.len(),
            K::PeerAuthentication => self.peer_auths.len(),
            K::Service => self.services.len(),
            K::Ingress => self.ingresses.len(),
            K::DestinationRule => self.rules.len(),
            _ => self
                .gateway_objects
                .iter()
                .filter(|(k, _)| *k == kind)
                .count(),
        }
    }

    /// Forgets every object of a namespaced `kind`, without deriving anything (a
    /// re-list fills the store again, then calls [`Self::derive`]).
    pub(crate) fn clear(&mut self, kind: ObjectKind) {
        use ObjectKind as K;
        match kind {
            K::Policy => self.policies.clear(),
            K::PeerAuthentication => self.peer_auths.clear(),
            K::Service => self.services.clear(),
            K::Ingress => self.ingresses.clear(),
            K::DestinationRule => self.rules.clear(),
            _ => self.gateway_objects.retain(|(k, _)| *k != kind),
        }
    }

    /// The stores filled by a bulk build or a re-list: each object replaces the one of
    /// the same name, and nothing is derived until [`Self::derive`].
    pub(crate) fn fill_policy(&mut self, name: Name, policy: StoredPolicy) {
        self.policies.insert(name, Arc::new(policy));
    }

    pub(crate) fn fill_peer_auth(&mut self, name: Name, entry: PeerAuthEntry) {
        self.peer_auths.insert(name, Arc::new(entry));
    }

    pub(crate) fn fill_service(&mut self, name: Name, entry: ServiceEntry) {
        self.services.insert(name, Arc::new(entry));
    }

    pub(crate) fn fill_ingress(&mut self, name: Name, entry: IngressEntry) {
        self.ingresses.insert(name, Arc::new(entry));
    }

    /// Everything the decision reads, from the stores (after a bulk fill).
    pub(crate) fn derive(&mut self, classes: &Classes) {
        self.wide_peer_auths = self.sorted_peer_auths(true);
        self.workload_peer_auths = self.sorted_peer_auths(false);
        self.relink_services();
        self.gateway_services = self
            .services
            .values()
            .filter(|s| s.is_ingress_gateway)
            .count();
        self.has_ingress_gateway = self.gateway_services > 0;
        self.derive_default_policies();
        let mut policies: Vec<&Arc<StoredPolicy>> = self
            .policies
            .values()
            .filter(|p| !p.targets.is_empty())
            .collect();
        policies.sort_by(|a, b| age_cmp(a.entry.age(), b.entry.age()));
        let mut targets: HashMap<Name, Vec<PolicyTargetEntry>> = HashMap::new();
        for p in policies {
            for (service, target) in &p.targets {
                match targets.get_mut(service.as_str()) {
                    Some(t) => t.push(target.clone()),
                    None => {
                        targets.insert(service.as_str().into(), vec![target.clone()]);
                    }
                }
            }
        }
        self.policy_targets = targets.into_iter().map(|(s, t)| (s, Arc::new(t))).collect();
        self.ingress_backends = self.all_ingress_backends(classes);
    }

    /// The names stored for each namespaced kind, for a re-list.
    pub(crate) fn names(&self, kind: ObjectKind) -> Vec<Name> {
        use ObjectKind as K;
        match kind {
            K::Policy => self.policies.keys().cloned().collect(),
            K::PeerAuthentication => self.peer_auths.keys().cloned().collect(),
            K::Service => self.services.keys().cloned().collect(),
            K::Ingress => self.ingresses.keys().cloned().collect(),
            K::DestinationRule => self.rules.keys().cloned().collect(),
            K::HTTPRoute
            | K::GRPCRoute
            | K::TLSRoute
            | K::TCPRoute
            | K::Gateway
            | K::ReferenceGrant => self
                .gateway_objects
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| n.clone())
                .collect(),
            K::MeshPolicy
            | K::IngressClass
            | K::Namespace
            | K::GatewayClass
            | K::MutatingWebhookConfiguration
            | K::ValidatingWebhookConfiguration
            | K::APIService => Vec::new(),
        }
    }
}
