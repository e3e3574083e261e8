//! Typed views of the objects the contract reads (section 1).
//!
//! Istio's CRDs are not in k8s-openapi, so they are modelled here with only the
//! fields mtls-guard reads; everything else is ignored on read. A DestinationRule
//! is also kept as raw JSON, because the mutating webhook must patch it without
//! dropping fields this model does not know.

pub mod backend;
mod destination_rule;
pub mod gateway;
mod kind;
mod object;
mod peer_authentication;
mod policy;

pub use destination_rule::{
    ClientTls, DestinationRule, DestinationRuleSpec, PortSelector as DrPortSelector,
    PortTrafficPolicy, RawJson, RuleMeta, Subset, TrafficPolicy, PORT_SETTINGS,
};
pub use kind::{KindInfo, ObjectKind, KINDS};
pub use object::{MeshObject, ModelError};
pub use peer_authentication::{PeerAuthentication, PeerAuthenticationSpec, PeerMtls, PeerMtlsMode};
pub use policy::{
    peer_without_mtls_message, AuthPolicy, AuthPolicySpec, PeerMethod, PolicyMode, PolicyMtls,
    PolicyPort, PolicyTarget,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer};

/// Deserializes a field so that "present with null" (`Some(None)`) differs from
/// "absent" (`None`, via `#[serde(default)]`): `mtls:` null means STRICT in a Policy.
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Treats an explicit JSON null like an absent field (Kubernetes stores `tls: null` as absent).
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Identity and age of an object, as used in ties and messages.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    /// Empty for cluster-scoped objects (MeshPolicy).
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Creation time in seconds since the epoch; objects read from files often have none.
pub(crate) fn created(meta: &ObjectMeta) -> Option<i64> {
    seconds(meta.creation_timestamp.as_ref())
}

/// A timestamp in seconds since the epoch.
pub(crate) fn seconds(time: Option<&Time>) -> Option<i64> {
    time.map(|Time(t)| t.as_second())
}
