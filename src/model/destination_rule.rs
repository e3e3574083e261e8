//! networking.istio.io `DestinationRule` (v1alpha3, v1beta1 and v1 share one schema).
//!
//! The typed view holds what the decision reads, plus the few raw values a patch
//! must see or copy (a scope's `tls`, and the settings a new port entry repeats),
//! so that neither needs the whole object parsed a second time.

use super::null_default;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
pub struct DestinationRule {
    /// Only `name`, `namespace`, `creationTimestamp` and `resourceVersion` (which the
    /// stored-rule reconciler's patch tests) are read: the rest (`managedFields` above
    /// all) would cost more than the whole decision.
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
    pub traffic_policy: Option<Box<TrafficPolicy>>,
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
    /// Kept raw: a `portLevelSettings` entry added by a patch carries a copy
    /// (Istio's port entries replace these wholesale instead of inheriting them).
    #[serde(default)]
    pub connection_pool: Option<Value>,
    #[serde(default)]
    pub load_balancer: Option<Value>,
    #[serde(default)]
    pub outlier_detection: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    #[serde(default)]
    pub port: Option<PortSelector>,
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Kept raw: a subset's new port entry carries what it inherited from here.
    #[serde(default)]
    pub connection_pool: Option<Value>,
    #[serde(default)]
    pub load_balancer: Option<Value>,
    #[serde(default)]
    pub outlier_detection: Option<Value>,
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
    pub traffic_policy: Option<Box<TrafficPolicy>>,
}

impl PortTrafficPolicy {
    /// The settings besides TLS, in the order of [`PORT_SETTINGS`].
    pub fn settings(&self) -> [Option<&Value>; 3] {
        settings_of(
            &self.connection_pool,
            &self.load_balancer,
            &self.outlier_detection,
        )
    }
}

/// The settings a `portLevelSettings` entry may carry besides `port` and `tls`
/// (the CRD's `PortTrafficPolicy`), as `settings()` returns them.
pub const PORT_SETTINGS: [&str; 3] = ["connectionPool", "loadBalancer", "outlierDetection"];

fn settings_of<'a>(
    connection_pool: &'a Option<Value>,
    load_balancer: &'a Option<Value>,
    outlier_detection: &'a Option<Value>,
) -> [Option<&'a Value>; 3] {
    [
        connection_pool.as_ref(),
        load_balancer.as_ref(),
        outlier_detection.as_ref(),
    ]
}

/// `trafficPolicy.tls`; `mode` omitted (`tls: {}`) means DISABLE, Istio's default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "Value")]
pub struct ClientTls {
    pub mode: Option<String>,
    /// The whole object (`sni`, certificates...), for a patch that must keep it.
    pub raw: Value,
}

impl TryFrom<Value> for ClientTls {
    type Error = String;

    fn try_from(raw: Value) -> Result<Self, Self::Error> {
        let Value::Object(map) = &raw else {
            return Err(format!("tls: expected an object, got {raw}"));
        };
        let mode = match map.get("mode") {
            None | Some(Value::Null) => None,
            Some(Value::String(m)) => Some(m.clone()),
            Some(other) => return Err(format!("tls.mode: expected a string, got {other}")),
        };
        Ok(ClientTls { mode, raw })
    }
}

impl TrafficPolicy {
    /// The settings besides TLS, in the order of [`PORT_SETTINGS`].
    pub fn settings(&self) -> [Option<&Value>; 3] {
        settings_of(
            &self.connection_pool,
            &self.load_balancer,
            &self.outlier_detection,
        )
    }

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
        #[serde(default)]
        resource_version: Option<String>,
    }
    let id = Option::<Identity>::deserialize(d)?.unwrap_or_default();
    Ok(ObjectMeta {
        name: id.name,
        namespace: id.namespace,
        creation_timestamp: id.creation_timestamp,
        resource_version: id.resource_version,
        ..ObjectMeta::default()
    })
}
