//! The mesh snapshot: every object a decision reads, indexed by namespace and
//! name so that judging one rule costs a handful of map look-ups.
//!
//! It is built in one pass from typed objects and never changes afterwards; a
//! source that sees the cluster change builds a new one and swaps it in.

use crate::enforcement::{self, Mode, MODE_LABEL};
use crate::gateway::GatewayIndex;
use crate::model::{
    created, AuthPolicy, MeshObject, ObjectKind, ObjectRef, PeerAuthentication, PeerMtlsMode,
    PolicyMode,
};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Annotation on a Service that marks it as reached through a non-mesh ingress.
pub const INGRESS_EXPOSED_ANNOTATION: &str = "mtls-guard.io/ingress-exposed";
const ISTIO_INGRESS_CONTROLLER: &str = "istio.io/ingress-controller";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// A v1alpha1 Policy or MeshPolicy reduced to what decides a server mode.
#[derive(Debug, Clone)]
pub struct PolicyEntry {
    pub object: ObjectRef,
    pub created: Option<i64>,
    pub mode: PolicyMode,
    /// An element of `peers` has no `mtls` key: probably a dropped YAML null.
    pub peer_without_mtls: bool,
}

/// A Policy target naming one service.
#[derive(Debug, Clone)]
pub struct PolicyTargetEntry {
    pub policy: Arc<PolicyEntry>,
    pub port_numbers: Vec<u32>,
    pub port_names: Vec<String>,
}

/// A PeerAuthentication reduced to what decides a server mode.
#[derive(Debug, Clone)]
pub struct PeerAuthEntry {
    pub object: ObjectRef,
    pub created: Option<i64>,
    pub match_labels: BTreeMap<String, String>,
    pub mode: PeerMtlsMode,
    /// `portLevelMtls` keyed by target port number.
    pub port_level: BTreeMap<u32, PeerMtlsMode>,
}

#[derive(Debug, Clone)]
pub struct ServicePortEntry {
    pub port: u32,
    pub name: Option<String>,
    pub target_port: TargetPort,
}

/// A Service port's `targetPort`; a named one cannot be mapped without pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u32),
    Name(String),
}

#[derive(Debug, Clone, Default)]
pub struct ServiceEntry {
    pub name: String,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePortEntry>,
    /// Annotated `mtls-guard.io/ingress-exposed: "true"`.
    pub ingress_exposed: bool,
    /// Labelled `istio: ingressgateway`.
    pub is_ingress_gateway: bool,
    /// Workload PeerAuthentications (indices into the namespace's list) whose
    /// labels all appear in this Service's selector, oldest first.
    pub workload_peer_auths: Vec<usize>,
    /// Workload PeerAuthentications that select only some of this Service's pods,
    /// with the first label the Service's selector lacks.
    pub partial_peer_auths: Vec<(usize, String)>,
}

impl ServiceEntry {
    pub fn port(&self, number: u32) -> Option<&ServicePortEntry> {
        self.ports.iter().find(|p| p.port == number)
    }
}

/// Everything the snapshot knows about one namespace.
#[derive(Debug, Clone, Default)]
pub struct NamespaceIndex {
    /// A Namespace object was seen (other namespaces are known through their Services).
    pub has_object: bool,
    /// The namespace's `mtls-guard.io/mode` label, when valid.
    pub mode: Option<Mode>,
    pub services: HashMap<String, ServiceEntry>,
    /// PeerAuthentications without a selector, oldest first.
    pub wide_peer_auths: Vec<PeerAuthEntry>,
    /// PeerAuthentications with a selector, oldest first.
    pub workload_peer_auths: Vec<PeerAuthEntry>,
    /// Policies named `default` without targets, oldest first.
    pub default_policies: Vec<Arc<PolicyEntry>>,
    /// Policy targets by service name, oldest policy first.
    pub policy_targets: HashMap<String, Vec<PolicyTargetEntry>>,
    /// Services that back a non-mesh Ingress, with the first such Ingress.
    pub ingress_backends: HashMap<String, ObjectRef>,
    /// A Service labelled `istio: ingressgateway` lives here.
    pub has_ingress_gateway: bool,
}

/// Object counts by kind, for metrics and `check`'s summary.
pub type ObjectCounts = BTreeMap<ObjectKind, usize>;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    namespaces: HashMap<String, NamespaceIndex>,
    /// MeshPolicies named `default`, oldest first.
    mesh_policies: Vec<Arc<PolicyEntry>>,
    counts: ObjectCounts,
    /// Things the index could not use, said once at build time.
    notes: Vec<String>,
    /// Gateway API objects and the Service ports they reach (contract section 4 (c)).
    gateway: Arc<GatewayIndex>,
}

/// Oldest first, then by name; objects without a creation time count as newest.
fn age_key(created: Option<i64>, name: &str) -> (bool, i64, String) {
    (created.is_none(), created.unwrap_or(0), name.to_string())
}

fn meta_ref(kind: ObjectKind, meta: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

impl Snapshot {
    /// Builds the index from objects of any kind; DestinationRules are counted, not indexed.
    pub fn from_objects<I: IntoIterator<Item = MeshObject>>(objects: I) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut ingresses = Vec::new();
        let mut classes = Vec::new();
        let mut gateway = GatewayIndex::default();
        for obj in objects {
            *snap.counts.entry(obj.kind()).or_default() += 1;
            gateway.stage(&obj);
            match obj {
                MeshObject::Policy(p) => snap.add_policy(&p),
                MeshObject::MeshPolicy(p) => snap.add_mesh_policy(&p),
                MeshObject::PeerAuthentication(pa) => snap.add_peer_auth(&pa),
                MeshObject::DestinationRule(dr, _) => {
                    // Not indexed, but it makes its namespace known (for `s.n` hosts).
                    if let Some(ns) = &dr.metadata.namespace {
                        snap.namespaces.entry(ns.clone()).or_default();
                    }
                }
                MeshObject::Service(s) => snap.add_service(&s),
                MeshObject::Ingress(i) => ingresses.push(*i),
                MeshObject::IngressClass(c) => classes.push(*c),
                MeshObject::Namespace(ns) => {
                    let name = ns.metadata.name.clone().unwrap_or_default();
                    let mode = enforcement::label_mode(ns.metadata.labels.as_ref());
                    if let Err(raw) = &mode {
                        snap.notes.push(format!(
                            "Namespace {name}: label {MODE_LABEL}={raw:?} is not enforce, warn or off; the default mode applies"
                        ));
                    }
                    let entry = snap.namespaces.entry(name).or_default();
                    entry.has_object = true;
                    entry.mode = mode.unwrap_or(None);
                }
                // Read by the gateway index; like any object, they make their namespace known.
                MeshObject::Route(_, r) => snap.know_namespace(&r.metadata),
                MeshObject::Gateway(g) => snap.know_namespace(&g.metadata),
                MeshObject::ReferenceGrant(g) => snap.know_namespace(&g.metadata),
                MeshObject::GatewayClass(_) => {}
            }
        }
        gateway.finish();
        snap.gateway = Arc::new(gateway);
        snap.index_ingresses(&ingresses, &classes);
        snap.finish();
        snap
    }

    fn know_namespace(&mut self, meta: &ObjectMeta) {
        if let Some(ns) = &meta.namespace {
            self.namespaces.entry(ns.clone()).or_default();
        }
    }

    fn add_policy(&mut self, p: &AuthPolicy) {
        let entry = Arc::new(policy_entry(ObjectKind::Policy, p));
        let ns = self
            .namespaces
            .entry(entry.object.namespace.clone())
            .or_default();
        if p.spec.targets.is_empty() {
            if entry.object.name == "default" {
                ns.default_policies.push(entry);
            } else {
                self.notes.push(format!(
                    "{}: a Policy without targets counts only when named `default`; ignored",
                    entry.object
                ));
            }
            return;
        }
        for t in &p.spec.targets {
            ns.policy_targets
                .entry(t.name.clone())
                .or_default()
                .push(PolicyTargetEntry {
                    policy: entry.clone(),
                    port_numbers: t.ports.iter().filter_map(|p| p.number).collect(),
                    port_names: t.ports.iter().filter_map(|p| p.name.clone()).collect(),
                });
        }
    }

    fn add_mesh_policy(&mut self, p: &AuthPolicy) {
        let entry = policy_entry(ObjectKind::MeshPolicy, p);
        if entry.object.name == "default" {
            self.mesh_policies.push(Arc::new(entry));
        } else {
            self.notes.push(format!(
                "{}: only the MeshPolicy named `default` counts; ignored",
                entry.object
            ));
        }
    }

    fn add_peer_auth(&mut self, pa: &PeerAuthentication) {
        let object = meta_ref(ObjectKind::PeerAuthentication, &pa.metadata);
        let mut port_level = BTreeMap::new();
        for (key, mtls) in &pa.spec.port_level_mtls {
            match key.parse::<u32>() {
                Ok(port) => {
                    port_level.insert(port, mtls.mode());
                }
                Err(_) => self.notes.push(format!(
                    "{object}: portLevelMtls key {key:?} is not a port number; ignored"
                )),
            }
        }
        let entry = PeerAuthEntry {
            created: created(&pa.metadata),
            match_labels: pa.spec.match_labels().cloned().unwrap_or_default(),
            mode: pa.spec.mode(),
            port_level,
            object,
        };
        let ns = self
            .namespaces
            .entry(entry.object.namespace.clone())
            .or_default();
        if entry.match_labels.is_empty() {
            ns.wide_peer_auths.push(entry);
        } else {
            ns.workload_peer_auths.push(entry);
        }
    }

    fn add_service(&mut self, s: &Service) {
        let meta = &s.metadata;
        let name = meta.name.clone().unwrap_or_default();
        let spec = s.spec.clone().unwrap_or_default();
        let ports = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                let port = u32::try_from(p.port).ok()?;
                let target_port = match p.target_port {
                    Some(IntOrString::Int(n)) => TargetPort::Number(u32::try_from(n).ok()?),
                    Some(IntOrString::String(s)) => match s.parse::<u32>() {
                        Ok(n) => TargetPort::Number(n),
                        Err(_) => TargetPort::Name(s),
                    },
                    None => TargetPort::Number(port),
                };
                Some(ServicePortEntry {
                    port,
                    name: p.name,
                    target_port,
                })
            })
            .collect();
        let annotations = meta.annotations.as_ref();
        let labels = meta.labels.as_ref();
        let entry = ServiceEntry {
            name: name.clone(),
            selector: spec.selector.unwrap_or_default(),
            ports,
            ingress_exposed: annotations
                .and_then(|a| a.get(INGRESS_EXPOSED_ANNOTATION))
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            is_ingress_gateway: labels
                .and_then(|l| l.get("istio"))
                .is_some_and(|v| v == "ingressgateway"),
            ..Default::default()
        };
        let ns = self
            .namespaces
            .entry(meta.namespace.clone().unwrap_or_default())
            .or_default();
        ns.has_ingress_gateway |= entry.is_ingress_gateway;
        ns.services.insert(name, entry);
    }

    fn index_ingresses(&mut self, ingresses: &[Ingress], classes: &[IngressClass]) {
        let is_istio_class = |name: &str| {
            name == "istio"
                || classes.iter().any(|c| {
                    c.metadata.name.as_deref() == Some(name)
                        && c.spec.as_ref().and_then(|s| s.controller.as_deref())
                            == Some(ISTIO_INGRESS_CONTROLLER)
                })
        };
        let default_is_istio = classes.iter().any(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
                && c.spec.as_ref().and_then(|s| s.controller.as_deref())
                    == Some(ISTIO_INGRESS_CONTROLLER)
        });
        for ing in ingresses {
            let class = ing
                .spec
                .as_ref()
                .and_then(|s| s.ingress_class_name.clone())
                .or_else(|| {
                    ing.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION).cloned())
                });
            let mesh = match class.as_deref() {
                Some(c) => is_istio_class(c),
                None => default_is_istio,
            };
            let object = meta_ref(ObjectKind::Ingress, &ing.metadata);
            // Any object makes its namespace known, a mesh Ingress included.
            let ns = self.namespaces.entry(object.namespace.clone()).or_default();
            if mesh {
                continue;
            }
            for backend in ingress_backends(ing) {
                ns.ingress_backends
                    .entry(backend)
                    .or_insert_with(|| object.clone());
            }
        }
    }

    /// Sorts ties oldest first and links Services to the workload PeerAuthentications that select them.
    fn finish(&mut self) {
        self.mesh_policies
            .sort_by_key(|p| age_key(p.created, &p.object.name));
        for ns in self.namespaces.values_mut() {
            ns.wide_peer_auths
                .sort_by_key(|p| age_key(p.created, &p.object.name));
            ns.workload_peer_auths
                .sort_by_key(|p| age_key(p.created, &p.object.name));
            ns.default_policies
                .sort_by_key(|p| age_key(p.created, &p.object.name));
            for targets in ns.policy_targets.values_mut() {
                targets.sort_by_key(|t| age_key(t.policy.created, &t.policy.object.name));
            }
            for svc in ns.services.values_mut() {
                for (i, pa) in ns.workload_peer_auths.iter().enumerate() {
                    let missing = pa
                        .match_labels
                        .iter()
                        .find(|(k, v)| svc.selector.get(*k) != Some(*v));
                    match missing {
                        None => svc.workload_peer_auths.push(i),
                        Some((k, v)) => {
                            // A label the Service selects with another value rules
                            // out every pod; otherwise some pods may match.
                            let disjoint = pa
                                .match_labels
                                .iter()
                                .any(|(k, v)| svc.selector.get(k).is_some_and(|sv| sv != v));
                            if !disjoint && !svc.selector.is_empty() {
                                svc.partial_peer_auths.push((i, format!("{k}={v}")));
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn namespace(&self, name: &str) -> Option<&NamespaceIndex> {
        self.namespaces.get(name)
    }

    /// A namespace is known when a Namespace object or any object in it was seen.
    pub fn knows_namespace(&self, name: &str) -> bool {
        self.namespaces.contains_key(name)
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.namespaces.get(namespace)?.services.get(name)
    }

    pub fn mesh_policies(&self) -> &[Arc<PolicyEntry>] {
        &self.mesh_policies
    }

    /// The mode label of a namespace, if it has a valid one (see [`enforcement::mode_for`]).
    pub fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        self.namespaces.get(namespace)?.mode
    }

    /// The Gateway API part: which Service ports routes attached to Gateways reach.
    pub fn gateway(&self) -> &GatewayIndex {
        &self.gateway
    }

    pub fn counts(&self) -> &ObjectCounts {
        &self.counts
    }

    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

fn policy_entry(kind: ObjectKind, p: &AuthPolicy) -> PolicyEntry {
    PolicyEntry {
        object: meta_ref(kind, &p.metadata),
        created: created(&p.metadata),
        mode: p.spec.mode(),
        peer_without_mtls: p.spec.has_peer_without_mtls(),
    }
}

/// The service names an Ingress sends traffic to.
fn ingress_backends(ing: &Ingress) -> Vec<String> {
    let Some(spec) = ing.spec.as_ref() else {
        return Vec::new();
    };
    let default = spec
        .default_backend
        .iter()
        .filter_map(|b| b.service.as_ref().map(|s| s.name.clone()));
    let paths = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| h.paths.iter())
        .filter_map(|p| p.backend.service.as_ref().map(|s| s.name.clone()));
    default.chain(paths).collect()
}
