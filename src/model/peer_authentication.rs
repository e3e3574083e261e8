//! security.istio.io `PeerAuthentication` (v1beta1 and v1 share one schema).

use super::null_default;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
pub struct PeerAuthentication {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: PeerAuthenticationSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub mtls: Option<PeerMtls>,
    /// Keys are *target* ports; the API server sends them as strings (`"9080"`).
    #[serde(default, deserialize_with = "null_default")]
    pub port_level_mtls: BTreeMap<String, PeerMtls>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default, deserialize_with = "null_default")]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PeerMtls {
    #[serde(default)]
    pub mode: Option<PeerMtlsMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum PeerMtlsMode {
    #[default]
    Unset,
    Disable,
    Permissive,
    Strict,
}

impl PeerMtls {
    pub fn mode(&self) -> PeerMtlsMode {
        self.mode.unwrap_or_default()
    }
}

impl PeerAuthenticationSpec {
    /// The labels this PeerAuthentication selects on; empty means namespace- or mesh-wide.
    pub fn match_labels(&self) -> Option<&BTreeMap<String, String>> {
        self.selector
            .as_ref()
            .map(|s| &s.match_labels)
            .filter(|l| !l.is_empty())
    }

    /// The top-level mode, UNSET when `mtls` is absent.
    pub fn mode(&self) -> PeerMtlsMode {
        self.mtls.as_ref().map(PeerMtls::mode).unwrap_or_default()
    }
}
