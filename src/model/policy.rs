//! authentication.istio.io/v1alpha1 `Policy` and `MeshPolicy` (removed from Istio
//! in 1.6, still found in clusters that were never migrated).

use super::{null_default, present};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

/// A `Policy` or a `MeshPolicy`: both share one spec.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthPolicy {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: AuthPolicySpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthPolicySpec {
    #[serde(default, deserialize_with = "null_default")]
    pub targets: Vec<PolicyTarget>,
    /// `None` when absent; `Some(vec![])` for `peers: []`. Both mean PLAINTEXT.
    /// A `null` element (YAML `peers:` / `-`) reads as an element without `mtls`.
    #[serde(default, deserialize_with = "peers")]
    pub peers: Option<Vec<PeerMethod>>,
    #[serde(default, deserialize_with = "null_default")]
    pub peer_is_optional: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyTarget {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<PolicyPort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyPort {
    #[serde(default)]
    pub number: Option<u32>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `peers`, with `null` elements read as elements that have no `mtls` key (contract
/// section 2: "no element with an `mtls` key ... give PLAINTEXT", and a warning).
fn peers<'de, D>(d: D) -> Result<Option<Vec<PeerMethod>>, D::Error>
where
    D: Deserializer<'de>,
{
    let peers = Option::<Vec<Option<PeerMethod>>>::deserialize(d)?;
    Ok(peers.map(|v| v.into_iter().map(Option::unwrap_or_default).collect()))
}

/// One element of `peers`. `mtls` is `Some(None)` for the YAML null `mtls:`
/// (STRICT, as `kubectl create` sends it) and `None` when the key is missing,
/// which is what client-side `kubectl apply` turns that null into.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PeerMethod {
    #[serde(default, deserialize_with = "present")]
    pub mtls: Option<Option<PolicyMtls>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyMtls {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub allow_tls: bool,
}

/// The server mode one v1alpha1 policy sets, before precedence (contract section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    Strict,
    Permissive,
    Plaintext,
}

impl AuthPolicySpec {
    /// The first element of `peers` with an `mtls` key decides; none gives PLAINTEXT.
    pub fn mode(&self) -> PolicyMode {
        let first = self.peers.iter().flatten().find_map(|p| p.mtls.as_ref());
        match first {
            None => PolicyMode::Plaintext,
            Some(mtls) => {
                let mtls = mtls.clone().unwrap_or_default();
                let permissive = mtls
                    .mode
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case("PERMISSIVE"))
                    || mtls.allow_tls
                    || self.peer_is_optional;
                if permissive {
                    PolicyMode::Permissive
                } else {
                    PolicyMode::Strict
                }
            }
        }
    }

    /// True when an element of `peers` lacks the `mtls` key: the trace of a YAML
    /// `mtls:` null dropped by client-side apply (contract section 2, "Beware").
    pub fn has_peer_without_mtls(&self) -> bool {
        self.peers.iter().flatten().any(|p| p.mtls.is_none())
    }
}

/// The warning for a policy with a `peers` element without `mtls` (MG201), said
/// the same way by the decision and by the webhook when such a policy is admitted.
pub fn peer_without_mtls_message(policy: &dyn std::fmt::Display, mode: PolicyMode) -> String {
    let effect = match mode {
        PolicyMode::Plaintext => "and none with one, which Istio reads as no mTLS (PLAINTEXT)",
        PolicyMode::Strict | PolicyMode::Permissive => {
            "which Istio ignores (another element's `mtls` decides)"
        }
    };
    format!(
        "{policy} has a peers element without an `mtls` key {effect}; if mutual TLS was meant there, write `mtls: {{}}` (a YAML `mtls:` null is dropped by client-side kubectl apply)"
    )
}
