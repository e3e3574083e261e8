//! The kinds of object mtls-guard reads (contract section 1), in one table.
//!
//! Everything that needs to know how the API serves a kind (reading objects from
//! files, recognising an admission request, labelling metrics, listing and
//! watching a cluster, the RBAC rules) reads [`KINDS`]. Adding a kind is one entry
//! here, one [`ObjectKind`] variant and its typed model in [`super::MeshObject`].

use super::backend::{ApiService, WebhookConfiguration};
use super::gateway::{RouteKind, GATEWAY_GROUP};
use super::object::read_json;
use super::{AuthPolicy, DestinationRule, MeshObject, PeerAuthentication};
use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Policy,
    MeshPolicy,
    PeerAuthentication,
    DestinationRule,
    Service,
    Ingress,
    IngressClass,
    Namespace,
    HTTPRoute,
    GRPCRoute,
    TLSRoute,
    TCPRoute,
    Gateway,
    GatewayClass,
    ReferenceGrant,
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
    APIService,
}

/// How the API serves one kind, and how to read one of its objects.
#[derive(Debug, Clone, Copy)]
pub struct KindInfo {
    pub kind: ObjectKind,
    /// `kind` as the API writes it.
    pub name: &'static str,
    /// The API group; empty for the core group.
    pub group: &'static str,
    /// The versions read, oldest first; they share one schema.
    pub versions: &'static [&'static str],
    /// The resource name in API paths and RBAC rules.
    pub plural: &'static str,
    pub namespaced: bool,
    /// Whether the validating webhook reviews a change to one of these objects for
    /// the stored DestinationRules it breaks or leaves behind (contract section 8).
    pub changes_reviewed: bool,
    /// Reads an object of this kind (any of `versions`) into its typed view.
    pub read: fn(Value) -> Result<MeshObject, serde_json::Error>,
}

/// Every kind mtls-guard reads, in [`ObjectKind`] order.
pub static KINDS: &[KindInfo] = &[
    KindInfo {
        kind: ObjectKind::Policy,
        name: "Policy",
        group: "authentication.istio.io",
        versions: &["v1alpha1"],
        plural: "policies",
        namespaced: true,
        changes_reviewed: true,
        read: |v| read_json::<AuthPolicy>(v).map(MeshObject::Policy),
    },
    KindInfo {
        kind: ObjectKind::MeshPolicy,
        name: "MeshPolicy",
        group: "authentication.istio.io",
        versions: &["v1alpha1"],
        plural: "meshpolicies",
        namespaced: false,
        changes_reviewed: true,
        read: |v| read_json::<AuthPolicy>(v).map(MeshObject::MeshPolicy),
    },
    KindInfo {
        kind: ObjectKind::PeerAuthentication,
        name: "PeerAuthentication",
        group: "security.istio.io",
        versions: &["v1beta1", "v1"],
        plural: "peerauthentications",
        namespaced: true,
        changes_reviewed: true,
        read: |v| read_json::<PeerAuthentication>(v).map(MeshObject::PeerAuthentication),
    },
    KindInfo {
        kind: ObjectKind::DestinationRule,
        name: "DestinationRule",
        group: "networking.istio.io",
        versions: &["v1alpha3", "v1beta1", "v1"],
        plural: "destinationrules",
        namespaced: true,
        changes_reviewed: false,
        // The raw object is kept: the mutating webhook patches it.
        read: |v| {
            let typed = DestinationRule::deserialize_from(&v)?;
            Ok(MeshObject::DestinationRule(Box::new(typed), v))
        },
    },
    KindInfo {
        kind: ObjectKind::Service,
        name: "Service",
        group: "",
        versions: &["v1"],
        plural: "services",
        namespaced: true,
        changes_reviewed: true,
        read: |v| read_json(v).map(MeshObject::Service),
    },
    KindInfo {
        kind: ObjectKind::Ingress,
        name: "Ingress",
        group: "networking.k8s.io",
        versions: &["v1"],
        plural: "ingresses",
        namespaced: true,
        changes_reviewed: true,
        read: |v| read_json(v).map(MeshObject::Ingress),
    },
    KindInfo {
        kind: ObjectKind::IngressClass,
        name: "IngressClass",
        group: "networking.k8s.io",
        versions: &["v1"],
        plural: "ingressclasses",
        namespaced: false,
        changes_reviewed: true,
        read: |v| read_json(v).map(MeshObject::IngressClass),
    },
    KindInfo {
        kind: ObjectKind::Namespace,
        name: "Namespace",
        group: "",
        versions: &["v1"],
        plural: "namespaces",
        namespaced: false,
        changes_reviewed: false,
        read: |v| read_json(v).map(MeshObject::Namespace),
    },
    // Gateway API (contract section 4 (c)): every version a cluster may serve. TLSRoute
    // and TCPRoute went from v1alpha2 through v1alpha3 to v1; the fields read did not
    // change between versions.
    KindInfo {
        kind: ObjectKind::HTTPRoute,
        name: "HTTPRoute",
        group: GATEWAY_GROUP,
        versions: &["v1alpha2", "v1beta1", "v1"],
        plural: "httproutes",
        namespaced: true,
        changes_reviewed: true,
        read: |v| read_json(v).map(|r| MeshObject::Route(RouteKind::Http, r)),
    },
    KindInfo {
        kind: ObjectKind::GRPCRoute,
        name: "GRPCRoute",
        group: GATEWAY_GROUP,
        versions: &["v1alpha2", "v1"],
        plural: "grpcroutes",
        namespaced: true,
        changes_reviewed: true,
        read: |v| read_json(v).map(|r| MeshObject::Route(RouteKind::Grpc, r)),
    },
    KindInfo {
        kind: ObjectKind::TLSRoute,
        name: "TLSRoute",
        group: GATEWAY_GROUP,
        versions: &["v1alpha2", "v1alpha3", "v1"],
        plural: "tlsroutes",
        namespaced: true,
        changes_reviewed: true,
        read: |v| read_json(v).map(|r| MeshObject::Route(RouteKind::Tls, r)),
    },
    KindInfo {
        kind: ObjectKind::TCPRoute,
        name: "TCPRoute",
        group: GATEWAY_GROUP,
        versions: &["v1alpha2", "v1alpha3", "v1"],
        plural: "tcproutes",
        namespaced: true,
        changes_reviewed: true,
        read: |v| read_json(v).map(|r| MeshObject::Route(RouteKind::Tcp, r)),
    },
    KindInfo {
        kind: ObjectKind::Gateway,
        name: "Gateway",
        group: GATEWAY_GROUP,
        versions: &["v1alpha2", "v1beta1", "v1"],
        plural: "gateways",
        namespaced: true,
        changes_reviewed: true,
        read: |v| read_json(v).map(MeshObject::Gateway),
    },
    KindInfo {
        kind: ObjectKind::GatewayClass,
        name: "GatewayClass",
        group: GATEWAY_GROUP,
        versions: &["v1alpha2", "v1beta1", "v1"],
        plural: "gatewayclasses",
        namespaced: false,
        changes_reviewed: true,
        read: |v| read_json(v).map(MeshObject::GatewayClass),
    },
    KindInfo {
        kind: ObjectKind::ReferenceGrant,
        name: "ReferenceGrant",
        group: GATEWAY_GROUP,
        versions: &["v1alpha2", "v1beta1", "v1"],
        plural: "referencegrants",
        namespaced: true,
        changes_reviewed: true,
        read: |v| read_json(v).map(MeshObject::ReferenceGrant),
    },
    // Who the API server calls in plaintext (contract section 8): read for the Services
    // they call; their own changes are not reviewed.
    KindInfo {
        kind: ObjectKind::MutatingWebhookConfiguration,
        name: "MutatingWebhookConfiguration",
        group: "admissionregistration.k8s.io",
        versions: &["v1"],
        plural: "mutatingwebhookconfigurations",
        namespaced: false,
        changes_reviewed: false,
        read: |v| {
            read_json::<WebhookConfiguration>(v).map(|c| {
                MeshObject::Webhooks(ObjectKind::MutatingWebhookConfiguration, Box::new(c))
            })
        },
    },
    KindInfo {
        kind: ObjectKind::ValidatingWebhookConfiguration,
        name: "ValidatingWebhookConfiguration",
        group: "admissionregistration.k8s.io",
        versions: &["v1"],
        plural: "validatingwebhookconfigurations",
        namespaced: false,
        changes_reviewed: false,
        read: |v| {
            read_json::<WebhookConfiguration>(v).map(|c| {
                MeshObject::Webhooks(ObjectKind::ValidatingWebhookConfiguration, Box::new(c))
            })
        },
    },
    KindInfo {
        kind: ObjectKind::APIService,
        name: "APIService",
        group: "apiregistration.k8s.io",
        versions: &["v1"],
        plural: "apiservices",
        namespaced: false,
        changes_reviewed: false,
        read: |v| read_json::<ApiService>(v).map(|s| MeshObject::APIService(Box::new(s))),
    },
];

impl KindInfo {
    /// `group/version` as `apiVersion` writes it (`v1` for the core group).
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }
}

impl ObjectKind {
    /// Every kind, in table order.
    pub fn all() -> impl Iterator<Item = ObjectKind> {
        KINDS.iter().map(|k| k.kind)
    }

    /// This kind's row of [`KINDS`].
    pub fn info(self) -> &'static KindInfo {
        &KINDS[self as usize]
    }

    /// `kind` as the API writes it.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The kind for an `apiVersion`/`kind` pair, if it is one mtls-guard reads in that version.
    pub fn of(api_version: &str, kind: &str) -> Option<ObjectKind> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        KINDS
            .iter()
            .find(|k| k.name == kind && k.group == group && k.versions.contains(&version))
            .map(|k| k.kind)
    }

    /// The kind for a group and kind in any version (an admission request's `kind`).
    pub fn of_group_kind(group: &str, kind: &str) -> Option<ObjectKind> {
        KINDS
            .iter()
            .find(|k| k.name == kind && k.group == group)
            .map(|k| k.kind)
    }

    /// The kind named `kind` in some group, as a metric label or a message names it.
    pub fn named(kind: &str) -> Option<ObjectKind> {
        KINDS.iter().find(|k| k.name == kind).map(|k| k.kind)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_are_in_kind_order_and_unique() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(k.kind as usize, i, "{} is out of place", k.name);
            assert_eq!(format!("{:?}", k.kind), k.name);
            assert!(!k.versions.is_empty() && !k.plural.is_empty());
            assert_eq!(k.plural, k.plural.to_ascii_lowercase());
        }
        let mut names: Vec<(&str, &str)> = KINDS.iter().map(|k| (k.group, k.name)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
    }

    #[test]
    fn kinds_are_recognised_only_in_the_versions_read() {
        assert_eq!(
            ObjectKind::of("networking.istio.io/v1alpha3", "DestinationRule"),
            Some(ObjectKind::DestinationRule)
        );
        assert_eq!(ObjectKind::of("v1", "Service"), Some(ObjectKind::Service));
        assert_eq!(
            ObjectKind::of("security.istio.io/v1alpha1", "PeerAuthentication"),
            None
        );
        assert_eq!(ObjectKind::of("apps/v1", "Service"), None);
        assert_eq!(ObjectKind::of("v1", "ConfigMap"), None);
        assert_eq!(
            ObjectKind::of_group_kind("authentication.istio.io", "MeshPolicy"),
            Some(ObjectKind::MeshPolicy)
        );
        assert_eq!(
            ObjectKind::Ingress.info().api_version("v1"),
            "networking.k8s.io/v1"
        );
        assert_eq!(ObjectKind::Namespace.info().api_version("v1"), "v1");
    }
}
