//! The mesh snapshot: every object a decision reads, indexed by namespace and
//! name so that judging one rule costs a handful of map look-ups.
//!
//! It is an index updated per object: [`Snapshot::apply`], [`Snapshot::delete`]
//! and [`Snapshot::reset`] (a re-list of one kind) change only the namespace the
//! object lives in, and within it only the parts derived from that object's kind.
//! [`Snapshot::from_objects`] and a re-list of a namespaced kind fill each
//! namespace's stores first and derive each namespace once (the bulk path).
//! Cloning is cheap (a persistent map of `Arc`'d namespaces, each copied on write),
//! so a source keeps a working copy, applies events to it and publishes clones; a
//! review keeps the clone it started with. Mesh-level objects (MeshPolicy, the
//! root namespace's PeerAuthentications and ingress gateway) are looked up at
//! decision time, so a change to them touches nothing else.

mod backends;
mod entries;
mod namespace;
mod rules;

pub use backends::Backend;
pub use entries::{
    Labels, PeerAuthEntry, PolicyEntry, PolicyTargetEntry, ServiceEntry, ServicePortEntry,
    TargetPort, INGRESS_EXPOSED_ANNOTATION,
};
pub use namespace::{Name, NamespaceIndex};
pub use rules::RuleKey;

use crate::enforcement::{self, Mode, MODE_LABEL};
use crate::gateway::GatewayIndex;
use crate::model::{DestinationRule, MeshObject, ObjectKind, ObjectRef};
pub(crate) use entries::age_cmp;
use entries::{mesh_policy_notes, ClassEntry, Classes, IngressEntry, StoredPolicy};
use rules::{host_candidate, RuleTargets};
use std::collections::{BTreeMap, HashMap, HashSet};
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

/// An object reduced to what the index stores of it.
enum Entry {
    Policy(StoredPolicy),
    MeshPolicy(PolicyEntry),
    PeerAuth(PeerAuthEntry),
    Rule(Arc<DestinationRule>),
    Service(ServiceEntry),
    Ingress(IngressEntry),
    Class(ClassEntry),
    /// A Namespace object, with its valid mode label.
    Namespace(Option<Mode>),
    /// Indexed by the gateway index; like any object, they make their namespace known.
    GatewayObject,
    GatewayClass,
    /// A webhook configuration or an APIService: the Service ports it calls.
    Backends(Vec<Backend>),
}

/// One object as the index takes it: where it is stored, what, and the notes it causes.
struct Reduced {
    kind: ObjectKind,
    /// Empty for cluster-scoped objects (unless a file gave one to a MeshPolicy).
    namespace: String,
    name: String,
    entry: Entry,
    notes: Vec<String>,
}

impl Reduced {
    fn new(obj: MeshObject) -> Reduced {
        let kind = obj.kind();
        let namespace = obj.namespace().to_string();
        let name = obj.name().to_string();
        let mut notes = Vec::new();
        let entry = match obj {
            MeshObject::Policy(p) => {
                let (stored, n) = StoredPolicy::new(&p);
                notes = n;
                Entry::Policy(stored)
            }
            MeshObject::MeshPolicy(p) => {
                let entry = PolicyEntry::new(ObjectKind::MeshPolicy, &p);
                notes = mesh_policy_notes(&entry);
                Entry::MeshPolicy(entry)
            }
            MeshObject::PeerAuthentication(pa) => {
                let (entry, n) = PeerAuthEntry::new(&pa);
                notes = n;
                Entry::PeerAuth(entry)
            }
            MeshObject::DestinationRule(rule, _raw) => Entry::Rule(Arc::new(*rule)),
            MeshObject::Service(s) => Entry::Service(ServiceEntry::new(&s)),
            MeshObject::Ingress(i) => Entry::Ingress(IngressEntry::new(&i)),
            MeshObject::IngressClass(c) => Entry::Class(ClassEntry::new(&c)),
            MeshObject::Namespace(n) => {
                Entry::Namespace(match enforcement::label_mode(n.metadata.labels.as_ref()) {
                    Ok(mode) => mode,
                    Err(raw) => {
                        notes.push(format!(
                            "Namespace {name}: label {MODE_LABEL}={raw:?} is not enforce, warn or off; the default mode applies"
                        ));
                        None
                    }
                })
            }
            MeshObject::Route(..) | MeshObject::Gateway(_) | MeshObject::ReferenceGrant(_) => {
                Entry::GatewayObject
            }
            MeshObject::GatewayClass(_) => Entry::GatewayClass,
            MeshObject::Webhooks(..) | MeshObject::APIService(_) => {
                Entry::Backends(backends::backends_of(&obj).unwrap_or_default())
            }
        };
        Reduced {
            kind,
            namespace,
            name,
            entry,
            notes,
        }
    }

    /// The namespace whose index files the object (a Namespace: its own); `None`
    /// for the cluster-scoped kinds, which live beside the namespaces.
    fn home(&self) -> Option<&str> {
        match self.entry {
            Entry::MeshPolicy(_) | Entry::Class(_) | Entry::GatewayClass | Entry::Backends(_) => {
                None
            }
            Entry::Namespace(_) => Some(&self.name),
            _ => Some(&self.namespace),
        }
    }
}

/// The NamespaceIndex of `name`, created when missing, for writing; with the name
/// the snapshot holds it under (shared by the keys that name it).
fn ns_mut<'a>(
    namespaces: &'a mut imbl::HashMap<Name, Arc<NamespaceIndex>>,
    name: &str,
) -> (Name, &'a mut NamespaceIndex) {
    if !namespaces.contains_key(name) {
        namespaces.insert(name.into(), Arc::default());
    }
    let (key, ns) = namespaces.get_key_value_mut(name).expect("inserted above");
    (key.clone(), Arc::make_mut(ns))
}

/// Whether `kind` lives in the namespaces' stores (namespaced and not a Namespace).
fn namespaced(kind: ObjectKind) -> bool {
    !matches!(
        kind,
        ObjectKind::MeshPolicy
            | ObjectKind::IngressClass
            | ObjectKind::Namespace
            | ObjectKind::GatewayClass
            | ObjectKind::MutatingWebhookConfiguration
            | ObjectKind::ValidatingWebhookConfiguration
            | ObjectKind::APIService
    )
}

/// Notes by object while a bulk path collects them: the last object's notes win.
#[derive(Default)]
struct NoteBatch(BTreeMap<ObjectRef, Vec<String>>);

impl NoteBatch {
    fn set(&mut self, r: &Reduced) {
        let object = ObjectRef {
            kind: r.kind,
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        };
        if r.notes.is_empty() {
            self.0.remove(&object);
        } else {
            self.0.insert(object, r.notes.clone());
        }
    }
}

/// Files a namespaced object (or a Namespace) in `ns` without deriving anything:
/// the bulk paths call [`NamespaceIndex::derive`] once the stores are filled.
fn fill(ns: &mut NamespaceIndex, r: Reduced) {
    let name = Name::from(r.name);
    match r.entry {
        Entry::Policy(p) => ns.fill_policy(name, p),
        Entry::PeerAuth(e) => ns.fill_peer_auth(name, e),
        Entry::Service(e) => ns.fill_service(name, e),
        Entry::Ingress(e) => ns.fill_ingress(name, e),
        Entry::Rule(rule) => {
            ns.set_rule(name, Some(rule));
        }
        Entry::GatewayObject => {
            ns.set_gateway_object(r.kind, &name, true);
        }
        Entry::Namespace(mode) => {
            ns.has_object = true;
            ns.mode = mode;
        }
        Entry::MeshPolicy(_) | Entry::Class(_) | Entry::GatewayClass | Entry::Backends(_) => {
            unreachable!("cluster-scoped objects are not filed in a namespace")
        }
    }
}

impl Snapshot {
    /// Builds the index from objects of any kind, as a stream of events would: of
    /// several objects with one kind, namespace and name, the last one is kept. The
    /// counts are of the objects given, each of them (what files held, for `check`'s
    /// summary); events then change them by one per object stored or removed.
    ///
    /// The bulk path: each object is reduced as it comes and filed in its
    /// namespace's stores, then every namespace is derived once.
    pub fn from_objects<I: IntoIterator<Item = MeshObject>>(objects: I) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut given = ObjectCounts::new();
        let mut gateway = GatewayIndex::default();
        let mut namespaces: HashMap<Name, NamespaceIndex> = HashMap::new();
        let mut notes = NoteBatch::default();
        for obj in objects {
            *given.entry(obj.kind()).or_default() += 1;
            // The gateway index is computed once, at the end.
            gateway.stage(&obj);
            let r = Reduced::new(obj);
            notes.set(&r);
            let Some(home) = r.home() else {
                // Cluster-scoped: no namespace is derived yet, so nothing else changes.
                snap.store_reduced(r);
                continue;
            };
            let ns = match namespaces.get_mut(home) {
                Some(ns) => ns,
                None => namespaces.entry(home.into()).or_default(),
            };
            fill(ns, r);
        }
        let classes = &snap.cluster.classes;
        let mut targets = Vec::new();
        snap.namespaces = namespaces
            .into_iter()
            .map(|(name, mut ns)| {
                ns.derive(classes);
                for (rule, r) in ns.named_rules() {
                    let key: RuleKey = (name.clone(), rule.clone());
                    targets.push((host_candidate(&r.spec.host, &name), key));
                }
                (name, Arc::new(ns))
            })
            .collect();
        snap.rule_targets = RuleTargets::from_filed(targets);
        snap.notes = notes.0.into_iter().map(|(o, n)| (o, Arc::new(n))).collect();
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
        self.store_reduced(Reduced::new(obj));
    }

    /// [`Self::apply`] but for the gateway index.
    fn store_reduced(&mut self, r: Reduced) {
        let Reduced {
            kind,
            namespace,
            name,
            entry,
            notes,
        } = r;
        self.set_notes(kind, &namespace, &name, notes);
        let existed = match entry {
            Entry::Policy(stored) => ns_mut(&mut self.namespaces, &namespace)
                .1
                .set_policy(&name, Some(stored)),
            Entry::MeshPolicy(entry) => self.set_mesh_policy(namespace, name, Some(entry)),
            Entry::PeerAuth(entry) => ns_mut(&mut self.namespaces, &namespace)
                .1
                .set_peer_auth(&name, Some(entry)),
            Entry::Rule(rule) => {
                let candidate = host_candidate(&rule.spec.host, &namespace);
                let (ns_name, ns) = ns_mut(&mut self.namespaces, &namespace);
                let name = Name::from(name);
                let old = ns.set_rule(name.clone(), Some(rule));
                self.file_rule((ns_name, name), old.as_deref(), Some(candidate));
                old.is_some()
            }
            Entry::Service(entry) => ns_mut(&mut self.namespaces, &namespace)
                .1
                .set_service(&name, Some(entry)),
            Entry::Ingress(entry) => ns_mut(&mut self.namespaces, &namespace).1.set_ingress(
                &name,
                Some(entry),
                &self.cluster.classes,
            ),
            Entry::Class(entry) => self.set_class(&name, Some(entry)),
            Entry::Namespace(mode) => {
                let ns = ns_mut(&mut self.namespaces, &name).1;
                let existed = ns.has_object;
                ns.has_object = true;
                ns.mode = mode;
                existed
            }
            Entry::GatewayObject => ns_mut(&mut self.namespaces, &namespace)
                .1
                .set_gateway_object(kind, &name, true),
            Entry::GatewayClass => Arc::make_mut(&mut self.cluster)
                .gateway_classes
                .insert(name)
                .is_some(),
            Entry::Backends(called) => self
                .backends
                .insert((kind, name), Arc::new(called))
                .is_some(),
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
            ObjectKind::MutatingWebhookConfiguration
            | ObjectKind::ValidatingWebhookConfiguration
            | ObjectKind::APIService => self.backends.remove(&(kind, name.to_string())).is_some(),
            ObjectKind::Namespace => match self.namespaces.get_mut(name) {
                Some(ns) => {
                    let ns = Arc::make_mut(ns);
                    let existed = ns.has_object;
                    ns.has_object = false;
                    ns.mode = None;
                    self.prune(name);
                    existed
                }
                None => false,
            },
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
                let Some((ns_name, ns)) = self.namespaces.get_key_value_mut(namespace) else {
                    return;
                };
                let ns_name = ns_name.clone();
                let ns = Arc::make_mut(ns);
                let existed = match kind {
                    ObjectKind::Policy => ns.set_policy(name, None),
                    ObjectKind::PeerAuthentication => ns.set_peer_auth(name, None),
                    ObjectKind::DestinationRule => {
                        let name = Name::from(name);
                        let old = ns.set_rule(name.clone(), None);
                        self.file_rule((ns_name.clone(), name), old.as_deref(), None);
                        old.is_some()
                    }
                    ObjectKind::Service => ns.set_service(name, None),
                    ObjectKind::Ingress => ns.set_ingress(name, None, &self.cluster.classes),
                    _ => ns.set_gateway_object(kind, name, false),
                };
                self.prune(&ns_name);
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
        let (listed, others): (Vec<MeshObject>, Vec<MeshObject>) =
            objects.into_iter().partition(|o| o.kind() == kind);
        if namespaced(kind) {
            self.relist(kind, listed);
        } else {
            let keys: HashSet<(String, String)> = listed
                .iter()
                .map(|o| (o.namespace().to_string(), o.name().to_string()))
                .collect();
            for (namespace, name) in self.keys(kind) {
                if !keys.contains(&(namespace.clone(), name.clone())) {
                    self.remove(kind, &namespace, &name);
                }
            }
            for obj in listed {
                self.store_reduced(Reduced::new(obj));
            }
        }
        for obj in others {
            self.apply(obj);
        }
    }

    /// The bulk re-list of a namespaced `kind`: every namespace that holds or gets
    /// objects of `kind` has that store refilled and is derived once.
    fn relist(&mut self, kind: ObjectKind, listed: Vec<MeshObject>) {
        let mut by_namespace: HashMap<String, Vec<Reduced>> = HashMap::new();
        for obj in listed {
            let r = Reduced::new(obj);
            by_namespace.entry(r.namespace.clone()).or_default().push(r);
        }
        let mut touched: Vec<(Name, Vec<Reduced>)> = self
            .namespaces
            .iter()
            .filter(|(n, ns)| ns.len(kind) > 0 && !by_namespace.contains_key(&***n))
            .map(|(n, _)| (n.clone(), Vec::new()))
            .collect();
        touched.extend(by_namespace.into_iter().map(|(n, l)| (Name::from(n), l)));
        let (mut before, mut after) = (0, 0);
        for (namespace, list) in touched {
            let (ns_name, ns) = ns_mut(&mut self.namespaces, &namespace);
            before += ns.len(kind);
            let old_names = ns.names(kind);
            let old_rules = (kind == ObjectKind::DestinationRule).then(|| ns.take_rules());
            ns.clear(kind);
            let mut notes = Vec::with_capacity(list.len());
            for r in list {
                notes.push((r.name.clone(), r.notes.clone()));
                fill(ns, r);
            }
            if old_rules.is_none() {
                ns.derive(&self.cluster.classes);
            }
            after += ns.len(kind);
            let ns = &*ns;
            let mut moves = Vec::new();
            if let Some(old) = &old_rules {
                // Only rules whose host now points elsewhere move in the rule targets.
                let candidate = |r: &Arc<DestinationRule>| host_candidate(&r.spec.host, &ns_name);
                for (name, rule) in old {
                    let was = candidate(rule);
                    if ns.rule(name).map(candidate).as_ref() != Some(&was) {
                        moves.push((was, (ns_name.clone(), name.clone()), false));
                    }
                }
                for (name, rule) in ns.named_rules() {
                    let now = candidate(rule);
                    if old.get(name).map(candidate).as_ref() != Some(&now) {
                        moves.push((now, (ns_name.clone(), name.clone()), true));
                    }
                }
            }
            let gone: Vec<Name> = old_names
                .into_iter()
                .filter(|n| !ns.holds(kind, n))
                .collect();
            for (candidate, key, add) in moves {
                self.rule_targets.set(candidate, key, add);
            }
            for name in gone {
                self.set_notes(kind, &ns_name, &name, Vec::new());
            }
            for (name, notes) in notes {
                self.set_notes(kind, &ns_name, &name, notes);
            }
            self.prune(&ns_name);
        }
        self.recount(kind, before, after);
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
        key: RuleKey,
        old: Option<&DestinationRule>,
        candidate: Option<rules::HostCandidate>,
    ) {
        if let Some(old) = old {
            let was = host_candidate(&old.spec.host, &key.0);
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

    /// Counts after a re-list that left `after` objects of `kind` where `before`
    /// were stored: as many events as objects stored or removed would.
    fn recount(&mut self, kind: ObjectKind, before: usize, after: usize) {
        if after > before {
            *self.counts.entry(kind).or_default() += after - before;
        } else if let Some(n) = self.counts.get_mut(&kind) {
            *n = n.saturating_sub(before - after);
            if *n == 0 {
                self.counts.remove(&kind);
            }
        }
    }

    fn set_notes(&mut self, kind: ObjectKind, namespace: &str, name: &str, notes: Vec<String>) {
        if notes.is_empty() && self.notes.is_empty() {
            return;
        }
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
