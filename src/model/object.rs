//! One enum over every kind of object the snapshot holds, read from JSON.

use super::{AuthPolicy, DestinationRule, PeerAuthentication};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
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
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Policy => "Policy",
            ObjectKind::MeshPolicy => "MeshPolicy",
            ObjectKind::PeerAuthentication => "PeerAuthentication",
            ObjectKind::DestinationRule => "DestinationRule",
            ObjectKind::Service => "Service",
            ObjectKind::Ingress => "Ingress",
            ObjectKind::IngressClass => "IngressClass",
            ObjectKind::Namespace => "Namespace",
        })
    }
}

impl ObjectKind {
    /// The kind for an `apiVersion`/`kind` pair, if it is one the contract reads.
    pub fn of(api_version: &str, kind: &str) -> Option<ObjectKind> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let version = api_version.rsplit('/').next().unwrap_or("");
        Some(match (group, version, kind) {
            ("authentication.istio.io", "v1alpha1", "Policy") => ObjectKind::Policy,
            ("authentication.istio.io", "v1alpha1", "MeshPolicy") => ObjectKind::MeshPolicy,
            ("security.istio.io", "v1beta1" | "v1", "PeerAuthentication") => {
                ObjectKind::PeerAuthentication
            }
            ("networking.istio.io", "v1alpha3" | "v1beta1" | "v1", "DestinationRule") => {
                ObjectKind::DestinationRule
            }
            ("", "v1", "Service") => ObjectKind::Service,
            ("", "v1", "Namespace") => ObjectKind::Namespace,
            ("networking.k8s.io", "v1", "Ingress") => ObjectKind::Ingress,
            ("networking.k8s.io", "v1", "IngressClass") => ObjectKind::IngressClass,
            _ => return None,
        })
    }
}

/// A typed object of one of the kinds in the contract's table 1.
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
        let invalid = |source| ModelError::Invalid {
            kind,
            name: name.clone(),
            source,
        };
        let obj = match kind {
            ObjectKind::Policy => {
                MeshObject::Policy(serde_json::from_value(value).map_err(invalid)?)
            }
            ObjectKind::MeshPolicy => {
                MeshObject::MeshPolicy(serde_json::from_value(value).map_err(invalid)?)
            }
            ObjectKind::PeerAuthentication => {
                MeshObject::PeerAuthentication(serde_json::from_value(value).map_err(invalid)?)
            }
            ObjectKind::DestinationRule => {
                let typed = DestinationRule::deserialize_from(&value).map_err(invalid)?;
                MeshObject::DestinationRule(Box::new(typed), value)
            }
            ObjectKind::Service => {
                MeshObject::Service(serde_json::from_value(value).map_err(invalid)?)
            }
            ObjectKind::Ingress => {
                MeshObject::Ingress(serde_json::from_value(value).map_err(invalid)?)
            }
            ObjectKind::IngressClass => {
                MeshObject::IngressClass(serde_json::from_value(value).map_err(invalid)?)
            }
            ObjectKind::Namespace => {
                MeshObject::Namespace(serde_json::from_value(value).map_err(invalid)?)
            }
        };
        Ok(Some(obj))
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
        }
    }
}

impl DestinationRule {
    /// Reads the typed view without consuming the raw object.
    pub fn deserialize_from(value: &Value) -> Result<DestinationRule, serde_json::Error> {
        serde::Deserialize::deserialize(value)
    }
}
