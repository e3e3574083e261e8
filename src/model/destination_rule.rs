//! networking.istio.io `DestinationRule` (v1alpha3, v1beta1 and v1 share one schema).
//!
//! The typed view holds what the decision reads, plus the few raw values a patch
//! must see or copy (a scope's `tls`, and the settings a new port entry repeats),
//! so that neither needs the whole object parsed a second time. Those values are
//! kept as compact JSON text ([`RawJson`]): the index stores every DestinationRule
//! of the cluster, and a parsed `serde_json::Value` map costs several hundred bytes
//! where its text costs a few dozen (issue 6's memory target).

use super::null_default;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
pub struct DestinationRule {
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: RuleMeta,
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
    pub connection_pool: Option<RawJson>,
    #[serde(default)]
    pub load_balancer: Option<RawJson>,
    #[serde(default)]
    pub outlier_detection: Option<RawJson>,
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
    pub connection_pool: Option<RawJson>,
    #[serde(default)]
    pub load_balancer: Option<RawJson>,
    #[serde(default)]
    pub outlier_detection: Option<RawJson>,
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
    pub fn settings(&self) -> [Option<&RawJson>; 3] {
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
    connection_pool: &'a Option<RawJson>,
    load_balancer: &'a Option<RawJson>,
    outlier_detection: &'a Option<RawJson>,
) -> [Option<&'a RawJson>; 3] {
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
    pub raw: RawJson,
}

/// A JSON value kept as its compact text, parsed again only when a patch needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(Box<str>);

impl RawJson {
    pub fn new(value: &Value) -> RawJson {
        RawJson(value.to_string().into_boxed_str())
    }

    /// The value, parsed from the text [`RawJson::new`] wrote.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).expect("RawJson holds the text serde_json wrote")
    }

    pub fn is_null(&self) -> bool {
        &*self.0 == "null"
    }
}

impl Default for RawJson {
    fn default() -> Self {
        RawJson("null".into())
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(|v| RawJson::new(&v))
    }
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
        Ok(ClientTls {
            mode,
            raw: RawJson::new(&raw),
        })
    }
}

impl TrafficPolicy {
    /// The settings besides TLS, in the order of [`PORT_SETTINGS`].
    pub fn settings(&self) -> [Option<&RawJson>; 3] {
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

/// The fields of a DestinationRule's `metadata` that are read; every other field
/// (`managedFields` above all) is skipped unparsed. A whole `ObjectMeta` would add
/// over 300 bytes to each of the cluster's rules the index stores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub creation_timestamp: Option<Time>,
    /// What the stored-rule reconciler's patch tests.
    #[serde(default)]
    pub resource_version: Option<String>,
}

impl RuleMeta {
    /// Creation time in seconds since the epoch.
    pub fn created(&self) -> Option<i64> {
        super::seconds(self.creation_timestamp.as_ref())
    }
}
