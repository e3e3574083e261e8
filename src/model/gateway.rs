//! Gateway API (`gateway.networking.k8s.io`) objects, reduced to what contract
//! section 4 case (c) reads: which Services a route sends traffic to, which
//! Gateways it attaches to, and who runs those Gateways.
//!
//! One model serves every served version (v1, v1beta1, and v1alpha2/v1alpha3 for
//! TLSRoute and TCPRoute): the fields read here did not change between them. The
//! API server fills the schema defaults in (`group`, `kind`, `weight`,
//! `allowedRoutes`); files written by hand leave them out, so every default is
//! applied here too.

use super::{null_default, ObjectKind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Deserialize;

/// The API group of every Gateway API kind, and the default group of a parentRef.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The four route kinds whose backends case (c) exempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    Http,
    Grpc,
    Tls,
    Tcp,
}

impl RouteKind {
    /// The Kubernetes `kind`, as ReferenceGrants and `allowedRoutes.kinds` name it.
    pub fn as_str(self) -> &'static str {
        self.object_kind().name()
    }

    pub fn object_kind(self) -> ObjectKind {
        match self {
            RouteKind::Http => ObjectKind::HTTPRoute,
            RouteKind::Grpc => ObjectKind::GRPCRoute,
            RouteKind::Tls => ObjectKind::TLSRoute,
            RouteKind::Tcp => ObjectKind::TCPRoute,
        }
    }

    /// The route kind of an object kind, if it is one.
    pub fn of(kind: ObjectKind) -> Option<RouteKind> {
        Some(match kind {
            ObjectKind::HTTPRoute => RouteKind::Http,
            ObjectKind::GRPCRoute => RouteKind::Grpc,
            ObjectKind::TLSRoute => RouteKind::Tls,
            ObjectKind::TCPRoute => RouteKind::Tcp,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RouteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTPRoute, GRPCRoute, TLSRoute or TCPRoute: the kind is kept beside it by
/// [`super::MeshObject`], since the same fields are read from all four.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Route {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: RouteSpec,
    #[serde(default, deserialize_with = "null_default")]
    pub status: RouteStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub parent_refs: Vec<ParentRef>,
    #[serde(default, deserialize_with = "null_default")]
    pub rules: Vec<RouteRule>,
}

/// A route's parent: a Gateway (the defaults) or, for mesh routing (GAMMA), a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Absent means `gateway.networking.k8s.io`.
    #[serde(default)]
    pub group: Option<String>,
    /// Absent means `Gateway`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Absent means the route's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: String,
    /// Picks the listener of that name.
    #[serde(default)]
    pub section_name: Option<String>,
    /// Picks the listeners on that port.
    #[serde(default)]
    pub port: Option<i32>,
}

impl ParentRef {
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(GATEWAY_GROUP)
    }

    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("Gateway")
    }

    /// The parent's namespace, given the route's.
    pub fn namespace<'a>(&'a self, route_namespace: &'a str) -> &'a str {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(route_namespace)
    }

    /// A Gateway, as opposed to a Service (mesh routing) or another kind.
    pub fn is_gateway(&self) -> bool {
        self.group() == GATEWAY_GROUP && self.kind() == "Gateway"
    }

    /// Whether two references name the same parent section, defaults applied
    /// (a route status repeats the spec's reference, filled in by its controller).
    pub fn same_as(&self, other: &ParentRef, route_namespace: &str) -> bool {
        self.group() == other.group()
            && self.kind() == other.kind()
            && self.namespace(route_namespace) == other.namespace(route_namespace)
            && self.name == other.name
            && self.section_name == other.section_name
            && self.port == other.port
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    #[serde(default, deserialize_with = "null_default")]
    pub backend_refs: Vec<BackendRef>,
    /// Rule filters (HTTPRoute, GRPCRoute): only `RequestMirror` matters here.
    #[serde(default, deserialize_with = "null_default")]
    pub filters: Vec<RouteFilter>,
}

/// A backend of a rule; the group/kind defaults (`""`, `Service`) name a Service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    #[serde(flatten)]
    pub target: BackendObjectRef,
    /// Absent means 1; a backend of weight 0 carries no traffic.
    #[serde(default)]
    pub weight: Option<i32>,
    /// Per-backend filters (HTTPRoute, GRPCRoute).
    #[serde(default, deserialize_with = "null_default")]
    pub filters: Vec<RouteFilter>,
}

impl BackendRef {
    pub fn weight(&self) -> i32 {
        self.weight.unwrap_or(1)
    }
}

/// The object a backendRef or a mirror filter names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct BackendObjectRef {
    /// Absent means the core group `""`.
    #[serde(default)]
    pub group: Option<String>,
    /// Absent means `Service`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    /// Absent means the route's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The Service port; required for a Service by the API's validation.
    #[serde(default)]
    pub port: Option<i32>,
}

impl BackendObjectRef {
    /// A core Service, the defaults.
    pub fn is_service(&self) -> bool {
        self.group.as_deref().unwrap_or("").is_empty()
            && self.kind.as_deref().unwrap_or("Service") == "Service"
    }

    pub fn namespace<'a>(&'a self, route_namespace: &'a str) -> &'a str {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(route_namespace)
    }
}

/// A route filter; only the backend of a `RequestMirror` is read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteFilter {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub request_mirror: Option<RequestMirror>,
}

impl RouteFilter {
    /// The backend this filter mirrors requests to, if it is a RequestMirror.
    pub fn mirror_backend(&self) -> Option<&BackendObjectRef> {
        if self.kind != "RequestMirror" {
            return None;
        }
        self.request_mirror.as_ref().map(|m| &m.backend_ref)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMirror {
    #[serde(default)]
    pub backend_ref: BackendObjectRef,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteStatus {
    #[serde(default, deserialize_with = "null_default")]
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    #[serde(default)]
    pub parent_ref: ParentRef,
    #[serde(default)]
    pub controller_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub conditions: Vec<StatusCondition>,
}

/// A status condition, read leniently: hand-written or exported files may lack
/// the fields the API server requires (`lastTransitionTime`, `reason`...).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatusCondition {
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub status: String,
}

impl RouteParentStatus {
    /// The parent said it did not accept the route (`Accepted: False`).
    pub fn rejected(&self) -> bool {
        self.conditions
            .iter()
            .any(|c| c.type_ == "Accepted" && c.status == "False")
    }
}

impl Route {
    /// Whether the route's status says `parent` did not accept it.
    pub fn rejected_by(&self, parent: &ParentRef) -> bool {
        let ns = self.metadata.namespace.as_deref().unwrap_or_default();
        self.status
            .parents
            .iter()
            .any(|s| s.parent_ref.same_as(parent, ns) && s.rejected())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Gateway {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: GatewaySpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default)]
    pub gateway_class_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub port: i32,
    #[serde(default)]
    pub protocol: String,
    /// Absent means routes from the Gateway's own namespace, of the protocol's kinds.
    #[serde(default, deserialize_with = "null_default")]
    pub allowed_routes: AllowedRoutes,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AllowedRoutes {
    #[serde(default, deserialize_with = "null_default")]
    pub namespaces: RouteNamespaces,
    /// Empty means the kinds of the listener's protocol.
    #[serde(default, deserialize_with = "null_default")]
    pub kinds: Vec<RouteGroupKind>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteNamespaces {
    #[serde(default, deserialize_with = "null_default")]
    pub from: FromNamespaces,
    /// Used with `from: Selector`, over the route namespace's labels.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum FromNamespaces {
    All,
    Selector,
    #[default]
    Same,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RouteGroupKind {
    /// Absent means `gateway.networking.k8s.io`.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: String,
}

impl RouteGroupKind {
    pub fn admits(&self, kind: RouteKind) -> bool {
        self.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
            && self.kind == kind.as_str()
    }
}

impl Listener {
    /// Whether this listener admits routes of `kind` (section 4 (c): the listed kinds,
    /// else HTTPRoute and GRPCRoute for HTTP and HTTPS, TLSRoute for TLS, TCPRoute for TCP).
    pub fn admits_kind(&self, kind: RouteKind) -> bool {
        if !self.allowed_routes.kinds.is_empty() {
            return self.allowed_routes.kinds.iter().any(|k| k.admits(kind));
        }
        matches!(
            (self.protocol.as_str(), kind),
            ("HTTP" | "HTTPS", RouteKind::Http | RouteKind::Grpc)
                | ("TLS", RouteKind::Tls)
                | ("TCP", RouteKind::Tcp)
        )
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GatewayClass {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: GatewayClassSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    #[serde(default)]
    pub controller_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReferenceGrant {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: ReferenceGrantSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReferenceGrantSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub from: Vec<ReferenceGrantFrom>,
    #[serde(default, deserialize_with = "null_default")]
    pub to: Vec<ReferenceGrantTo>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReferenceGrantFrom {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReferenceGrantTo {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    /// Absent: every object of that group and kind in the grant's namespace.
    #[serde(default)]
    pub name: Option<String>,
}

impl ReferenceGrant {
    /// Whether this grant (standing in the Service's namespace) lets a route of `kind`
    /// in `route_namespace` refer to Service `service` (section 4 (c)).
    pub fn allows(&self, kind: RouteKind, route_namespace: &str, service: &str) -> bool {
        let from = self.spec.from.iter().any(|f| {
            f.group == GATEWAY_GROUP && f.kind == kind.as_str() && f.namespace == route_namespace
        });
        from && self.spec.to.iter().any(|t| {
            t.group.is_empty()
                && t.kind == "Service"
                && t.name
                    .as_deref()
                    .is_none_or(|n| n.is_empty() || n == service)
        })
    }
}
