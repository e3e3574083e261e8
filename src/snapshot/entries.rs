//! Objects reduced to what a decision reads, each with the notes it causes.

use crate::model::{
    created, AuthPolicy, ObjectKind, ObjectRef, PeerAuthentication, PeerMtlsMode, PolicyMode,
};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Annotation on a Service that marks it as reached through a non-mesh ingress.
pub const INGRESS_EXPOSED_ANNOTATION: &str = "mtls-guard.io/ingress-exposed";
const ISTIO_INGRESS_CONTROLLER: &str = "istio.io/ingress-controller";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Oldest first, then by name; objects without a creation time count as newest.
pub(crate) fn age_cmp(a: (Option<i64>, &str), b: (Option<i64>, &str)) -> Ordering {
    (a.0.is_none(), a.0.unwrap_or(0), a.1).cmp(&(b.0.is_none(), b.0.unwrap_or(0), b.1))
}

pub(crate) fn meta_ref(kind: ObjectKind, meta: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// A v1alpha1 Policy or MeshPolicy reduced to what decides a server mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEntry {
    pub object: ObjectRef,
    pub created: Option<i64>,
    pub mode: PolicyMode,
    /// An element of `peers` has no `mtls` key: probably a dropped YAML null.
    pub peer_without_mtls: bool,
}

impl PolicyEntry {
    pub(crate) fn new(kind: ObjectKind, p: &AuthPolicy) -> PolicyEntry {
        PolicyEntry {
            object: meta_ref(kind, &p.metadata),
            created: created(&p.metadata),
            mode: p.spec.mode(),
            peer_without_mtls: p.spec.has_peer_without_mtls(),
        }
    }

    pub(crate) fn age(&self) -> (Option<i64>, &str) {
        (self.created, &self.object.name)
    }
}

/// A Policy target naming one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTargetEntry {
    pub policy: Arc<PolicyEntry>,
    pub port_numbers: Vec<u32>,
    pub port_names: Vec<String>,
}

/// A stored Policy: the entry and its targets, by service name.
#[derive(Debug, Clone)]
pub(crate) struct StoredPolicy {
    pub entry: Arc<PolicyEntry>,
    pub targets: Vec<(String, PolicyTargetEntry)>,
}

impl StoredPolicy {
    pub(crate) fn new(p: &AuthPolicy) -> (StoredPolicy, Vec<String>) {
        let entry = Arc::new(PolicyEntry::new(ObjectKind::Policy, p));
        let mut notes = Vec::new();
        if p.spec.targets.is_empty() && entry.object.name != "default" {
            notes.push(format!(
                "{}: a Policy without targets counts only when named `default`; ignored",
                entry.object
            ));
        }
        let targets = p
            .spec
            .targets
            .iter()
            .map(|t| {
                let target = PolicyTargetEntry {
                    policy: entry.clone(),
                    port_numbers: t.ports.iter().filter_map(|p| p.number).collect(),
                    port_names: t.ports.iter().filter_map(|p| p.name.clone()).collect(),
                };
                (t.name.clone(), target)
            })
            .collect();
        (StoredPolicy { entry, targets }, notes)
    }

    /// A Policy named `default` without targets: the namespace level.
    pub(crate) fn is_namespace_default(&self) -> bool {
        self.targets.is_empty() && self.entry.object.name == "default"
    }
}

/// The note of a MeshPolicy that is not named `default`.
pub(crate) fn mesh_policy_notes(entry: &PolicyEntry) -> Vec<String> {
    if entry.object.name == "default" {
        return Vec::new();
    }
    vec![format!(
        "{}: only the MeshPolicy named `default` counts; ignored",
        entry.object
    )]
}

/// A PeerAuthentication reduced to what decides a server mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthEntry {
    pub object: ObjectRef,
    pub created: Option<i64>,
    pub match_labels: BTreeMap<String, String>,
    pub mode: PeerMtlsMode,
    /// `portLevelMtls` keyed by target port number.
    pub port_level: BTreeMap<u32, PeerMtlsMode>,
}

impl PeerAuthEntry {
    pub(crate) fn new(pa: &PeerAuthentication) -> (PeerAuthEntry, Vec<String>) {
        let object = meta_ref(ObjectKind::PeerAuthentication, &pa.metadata);
        let mut notes = Vec::new();
        let mut port_level = BTreeMap::new();
        for (key, mtls) in &pa.spec.port_level_mtls {
            match key.parse::<u32>() {
                Ok(port) => {
                    port_level.insert(port, mtls.mode());
                }
                Err(_) => notes.push(format!(
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
        (entry, notes)
    }

    pub(crate) fn age(&self) -> (Option<i64>, &str) {
        (self.created, &self.object.name)
    }

    /// Namespace- or mesh-wide (no selector).
    pub(crate) fn is_wide(&self) -> bool {
        self.match_labels.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A label map kept as one sorted slice: a Service's selector has a label or two,
/// and a `BTreeMap` node for them costs over 500 bytes (issue 6's memory target,
/// with 100,000 Services stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl From<&BTreeMap<String, String>> for Labels {
    fn from(map: &BTreeMap<String, String>) -> Labels {
        // A BTreeMap iterates sorted, as `get` needs.
        Labels(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        )
    }
}

impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

#[derive(Debug, Clone, Default)]
pub struct ServiceEntry {
    pub name: String,
    pub selector: Labels,
    pub ports: Vec<ServicePortEntry>,
    /// Annotated `mtls-guard.io/ingress-exposed: "true"`.
    pub ingress_exposed: bool,
    /// Labelled `istio: ingressgateway`.
    pub is_ingress_gateway: bool,
    /// Workload PeerAuthentications of the namespace whose labels all appear in
    /// this Service's selector, oldest first.
    pub workload_peer_auths: Vec<Arc<PeerAuthEntry>>,
    /// Workload PeerAuthentications that select only some of this Service's pods,
    /// with the first label the Service's selector lacks, oldest first.
    pub partial_peer_auths: Vec<(Arc<PeerAuthEntry>, String)>,
}

impl ServiceEntry {
    pub fn port(&self, number: u32) -> Option<&ServicePortEntry> {
        self.ports.iter().find(|p| p.port == number)
    }

    /// The entry of a Service, not yet linked to PeerAuthentications.
    pub(crate) fn new(s: &Service) -> ServiceEntry {
        let meta = &s.metadata;
        let spec = s.spec.as_ref();
        let ports = spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let port = u32::try_from(p.port).ok()?;
                let target_port = match &p.target_port {
                    Some(IntOrString::Int(n)) => TargetPort::Number(u32::try_from(*n).ok()?),
                    Some(IntOrString::String(s)) => match s.parse::<u32>() {
                        Ok(n) => TargetPort::Number(n),
                        Err(_) => TargetPort::Name(s.clone()),
                    },
                    None => TargetPort::Number(port),
                };
                Some(ServicePortEntry {
                    port,
                    name: p.name.clone(),
                    target_port,
                })
            })
            .collect();
        let annotations = meta.annotations.as_ref();
        let labels = meta.labels.as_ref();
        ServiceEntry {
            name: meta.name.clone().unwrap_or_default(),
            selector: spec
                .and_then(|s| s.selector.as_ref())
                .map(Labels::from)
                .unwrap_or_default(),
            ports,
            ingress_exposed: annotations
                .and_then(|a| a.get(INGRESS_EXPOSED_ANNOTATION))
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            is_ingress_gateway: labels
                .and_then(|l| l.get("istio"))
                .is_some_and(|v| v == "ingressgateway"),
            workload_peer_auths: Vec::new(),
            partial_peer_auths: Vec::new(),
        }
    }

    /// Links the Service to the namespace's workload PeerAuthentications (oldest
    /// first); true when the links changed.
    pub(crate) fn link(&mut self, workload: &[Arc<PeerAuthEntry>]) -> bool {
        match self.links(workload) {
            Some(links) => {
                self.set_links(links);
                true
            }
            None => false,
        }
    }

    /// The links to `workload` (see [`Self::link`]) when they differ from the current ones.
    pub(crate) fn links(&self, workload: &[Arc<PeerAuthEntry>]) -> Option<Links> {
        let mut full = Vec::new();
        let mut partial = Vec::new();
        for pa in workload {
            let missing = pa
                .match_labels
                .iter()
                .find(|(k, v)| self.selector.get(k) != Some(v.as_str()));
            match missing {
                None => full.push(pa.clone()),
                Some((k, v)) => {
                    // A label the Service selects with another value rules
                    // out every pod; otherwise some pods may match.
                    let disjoint = pa
                        .match_labels
                        .iter()
                        .any(|(k, v)| self.selector.get(k).is_some_and(|sv| sv != *v));
                    if !disjoint && !self.selector.is_empty() {
                        partial.push((pa.clone(), format!("{k}={v}")));
                    }
                }
            }
        }
        let same = full.len() == self.workload_peer_auths.len()
            && partial.len() == self.partial_peer_auths.len()
            && full
                .iter()
                .zip(&self.workload_peer_auths)
                .all(|(a, b)| Arc::ptr_eq(a, b))
            && partial
                .iter()
                .zip(&self.partial_peer_auths)
                .all(|(a, b)| Arc::ptr_eq(&a.0, &b.0) && a.1 == b.1);
        (!same).then_some((full, partial))
    }

    pub(crate) fn set_links(&mut self, (full, partial): Links) {
        self.workload_peer_auths = full;
        self.partial_peer_auths = partial;
    }
}

/// A Service's links to workload PeerAuthentications: those selecting all its pods,
/// and those selecting some, with the label the Service lacks.
pub(crate) type Links = (Vec<Arc<PeerAuthEntry>>, Vec<(Arc<PeerAuthEntry>, String)>);

/// An Ingress reduced to its class and the services it sends traffic to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IngressEntry {
    pub object: ObjectRef,
    pub created: Option<i64>,
    /// `spec.ingressClassName`, else the legacy annotation.
    pub class: Option<String>,
    pub backends: Vec<String>,
}

impl IngressEntry {
    pub(crate) fn new(ing: &Ingress) -> IngressEntry {
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
        IngressEntry {
            object: meta_ref(ObjectKind::Ingress, &ing.metadata),
            created: created(&ing.metadata),
            class,
            backends: ingress_backends(ing),
        }
    }

    pub(crate) fn age(&self) -> (Option<i64>, &str) {
        (self.created, &self.object.name)
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
    let mut names: Vec<String> = default.chain(paths).collect();
    names.sort();
    names.dedup();
    names
}

/// What an IngressClass says about the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClassEntry {
    /// `spec.controller` is Istio's.
    pub istio: bool,
    /// Annotated as the cluster's default class.
    pub default: bool,
}

impl ClassEntry {
    pub(crate) fn new(c: &IngressClass) -> ClassEntry {
        ClassEntry {
            istio: c.spec.as_ref().and_then(|s| s.controller.as_deref())
                == Some(ISTIO_INGRESS_CONTROLLER),
            default: c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true"),
        }
    }
}

/// The IngressClasses, as far as they tell mesh from non-mesh Ingresses.
pub(crate) type Classes = imbl::OrdMap<String, ClassEntry>;

/// Whether an Ingress of `class` (none: the default class) is served by Istio.
pub(crate) fn is_mesh_class(classes: &Classes, class: Option<&str>) -> bool {
    match class {
        Some(name) => name == "istio" || classes.get(name).is_some_and(|c| c.istio),
        None => classes.values().any(|c| c.default && c.istio),
    }
}
