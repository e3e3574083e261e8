//! Everything the snapshot knows about one namespace: the objects stored in it
//! (one store per kind, keyed by name) and what the decision reads, derived from
//! them. An event changes one store and re-derives only the parts that read it.

use super::entries::{
    age_cmp, is_mesh_class, Classes, IngressEntry, PeerAuthEntry, PolicyEntry, PolicyTargetEntry,
    ServiceEntry, StoredPolicy,
};
use crate::enforcement::Mode;
use crate::model::{DestinationRule, ObjectKind, ObjectRef};
use std::sync::Arc;

/// Names in the index: cheap to clone when a shared map node is copied.
pub type Name = Arc<str>;

#[derive(Debug, Clone, Default)]
pub struct NamespaceIndex {
    /// A Namespace object was seen (other namespaces are known through their objects).
    pub has_object: bool,
    /// The namespace's `mtls-guard.io/mode` label, when valid.
    pub mode: Option<Mode>,
    pub services: imbl::HashMap<Name, Arc<ServiceEntry>>,
    /// PeerAuthentications without a selector, oldest first.
    pub wide_peer_auths: Vec<Arc<PeerAuthEntry>>,
    /// PeerAuthentications with a selector, oldest first.
    pub workload_peer_auths: Vec<Arc<PeerAuthEntry>>,
    /// Policies named `default` without targets, oldest first.
    pub default_policies: Vec<Arc<PolicyEntry>>,
    /// Policy targets by service name, oldest policy first.
    pub policy_targets: imbl::HashMap<Name, Arc<Vec<PolicyTargetEntry>>>,
    /// Services that back a non-mesh Ingress, with the oldest such Ingress.
    pub ingress_backends: imbl::HashMap<Name, ObjectRef>,
    /// A Service labelled `istio: ingressgateway` lives here.
    pub has_ingress_gateway: bool,

    // The stores, by object name.
    policies: imbl::OrdMap<Name, Arc<StoredPolicy>>,
    peer_auths: imbl::OrdMap<Name, Arc<PeerAuthEntry>>,
    ingresses: imbl::OrdMap<Name, Arc<IngressEntry>>,
    rules: imbl::OrdMap<Name, Arc<DestinationRule>>,
    /// Gateway API objects here (the gateway index holds them): they make the namespace known.
    gateway_objects: imbl::OrdSet<(ObjectKind, Name)>,
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
        let mut changed = Vec::new();
        for (name, svc) in &self.services {
            let mut svc = ServiceEntry::clone(svc);
            if svc.link(&self.workload_peer_auths) {
                changed.push((name.clone(), Arc::new(svc)));
            }
        }
        for (name, svc) in changed {
            self.services.insert(name, svc);
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
            let mut defaults: Vec<_> = self
                .policies
                .values()
                .filter(|p| p.is_namespace_default())
                .map(|p| p.entry.clone())
                .collect();
            defaults.sort_by(|a, b| age_cmp(a.age(), b.age()));
            self.default_policies = defaults;
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

    /// The Ingresses' backends under another set of IngressClasses; `None` when unchanged.
    pub(crate) fn rederive_ingresses(&self, classes: &Classes) -> Option<NamespaceIndex> {
        let mut next = self.clone();
        next.ingress_backends = imbl::HashMap::new();
        let services: std::collections::BTreeSet<&String> =
            self.ingresses.values().flat_map(|i| &i.backends).collect();
        for service in services {
            next.derive_ingress_backend(service, classes);
        }
        (next.ingress_backends != self.ingress_backends).then_some(next)
    }

    /// Stores or removes a rule; returns the one stored before.
    pub(crate) fn set_rule(
        &mut self,
        name: &str,
        rule: Option<Arc<DestinationRule>>,
    ) -> Option<Arc<DestinationRule>> {
        match rule {
            Some(r) => self.rules.insert(name.into(), r),
            None => self.rules.remove(name),
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
            self.gateway_objects.insert(key).is_some()
        } else {
            self.gateway_objects.remove(&key).is_some()
        }
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
