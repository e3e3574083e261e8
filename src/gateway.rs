//! Gateway API attachment (contract section 4, case (c)): which Service ports are
//! backends of a route attached to a Gateway, and through which route and Gateway.
//!
//! Pure: objects in, an index out. The index keeps every Gateway parent with its
//! class's controller name and leaves out nothing but what the contract says does
//! not count (Service parents, missing Gateways or GatewayClasses, routes a
//! listener does not admit or whose status says the parent rejected them, weight
//! 0, cross-namespace backends without a ReferenceGrant). Whether a controller is
//! the mesh's is a setting (`--mesh-gateway-controller`), so the decision filters
//! by it: the snapshot stays independent of the settings.
//!
//! Updates recompute the whole index from the stored Gateway API objects (see
//! [`GatewayIndex::apply`]): one pass over the routes, each looking up its parents
//! and grants in maps. That costs microseconds per route, and Gateway API objects
//! are few next to Services and rules; a per-route incremental index can replace it
//! if a cluster with very many routes needs it.

use crate::model::gateway::{
    BackendObjectRef, FromNamespaces, Gateway, GatewayClass, Listener, ParentRef, ReferenceGrant,
    Route, RouteKind,
};
use crate::model::{MeshObject, ObjectKind, ObjectRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The label the API server puts on every Namespace (so a Namespace read from a
/// file has it too, as it would in the cluster).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Every controller whose name starts with this is Istio's (gateway, waypoint,
/// east-west and remote classes).
pub const ISTIO_CONTROLLER_PREFIX: &str = "istio.io/";

/// One way a Service port is reached through a Gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GatewayBackend {
    /// The route, as `Kind namespace/name`.
    pub route: ObjectRef,
    /// The Gateway the route is attached to.
    pub gateway: ObjectRef,
    /// `spec.controllerName` of the Gateway's class.
    pub controller: String,
}

type Key = (String, String);

/// The stored Gateway API objects and the backends they attach, kept together so
/// that the backends are always those of the objects.
#[derive(Debug, Clone, Default)]
pub struct GatewayIndex {
    routes: BTreeMap<(RouteKind, String, String), Arc<Route>>,
    gateways: HashMap<Key, Arc<Gateway>>,
    classes: HashMap<String, Arc<GatewayClass>>,
    /// By namespace, then name.
    grants: HashMap<String, BTreeMap<String, Arc<ReferenceGrant>>>,
    /// Labels of every Namespace seen (for `allowedRoutes.namespaces.from: Selector`).
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    /// namespace -> service -> port -> every route and Gateway reaching it, sorted.
    backends: HashMap<String, HashMap<String, BTreeMap<u32, Vec<GatewayBackend>>>>,
}

fn key(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl GatewayIndex {
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a MeshObject>) -> GatewayIndex {
        let mut index = GatewayIndex::default();
        for obj in objects {
            index.stage(obj);
        }
        index.finish();
        index
    }

    /// Whether the index reads objects of `kind` (the Gateway API kinds and Namespaces).
    pub fn reads(kind: ObjectKind) -> bool {
        matches!(
            kind,
            ObjectKind::HTTPRoute
                | ObjectKind::GRPCRoute
                | ObjectKind::TLSRoute
                | ObjectKind::TCPRoute
                | ObjectKind::Gateway
                | ObjectKind::GatewayClass
                | ObjectKind::ReferenceGrant
                | ObjectKind::Namespace
        )
    }

    /// Upserts one object; other kinds are ignored. The backends are recomputed
    /// whole (cheap: see the module doc); a Namespace only when a listener selects
    /// namespaces by label, the only thing its labels decide.
    pub fn apply(&mut self, obj: &MeshObject) {
        if !self.stage(obj) {
            return;
        }
        if obj.kind() != ObjectKind::Namespace || self.selects_namespaces() {
            self.finish();
        }
    }

    /// Removes one object of `kind`.
    pub fn delete(&mut self, kind: ObjectKind, namespace: &str, name: &str) {
        let k = (namespace.to_string(), name.to_string());
        let removed = match kind {
            ObjectKind::Gateway => self.gateways.remove(&k).is_some(),
            ObjectKind::GatewayClass => self.classes.remove(name).is_some(),
            ObjectKind::ReferenceGrant => self
                .grants
                .get_mut(namespace)
                .and_then(|g| g.remove(name))
                .is_some(),
            ObjectKind::Namespace => {
                self.namespace_labels.remove(name).is_some() && self.selects_namespaces()
            }
            other => match RouteKind::of(other) {
                Some(rk) => self.routes.remove(&(rk, k.0, k.1)).is_some(),
                None => false,
            },
        };
        if removed {
            self.finish();
        }
    }

    /// Replaces every object of `kind` (a re-list).
    pub fn reset(&mut self, kind: ObjectKind, objects: &[MeshObject]) {
        if !Self::reads(kind) {
            return;
        }
        match kind {
            ObjectKind::Gateway => self.gateways.clear(),
            ObjectKind::GatewayClass => self.classes.clear(),
            ObjectKind::ReferenceGrant => self.grants.clear(),
            ObjectKind::Namespace => self.namespace_labels.clear(),
            other => {
                let rk = RouteKind::of(other);
                self.routes.retain(|(k, _, _), _| Some(*k) != rk);
            }
        }
        for obj in objects.iter().filter(|o| o.kind() == kind) {
            self.stage(obj);
        }
        self.finish();
    }

    /// Stores one object without recomputing (call [`Self::finish`] after a batch);
    /// false for kinds the index does not read.
    pub(crate) fn stage(&mut self, obj: &MeshObject) -> bool {
        match obj {
            MeshObject::Route(kind, r) => {
                let (ns, name) = key(&r.metadata);
                self.routes
                    .insert((*kind, ns, name), Arc::new((**r).clone()));
            }
            MeshObject::Gateway(g) => {
                self.gateways
                    .insert(key(&g.metadata), Arc::new((**g).clone()));
            }
            MeshObject::GatewayClass(c) => {
                let name = c.metadata.name.clone().unwrap_or_default();
                self.classes.insert(name, Arc::new((**c).clone()));
            }
            MeshObject::ReferenceGrant(g) => {
                let (ns, name) = key(&g.metadata);
                self.grants
                    .entry(ns)
                    .or_default()
                    .insert(name, Arc::new((**g).clone()));
            }
            MeshObject::Namespace(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                let mut labels = n.metadata.labels.clone().unwrap_or_default();
                labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
                self.namespace_labels.insert(name, labels);
            }
            _ => return false,
        }
        true
    }

    fn selects_namespaces(&self) -> bool {
        self.gateways.values().any(|g| {
            g.spec
                .listeners
                .iter()
                .any(|l| l.allowed_routes.namespaces.from == FromNamespaces::Selector)
        })
    }

    /// Every route and Gateway that reach `namespace/service` on Service port `port`,
    /// mesh gateways included (the caller knows which controllers are the mesh's).
    pub fn backends(&self, namespace: &str, service: &str, port: u32) -> &[GatewayBackend] {
        self.backends
            .get(namespace)
            .and_then(|n| n.get(service))
            .and_then(|s| s.get(&port))
            .map_or(&[], Vec::as_slice)
    }

    /// The services (namespace, name) whose routes and Gateways differ between this
    /// index and `other`, sorted: those a change to a Gateway API object can affect
    /// (contract section 8).
    pub fn changed_services(&self, other: &GatewayIndex) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut diff = |a: &GatewayIndex, b: &GatewayIndex| {
            for (ns, services) in &a.backends {
                let theirs = b.backends.get(ns);
                for (name, ports) in services {
                    if theirs.and_then(|t| t.get(name)) != Some(ports) {
                        out.push((ns.clone(), name.clone()));
                    }
                }
            }
        };
        diff(self, other);
        diff(other, self);
        out.sort();
        out.dedup();
        out
    }

    /// Number of (namespace, service, port) reached through some Gateway.
    pub fn backend_ports(&self) -> usize {
        self.backends
            .values()
            .flat_map(HashMap::values)
            .map(BTreeMap::len)
            .sum()
    }

    /// Recomputes the backends from the stored objects.
    pub(crate) fn finish(&mut self) {
        let mut backends: HashMap<String, HashMap<String, BTreeMap<u32, Vec<GatewayBackend>>>> =
            HashMap::new();
        for ((kind, ns, name), route) in &self.routes {
            let route_ref = ObjectRef {
                kind: kind.object_kind(),
                namespace: ns.clone(),
                name: name.clone(),
            };
            let gateways: Vec<(ObjectRef, &str)> = route
                .spec
                .parent_refs
                .iter()
                .filter_map(|p| self.attached_gateway(*kind, ns, route, p))
                .collect();
            if gateways.is_empty() {
                continue;
            }
            for target in route_backends(route) {
                let Some((svc_ns, svc, port)) = self.service_backend(*kind, ns, target) else {
                    continue;
                };
                let entry = backends
                    .entry(svc_ns)
                    .or_default()
                    .entry(svc)
                    .or_default()
                    .entry(port)
                    .or_default();
                for (gateway, controller) in &gateways {
                    entry.push(GatewayBackend {
                        route: route_ref.clone(),
                        gateway: gateway.clone(),
                        controller: controller.to_string(),
                    });
                }
            }
        }
        for list in backends
            .values_mut()
            .flat_map(HashMap::values_mut)
            .flat_map(BTreeMap::values_mut)
        {
            list.sort();
            list.dedup();
        }
        self.backends = backends;
    }

    /// The Gateway `parent` names, with its class's controller, when the route is
    /// attached to it (section 4 (c), "attached").
    fn attached_gateway<'a>(
        &'a self,
        kind: RouteKind,
        route_ns: &str,
        route: &Route,
        parent: &ParentRef,
    ) -> Option<(ObjectRef, &'a str)> {
        if !parent.is_gateway() {
            return None;
        }
        let gw_ns = parent.namespace(route_ns);
        let gateway = self
            .gateways
            .get(&(gw_ns.to_string(), parent.name.clone()))?;
        let class = self.classes.get(&gateway.spec.gateway_class_name)?;
        if route.rejected_by(parent) {
            return None;
        }
        let admitted = gateway.spec.listeners.iter().any(|l| {
            parent.section_name.as_ref().is_none_or(|s| *s == l.name)
                && parent.port.is_none_or(|p| p == l.port)
                && l.admits_kind(kind)
                && self.admits_namespace(l, gw_ns, route_ns)
        });
        admitted.then(|| {
            (
                ObjectRef {
                    kind: ObjectKind::Gateway,
                    namespace: gw_ns.to_string(),
                    name: parent.name.clone(),
                },
                class.spec.controller_name.as_str(),
            )
        })
    }

    fn admits_namespace(&self, listener: &Listener, gateway_ns: &str, route_ns: &str) -> bool {
        let from = &listener.allowed_routes.namespaces;
        match from.from {
            FromNamespaces::Same => gateway_ns == route_ns,
            FromNamespaces::All => true,
            FromNamespaces::Selector => {
                let fallback;
                let labels = match self.namespace_labels.get(route_ns) {
                    Some(l) => l,
                    None => {
                        // A namespace known only through its objects still has its name label.
                        fallback = BTreeMap::from([(
                            NAMESPACE_NAME_LABEL.to_string(),
                            route_ns.to_string(),
                        )]);
                        &fallback
                    }
                };
                from.selector
                    .as_ref()
                    .is_some_and(|s| selector_matches(s, labels))
            }
        }
    }

    /// `(namespace, name, port)` of a backend that names a Service the route may
    /// reach: in its own namespace, or in another through a ReferenceGrant there.
    fn service_backend(
        &self,
        kind: RouteKind,
        route_ns: &str,
        target: &BackendObjectRef,
    ) -> Option<(String, String, u32)> {
        if !target.is_service() || target.name.is_empty() {
            return None;
        }
        let port = u32::try_from(target.port?).ok().filter(|p| *p > 0)?;
        let ns = target.namespace(route_ns);
        if ns != route_ns {
            let granted = self
                .grants
                .get(ns)
                .is_some_and(|g| g.values().any(|g| g.allows(kind, route_ns, &target.name)));
            if !granted {
                return None;
            }
        }
        Some((ns.to_string(), target.name.clone(), port))
    }
}

/// The objects a route sends traffic to: backends of positive weight, and the
/// backends of RequestMirror filters (on a rule, or on a backend that gets traffic).
fn route_backends(route: &Route) -> impl Iterator<Item = &BackendObjectRef> {
    route.spec.rules.iter().flat_map(|rule| {
        let weighted = rule.backend_refs.iter().filter(|b| b.weight() > 0);
        let direct = weighted.clone().map(|b| &b.target);
        let backend_mirrors = weighted
            .flat_map(|b| b.filters.iter())
            .filter_map(|f| f.mirror_backend());
        let rule_mirrors = rule.filters.iter().filter_map(|f| f.mirror_backend());
        direct.chain(backend_mirrors).chain(rule_mirrors)
    })
}

/// A Kubernetes label selector over `labels`; an empty selector matches everything.
fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && selector.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether `controller` is one of the mesh's: Istio's prefix or a name the operator gave.
pub fn is_mesh_controller(controller: &str, configured: &[String]) -> bool {
    controller.starts_with(ISTIO_CONTROLLER_PREFIX) || configured.iter().any(|c| c == controller)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> MeshObject {
        MeshObject::from_value(v).unwrap().unwrap()
    }

    #[test]
    fn selector_operators() {
        let labels = BTreeMap::from([("team".to_string(), "shop".to_string())]);
        let sel = |v: serde_json::Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
        assert!(selector_matches(&sel(json!({})), &labels));
        assert!(selector_matches(
            &sel(json!({"matchLabels": {"team": "shop"}})),
            &labels
        ));
        assert!(!selector_matches(
            &sel(json!({"matchLabels": {"team": "ops"}})),
            &labels
        ));
        for (op, values, expected) in [
            ("In", json!(["shop", "ops"]), true),
            ("In", json!(["ops"]), false),
            ("NotIn", json!(["ops"]), true),
            ("NotIn", json!(["shop"]), false),
            ("Exists", json!(null), true),
            ("DoesNotExist", json!(null), false),
            ("Bogus", json!(null), false),
        ] {
            let s = sel(
                json!({"matchExpressions": [{"key": "team", "operator": op, "values": values}]}),
            );
            assert_eq!(selector_matches(&s, &labels), expected, "{op}");
        }
    }

    #[test]
    fn delete_and_reset_recompute() {
        let class = obj(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "envoy"}, "spec": {"controllerName": "example.com/gw"}}),
        );
        let gw = obj(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "public", "namespace": "web"},
            "spec": {"gatewayClassName": "envoy", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        );
        let route = obj(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "front", "namespace": "web"},
            "spec": {"parentRefs": [{"name": "public"}], "rules": [{"backendRefs": [{"name": "front", "port": 8080}]}]}}),
        );
        let mut index = GatewayIndex::default();
        for o in [&class, &gw, &route] {
            index.apply(o);
        }
        assert_eq!(index.backends("web", "front", 8080).len(), 1);
        index.delete(ObjectKind::Gateway, "web", "public");
        assert!(index.backends("web", "front", 8080).is_empty());
        index.reset(ObjectKind::Gateway, std::slice::from_ref(&gw));
        assert_eq!(index.backends("web", "front", 8080).len(), 1);
        index.reset(ObjectKind::HTTPRoute, &[]);
        assert_eq!(index.backend_ports(), 0);
    }
}
