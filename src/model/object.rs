//! One enum over every kind of object the snapshot holds, read from JSON.

use super::backend::{ApiService, WebhookConfiguration};
use super::gateway::{Gateway, GatewayClass, ReferenceGrant, Route, RouteKind};
use super::{AuthPolicy, DestinationRule, ObjectKind, PeerAuthentication};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A typed object of one of the kinds in the contract's table 1 (see [`super::KINDS`]).
#[derive(Debug, Clone)]
pub enum MeshObject {
    Policy(AuthPolicy),
    MeshPolicy(AuthPolicy),
    PeerAuthentication(PeerAuthentication),
    /// The typed view and the raw object it was read from.
    DestinationRule(Box<DestinationRule>, Value),
    Service(Box<Service>),
    Ingress(Box<Ingress>),
    IngressClass(Box<IngressClass>),
    Namespace(Box<Namespace>),
    /// An HTTPRoute, GRPCRoute, TLSRoute or TCPRoute.
    Route(RouteKind, Box<Route>),
    Gateway(Box<Gateway>),
    GatewayClass(Box<GatewayClass>),
    ReferenceGrant(Box<ReferenceGrant>),
    /// A Mutating- or ValidatingWebhookConfiguration (the kind says which).
    Webhooks(ObjectKind, Box<WebhookConfiguration>),
    APIService(Box<ApiService>),
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("object has no string `apiVersion` and `kind`")]
    MissingType,
    #[error("{kind} {name}: {source}")]
    Invalid {
        kind: ObjectKind,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

impl MeshObject {
    /// The object's name (empty when it has none).
    pub fn name(&self) -> &str {
        match self {
            MeshObject::DestinationRule(r, _) => r.metadata.name.as_deref(),
            other => other.metadata().and_then(|m| m.name.as_deref()),
        }
        .unwrap_or_default()
    }

    /// The object's namespace (empty for cluster-scoped objects).
    pub fn namespace(&self) -> &str {
        match self {
            MeshObject::DestinationRule(r, _) => r.metadata.namespace.as_deref(),
            other => other.metadata().and_then(|m| m.namespace.as_deref()),
        }
        .unwrap_or_default()
    }

    /// The metadata of any kind but DestinationRule, whose typed view keeps only
    /// its identity ([`super::RuleMeta`]).
    fn metadata(&self) -> Option<&ObjectMeta> {
        Some(match self {
            MeshObject::Policy(p) | MeshObject::MeshPolicy(p) => &p.metadata,
            MeshObject::PeerAuthentication(p) => &p.metadata,
            MeshObject::DestinationRule(..) => return None,
            MeshObject::Service(s) => &s.metadata,
            MeshObject::Ingress(i) => &i.metadata,
            MeshObject::IngressClass(c) => &c.metadata,
            MeshObject::Namespace(n) => &n.metadata,
            MeshObject::Route(_, r) => &r.metadata,
            MeshObject::Gateway(g) => &g.metadata,
            MeshObject::GatewayClass(c) => &c.metadata,
            MeshObject::ReferenceGrant(g) => &g.metadata,
            MeshObject::Webhooks(_, c) => &c.metadata,
            MeshObject::APIService(s) => &s.metadata,
        })
    }

    /// Reads one object; `Ok(None)` for a kind the contract does not read.
    pub fn from_value(value: Value) -> Result<Option<MeshObject>, ModelError> {
        let api_version = value.get("apiVersion").and_then(Value::as_str);
        let kind = value.get("kind").and_then(Value::as_str);
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            return Err(ModelError::MissingType);
        };
        let Some(kind) = ObjectKind::of(api_version, kind) else {
            return Ok(None);
        };
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let obj = (kind.info().read)(value).map_err(|source| ModelError::Invalid {
            kind,
            name,
            source,
        })?;
        Ok(Some(obj))
    }

    /// The object without the raw JSON a DestinationRule keeps for patching. The
    /// index stores only the typed view, and a cluster's re-list holds every rule
    /// until the list is complete: the raw objects would be most of that peak.
    pub fn without_raw(self) -> MeshObject {
        match self {
            MeshObject::DestinationRule(rule, _) => MeshObject::DestinationRule(rule, Value::Null),
            other => other,
        }
    }

    pub fn kind(&self) -> ObjectKind {
        match self {
            MeshObject::Policy(_) => ObjectKind::Policy,
            MeshObject::MeshPolicy(_) => ObjectKind::MeshPolicy,
            MeshObject::PeerAuthentication(_) => ObjectKind::PeerAuthentication,
            MeshObject::DestinationRule(..) => ObjectKind::DestinationRule,
            MeshObject::Service(_) => ObjectKind::Service,
            MeshObject::Ingress(_) => ObjectKind::Ingress,
            MeshObject::IngressClass(_) => ObjectKind::IngressClass,
            MeshObject::Namespace(_) => ObjectKind::Namespace,
            MeshObject::Route(kind, _) => kind.object_kind(),
            MeshObject::Gateway(_) => ObjectKind::Gateway,
            MeshObject::GatewayClass(_) => ObjectKind::GatewayClass,
            MeshObject::ReferenceGrant(_) => ObjectKind::ReferenceGrant,
            MeshObject::Webhooks(kind, _) => *kind,
            MeshObject::APIService(_) => ObjectKind::APIService,
        }
    }
}

impl DestinationRule {
    /// Reads the typed view without consuming the raw object.
    pub fn deserialize_from(value: &Value) -> Result<DestinationRule, serde_json::Error> {
        read_ref(value)
    }
}

/// `serde_json::from_value` whose error names the field at fault by its JSON path
/// (`spec.host: invalid type: sequence, expected a string`).
pub(crate) fn read_json<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    read_ref(&value)
}

/// Reads a typed view of `value`. Only when that fails is it read again, tracking
/// the path to the field at fault, so that objects that fit pay nothing for it.
fn read_ref<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(value).or_else(|_| {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                inner
            } else {
                serde::de::Error::custom(format_args!("{path}: {inner}"))
            }
        })
    })
}
