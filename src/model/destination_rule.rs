//! networking.istio.io `DestinationRule` (v1alpha3, v1beta1 and v1 share one schema).
//!
//! The typed view holds only what the decision reads; the raw JSON the rule came
//! from is kept beside it so that patches are computed against the real object.

use super::null_default;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct DestinationRule {
    /// Only `name`, `namespace` and `creationTimestamp` are read: the rest
    /// (`managedFields` above all) would cost more than the whole decision.
    #[serde(default, deserialize_with = "identity")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: DestinationRuleSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
    #[serde(default, deserialize_with = "null_default")]
    pub subsets: Vec<Subset>,
    #[serde(default, deserialize_with = "null_default")]
    pub export_to: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    #[serde(default)]
    pub tls: Option<ClientTls>,
    #[serde(default, deserialize_with = "null_default")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PortTrafficPolicy {
    #[serde(default)]
    pub port: Option<PortSelector>,
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PortSelector {
    #[serde(default)]
    pub number: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Subset {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "trafficPolicy")]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `trafficPolicy.tls`; `mode` omitted (`tls: {}`) means DISABLE, Istio's default.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientTls {
    #[serde(default)]
    pub mode: Option<String>,
}

impl TrafficPolicy {
    /// Index of the first `portLevelSettings` entry for `port`, the one Istio uses.
    pub fn port_entry(&self, port: u32) -> Option<usize> {
        self.port_level_settings
            .iter()
            .position(|e| e.port.as_ref().and_then(|p| p.number) == Some(port))
    }
}

/// The identity fields of `metadata`; every other field is skipped unparsed.
fn identity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Identity {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        namespace: Option<String>,
        #[serde(default)]
        creation_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    }
    let id = Option::<Identity>::deserialize(d)?.unwrap_or_default();
    Ok(ObjectMeta {
        name: id.name,
        namespace: id.namespace,
        creation_timestamp: id.creation_timestamp,
        ..ObjectMeta::default()
    })
}
