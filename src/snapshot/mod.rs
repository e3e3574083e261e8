//! The mesh snapshot: every object a decision reads, indexed by namespace and
//! name so that judging one rule costs a handful of map look-ups.
//!
//! It is an index updated per object: [`Snapshot::apply`], [`Snapshot::delete`]
//! and [`Snapshot::reset`] (a re-list of one kind) change only the namespace the
//! object lives in, and within it only the parts derived from that object's kind.
//! Cloning is cheap (persistent maps, `Arc`'d namespaces copied on write), so a
//! source keeps a working copy, applies events to it and publishes clones; a
//! review keeps the clone it started with. Mesh-level objects (MeshPolicy, the
//! root namespace's PeerAuthentications and ingress gateway) are looked up at
//! decision time, so a change to them touches nothing else.

mod backends;
mod entries;
mod namespace;
mod rules;

pub use backends::Backend;
pub use entries::{
    PeerAuthEntry, PolicyEntry, PolicyTargetEntry, ServiceEntry, ServicePortEntry, TargetPort,
    INGRESS_EXPOSED_ANNOTATION,
};
pub use namespace::{Name, NamespaceIndex};
pub use rules::RuleKey;

use crate::enforcement::{self, Mode, MODE_LABEL};
use crate::gateway::GatewayIndex;
use crate::model::{DestinationRule, MeshObject, ObjectKind, ObjectRef};
pub(crate) use entries::age_cmp;
use entries::{mesh_policy_notes, ClassEntry, Classes, IngressEntry, StoredPolicy};
use k8s_openapi::api::core::v1::Namespace;
use rules::{host_candidate, RuleTargets};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Object counts by kind, for metrics and `check`'s summary.
pub type ObjectCounts = BTreeMap<ObjectKind, usize>;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    namespaces: imbl::HashMap<Name, Arc<NamespaceIndex>>,
    /// Cluster-scoped objects: few, and rarely changed.
    cluster: Arc<ClusterScoped>,
    counts: ObjectCounts,
    /// Things the index could not use, by the object that caused them.
    notes: imbl::OrdMap<ObjectRef, Arc<Vec<String>>>,
    /// Gateway API objects and the Service ports they reach (contract section 4 (c)).
    gateway: Arc<GatewayIndex>,
    /// DestinationRules by the services their hosts can name.
    rule_targets: RuleTargets,
    /// The Services webhook configurations and APIServices call (contract section 8).
    backends: backends::Backends,
}

#[derive(Debug, Clone, Default)]
struct ClusterScoped {
    /// Every MeshPolicy, by (namespace, name): cluster-scoped, so the namespace is
    /// empty unless a file gave one.
    mesh_store: imbl::OrdMap<(String, String), Arc<PolicyEntry>>,
    /// MeshPolicies named `default`, oldest first.
    mesh_policies: Vec<Arc<PolicyEntry>>,
    classes: Classes,
    /// The names of the GatewayClasses (the gateway index holds them).
    gateway_classes: imbl::OrdSet<String>,
}

/// The NamespaceIndex of `name`, created when missing, for writing.
fn ns_mut<'a>(
    namespaces: &'a mut imbl::HashMap<Name, Arc<NamespaceIndex>>,
    name: &str,
) -> &'a mut NamespaceIndex {
    if !namespaces.contains_key(name) {
        namespaces.insert(name.into(), Arc::default());
    }
    let ns = namespaces.get_mut(name).expect("inserted above");
    Arc::make_mut(ns)
}

/// `(namespace, name)` as [`Snapshot::delete`] takes them (cluster-scoped: empty namespace).
fn object_key(obj: &MeshObject) -> (String, String) {
    let meta = obj.metadata();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Snapshot {
    /// Builds the index from objects of any kind, as a stream of events would: of
    /// several objects with one kind, namespace and name, the last one is kept. The
    /// counts are of the objects given, each of them (what files held, for `check`'s
    /// summary); events then change them by one per object stored or removed.
    pub fn from_objects<I: IntoIterator<Item = MeshObject>>(objects: I) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut given = ObjectCounts::new();
        let mut gateway = GatewayIndex::default();
        let mut rest = Vec::new();
        // IngressClasses first, so that Ingresses are classified once.
        for obj in objects {
            *given.entry(obj.kind()).or_default() += 1;
            // The gateway index is computed once, at the end.
            gateway.stage(&obj);
            match obj {
                MeshObject::IngressClass(_) => snap.store(obj),
                other => rest.push(other),
            }
        }
        for obj in rest {
            snap.store(obj);
        }
        gateway.finish();
        snap.gateway = Arc::new(gateway);
        snap.counts = given;
        snap
    }

    /// Stores `obj`, replacing the object of the same kind, namespace and name.
    pub fn apply(&mut self, obj: MeshObject) {
        if GatewayIndex::reads(obj.kind()) {
            Arc::make_mut(&mut self.gateway).apply(&obj);
        }
        self.store(obj);
    }

    /// [`Self::apply`] but for the gateway index.
    fn store(&mut self, obj: MeshObject) {
        let kind = obj.kind();
        let (namespace, name) = object_key(&obj);
        let existed = match obj {
            MeshObject::Policy(p) => {
                let (stored, notes) = StoredPolicy::new(&p);
                self.set_notes(kind, &namespace, &name, notes);
                ns_mut(&mut self.namespaces, &namespace).set_policy(&name, Some(stored))
            }
            MeshObject::MeshPolicy(p) => {
                let entry = PolicyEntry::new(ObjectKind::MeshPolicy, &p);
                self.set_notes(kind, &namespace, &name, mesh_policy_notes(&entry));
                self.set_mesh_policy(namespace, name, Some(entry))
            }
            MeshObject::PeerAuthentication(pa) => {
                let (entry, notes) = PeerAuthEntry::new(&pa);
                self.set_notes(kind, &namespace, &name, notes);
                ns_mut(&mut self.namespaces, &namespace).set_peer_auth(&name, Some(entry))
            }
            MeshObject::DestinationRule(rule, _raw) => {
                let candidate = host_candidate(&rule.spec.host, &namespace);
                let old =
                    ns_mut(&mut self.namespaces, &namespace).set_rule(&name, Some(Arc::new(*rule)));
                self.file_rule(&namespace, &name, old.as_deref(), Some(candidate));
                old.is_some()
            }
            MeshObject::Service(s) => {
                let entry = ServiceEntry::new(&s);
                ns_mut(&mut self.namespaces, &namespace).set_service(&name, Some(entry))
            }
            MeshObject::Ingress(i) => {
                let entry = IngressEntry::new(&i);
                ns_mut(&mut self.namespaces, &namespace).set_ingress(
                    &name,
                    Some(entry),
                    &self.cluster.classes,
                )
            }
            MeshObject::IngressClass(c) => self.set_class(&name, Some(ClassEntry::new(&c))),
            MeshObject::Namespace(n) => self.set_namespace(&name, Some(&n)),
            // Indexed by the gateway index; like any object, they make their namespace known.
            MeshObject::Route(..) | MeshObject::Gateway(_) | MeshObject::ReferenceGrant(_) => {
                ns_mut(&mut self.namespaces, &namespace).set_gateway_object(kind, &name, true)
            }
            MeshObject::GatewayClass(_) => Arc::make_mut(&mut self.cluster)
                .gateway_classes
                .insert(name)
                .is_some(),
            MeshObject::Webhooks(..) | MeshObject::APIService(_) => {
                let called = backends::backends_of(&obj).unwrap_or_default();
                self.backends
                    .insert((kind, name), Arc::new(called))
                    .is_some()
            }
        };
        self.count(kind, existed, true);
    }

    /// Removes the object of `kind` named `namespace/name` (cluster-scoped kinds:
    /// `namespace` is empty), if it is stored.
    pub fn delete(&mut self, kind: ObjectKind, namespace: &str, name: &str) {
        if GatewayIndex::reads(kind) {
            Arc::make_mut(&mut self.gateway).delete(kind, namespace, name);
        }
        self.remove(kind, namespace, name);
    }

    /// [`Self::delete`] but for the gateway index.
    fn remove(&mut self, kind: ObjectKind, namespace: &str, name: &str) {
        let existed = match kind {
            ObjectKind::GatewayClass => Arc::make_mut(&mut self.cluster)
                .gateway_classes
                .remove(name)
                .is_some(),
            ObjectKind::MeshPolicy => {
                self.set_mesh_policy(namespace.to_string(), name.to_string(), None)
            }
            ObjectKind::IngressClass => self.set_class(name, None),
            ObjectKind::Namespace => self.set_namespace(name, None),
            ObjectKind::MutatingWebhookConfiguration
            | ObjectKind::ValidatingWebhookConfiguration
            | ObjectKind::APIService => self.backends.remove(&(kind, name.to_string())).is_some(),
            ObjectKind::Policy
            | ObjectKind::PeerAuthentication
            | ObjectKind::DestinationRule
            | ObjectKind::Service
            | ObjectKind::Ingress
            | ObjectKind::HTTPRoute
            | ObjectKind::GRPCRoute
            | ObjectKind::TLSRoute
            | ObjectKind::TCPRoute
            | ObjectKind::Gateway
            | ObjectKind::ReferenceGrant => {
                let Some(ns) = self.namespaces.get_mut(namespace) else {
                    return;
                };
                let ns = Arc::make_mut(ns);
                let existed = match kind {
                    ObjectKind::Policy => ns.set_policy(name, None),
                    ObjectKind::PeerAuthentication => ns.set_peer_auth(name, None),
                    ObjectKind::DestinationRule => {
                        let old = ns.set_rule(name, None);
                        self.file_rule(namespace, name, old.as_deref(), None);
                        old.is_some()
                    }
                    ObjectKind::Service => ns.set_service(name, None),
                    ObjectKind::Ingress => ns.set_ingress(name, None, &self.cluster.classes),
                    _ => ns.set_gateway_object(kind, name, false),
                };
                self.prune(namespace);
                existed
            }
        };
        self.set_notes(kind, namespace, name, Vec::new());
        self.count(kind, existed, false);
    }

    /// Replaces every object of `kind` with `objects` (a re-list). Objects of
    /// other kinds in `objects` are applied as single events.
    pub fn reset(&mut self, kind: ObjectKind, objects: Vec<MeshObject>) {
        // The gateway index re-lists in one pass, then its stored objects are replaced.
        if GatewayIndex::reads(kind) {
            Arc::make_mut(&mut self.gateway).reset(kind, &objects);
        }
        let listed: HashSet<(String, String)> = objects
            .iter()
            .filter(|o| o.kind() == kind)
            .map(object_key)
            .collect();
        for (namespace, name) in self.keys(kind) {
            if !listed.contains(&(namespace.clone(), name.clone())) {
                self.remove(kind, &namespace, &name);
            }
        }
        for obj in objects {
            if obj.kind() == kind {
                self.store(obj);
            } else {
                self.apply(obj);
            }
        }
    }

    /// The `(namespace, name)` of every stored object of `kind`.
    fn keys(&self, kind: ObjectKind) -> Vec<(String, String)> {
        match kind {
            ObjectKind::MeshPolicy => self.cluster.mesh_store.keys().cloned().collect(),
            ObjectKind::IngressClass => self
                .cluster
                .classes
                .keys()
                .map(|n| (String::new(), n.clone()))
                .collect(),
            ObjectKind::GatewayClass => self
                .cluster
                .gateway_classes
                .iter()
                .map(|n| (String::new(), n.clone()))
                .collect(),
            ObjectKind::MutatingWebhookConfiguration
            | ObjectKind::ValidatingWebhookConfiguration
            | ObjectKind::APIService => self
                .backends
                .keys()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| (String::new(), n.clone()))
                .collect(),
            ObjectKind::Namespace => self
                .namespaces
                .iter()
                .filter(|(_, ns)| ns.has_object)
                .map(|(n, _)| (String::new(), n.to_string()))
                .collect(),
            _ => self
                .namespaces
                .iter()
                .flat_map(|(ns, idx)| {
                    idx.names(kind)
                        .into_iter()
                        .map(move |n| (ns.to_string(), n.to_string()))
                })
                .collect(),
        }
    }

    /// Moves a rule from where its `old` version was filed to `candidate`.
    fn file_rule(
        &mut self,
        namespace: &str,
        name: &str,
        old: Option<&DestinationRule>,
        candidate: Option<rules::HostCandidate>,
    ) {
        let key: RuleKey = (namespace.into(), name.into());
        if let Some(old) = old {
            let was = host_candidate(&old.spec.host, namespace);
            if candidate.as_ref() == Some(&was) {
                return;
            }
            self.rule_targets.set(was, key.clone(), false);
        }
        if let Some(candidate) = candidate {
            self.rule_targets.set(candidate, key, true);
        }
    }

    fn count(&mut self, kind: ObjectKind, existed: bool, exists: bool) {
        match (existed, exists) {
            (false, true) => *self.counts.entry(kind).or_default() += 1,
            (true, false) => {
                if let Some(n) = self.counts.get_mut(&kind) {
                    *n -= 1;
                    if *n == 0 {
                        self.counts.remove(&kind);
                    }
                }
            }
            _ => {}
        }
    }

    fn set_notes(&mut self, kind: ObjectKind, namespace: &str, name: &str, notes: Vec<String>) {
        let object = ObjectRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        if notes.is_empty() {
            self.notes.remove(&object);
        } else {
            self.notes.insert(object, Arc::new(notes));
        }
    }

    /// Forgets a namespace that no object names any more.
    fn prune(&mut self, namespace: &str) {
        if self
            .namespaces
            .get(namespace)
            .is_some_and(|ns| ns.is_empty())
        {
            self.namespaces.remove(namespace);
        }
    }

    fn set_mesh_policy(
        &mut self,
        namespace: String,
        name: String,
        entry: Option<PolicyEntry>,
    ) -> bool {
        let key = (namespace, name);
        let cluster = Arc::make_mut(&mut self.cluster);
        let old = match entry {
            Some(e) => cluster.mesh_store.insert(key, Arc::new(e)),
            None => cluster.mesh_store.remove(&key),
        };
        let mut defaults: Vec<_> = cluster
            .mesh_store
            .values()
            .filter(|p| p.object.name == "default")
            .cloned()
            .collect();
        defaults.sort_by(|a, b| age_cmp(a.age(), b.age()));
        cluster.mesh_policies = defaults;
        old.is_some()
    }

    /// Stores or removes an IngressClass; a change re-classifies the Ingresses of
    /// every namespace that has some (rare: classes change little).
    fn set_class(&mut self, name: &str, entry: Option<ClassEntry>) -> bool {
        let cluster = Arc::make_mut(&mut self.cluster);
        let old = match entry {
            Some(e) => cluster.classes.insert(name.to_string(), e),
            None => cluster.classes.remove(name),
        };
        if old != entry {
            let with_ingresses: Vec<Name> = self
                .namespaces
                .iter()
                .filter(|(_, ns)| ns.has_ingresses())
                .map(|(n, _)| n.clone())
                .collect();
            for n in with_ingresses {
                if let Some(next) = self.namespaces[&n].rederive_ingresses(&self.cluster.classes) {
                    self.namespaces.insert(n, Arc::new(next));
                }
            }
        }
        old.is_some()
    }

    fn set_namespace(&mut self, name: &str, object: Option<&Namespace>) -> bool {
        let mut notes = Vec::new();
        let mode = match object.map(|n| enforcement::label_mode(n.metadata.labels.as_ref())) {
            Some(Ok(mode)) => mode,
            Some(Err(raw)) => {
                notes.push(format!(
                    "Namespace {name}: label {MODE_LABEL}={raw:?} is not enforce, warn or off; the default mode applies"
                ));
                None
            }
            None => None,
        };
        self.set_notes(ObjectKind::Namespace, "", name, notes);
        let existed = match object {
            Some(_) => {
                let ns = ns_mut(&mut self.namespaces, name);
                let existed = ns.has_object;
                ns.has_object = true;
                ns.mode = mode;
                existed
            }
            None => {
                let Some(ns) = self.namespaces.get_mut(name) else {
                    return false;
                };
                let ns = Arc::make_mut(ns);
                let existed = ns.has_object;
                ns.has_object = false;
                ns.mode = None;
                self.prune(name);
                existed
            }
        };
        existed
    }

    pub fn namespace(&self, name: &str) -> Option<&NamespaceIndex> {
        self.namespaces.get(name).map(|ns| &**ns)
    }

    /// Every known namespace, in no particular order.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &NamespaceIndex)> {
        self.namespaces.iter().map(|(n, ns)| (&**n, &**ns))
    }

    /// A namespace is known when a Namespace object or any object in it is stored.
    pub fn knows_namespace(&self, name: &str) -> bool {
        self.namespaces.contains_key(name)
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.namespaces
            .get(namespace)?
            .services
            .get(name)
            .map(|s| &**s)
    }

    pub fn mesh_policies(&self) -> &[Arc<PolicyEntry>] {
        &self.cluster.mesh_policies
    }

    /// The mode label of a namespace, if it has a valid one.
    pub fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        self.namespaces.get(namespace)?.mode
    }

    /// Every stored DestinationRule (namespaces in no particular order, names in order).
    pub fn rules(&self) -> impl Iterator<Item = &Arc<DestinationRule>> {
        self.namespaces.values().flat_map(|ns| ns.rules())
    }

    /// The DestinationRules stored in `namespace`, by name.
    pub fn rules_in(&self, namespace: &str) -> impl Iterator<Item = &Arc<DestinationRule>> {
        self.namespaces
            .get(namespace)
            .into_iter()
            .flat_map(|ns| ns.rules())
    }

    pub fn rule(&self, namespace: &str, name: &str) -> Option<&Arc<DestinationRule>> {
        self.namespaces.get(namespace)?.rule(name)
    }

    /// Stored rules whose host can name service `namespace/service`: by name, by the
    /// namespace's wildcard or by another wildcard (the mesh-wide ones). A superset:
    /// resolve each host ([`crate::decision::resolve_host`]) to know. These are the
    /// rules a change to that Service (or its service-level policies) can affect.
    pub fn rules_for_service<'a>(
        &'a self,
        namespace: &str,
        service: &str,
    ) -> impl Iterator<Item = &'a Arc<DestinationRule>> + 'a {
        self.rule_targets
            .for_service(namespace, service)
            .filter_map(|(ns, name)| self.rule(ns, name))
    }

    /// Stored rules whose host can name some service of `namespace`, known or not, or
    /// any wildcard: the rules a namespace-level change can affect (a superset).
    pub fn rules_for_namespace<'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = &'a Arc<DestinationRule>> + 'a {
        self.rule_targets
            .for_namespace(namespace)
            .filter_map(|(ns, name)| self.rule(ns, name))
    }

    /// Every Service port a webhook configuration or APIService calls, by caller.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.backends.values().flat_map(|b| b.iter())
    }

    /// The Gateway API part: which Service ports routes attached to Gateways reach.
    pub fn gateway(&self) -> &GatewayIndex {
        &self.gateway
    }

    pub fn counts(&self) -> &ObjectCounts {
        &self.counts
    }

    /// Things the index could not use, in object order.
    pub fn notes(&self) -> Vec<String> {
        self.notes
            .values()
            .flat_map(|n| n.iter().cloned())
            .collect()
    }

    /// The notes caused by one object.
    pub fn notes_of(&self, object: &ObjectRef) -> &[String] {
        self.notes.get(object).map_or(&[], |n| n.as_slice())
    }
}
