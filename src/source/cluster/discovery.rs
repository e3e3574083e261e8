//! Which API versions the cluster serves for each watched kind.
//!
//! One request: aggregated discovery of `/apis` (Kubernetes 1.26+), which lists
//! every group, its versions in preference order and their resources. A server
//! without it answers with a plain group list (no resources), which is read
//! instead. The core group (Service, Namespace, ConfigMap) is always served at v1.

use super::kinds::{KindApi, Watched};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList;
use kube::core::discovery::v2::APIGroupDiscoveryList;
use kube::discovery::ApiResource;
use std::collections::BTreeMap;

/// One served group: its versions, the preferred one, and (with aggregated
/// discovery) the resources of each version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedGroup {
    pub preferred: Option<String>,
    /// Version → resource plurals, `None` when the server did not say.
    pub versions: BTreeMap<String, Option<Vec<String>>>,
}

/// Served groups by name.
pub type ServedGroups = BTreeMap<String, ServedGroup>;

pub fn from_aggregated(list: APIGroupDiscoveryList) -> ServedGroups {
    list.items
        .into_iter()
        .filter_map(|group| {
            let name = group.metadata.and_then(|m| m.name)?;
            // Versions come in preference order: the first is the preferred one.
            let preferred = group.versions.first().and_then(|v| v.version.clone());
            let versions = group
                .versions
                .into_iter()
                .filter_map(|v| {
                    let resources = v.resources.into_iter().filter_map(|r| r.resource).collect();
                    Some((v.version?, Some(resources)))
                })
                .collect();
            Some((
                name,
                ServedGroup {
                    preferred,
                    versions,
                },
            ))
        })
        .collect()
}

pub fn from_group_list(list: APIGroupList) -> ServedGroups {
    list.groups
        .into_iter()
        .map(|group| {
            let versions = group
                .versions
                .into_iter()
                .map(|v| (v.version, None))
                .collect();
            let preferred = group.preferred_version.map(|v| v.version);
            (
                group.name,
                ServedGroup {
                    preferred,
                    versions,
                },
            )
        })
        .collect()
}

/// Asks the API server which groups it serves.
pub async fn served_groups(client: &kube::Client) -> Result<ServedGroups, kube::Error> {
    match client.list_api_groups_aggregated().await {
        // A server without aggregated discovery sends an APIGroupList, which reads
        // as an aggregated list with no items: every server has some groups.
        Ok(list) if !list.items.is_empty() => Ok(from_aggregated(list)),
        Ok(_) => Ok(from_group_list(client.list_api_groups().await?)),
        Err(e) => {
            tracing::debug!(error = %e, "aggregated discovery failed; reading the group list");
            Ok(from_group_list(client.list_api_groups().await?))
        }
    }
}

/// The version `api` is watched at: the group's preferred version when it is one
/// mtls-guard reads, else the newest one read that is served; `None` when the
/// kind is not served.
pub fn resolve(api: &KindApi, groups: &ServedGroups) -> Option<ApiResource> {
    let version = if api.group.is_empty() {
        // The core group is always served.
        api.versions.last().copied()?.to_string()
    } else {
        let group = groups.get(api.group)?;
        let serves = |version: &str| match group.versions.get(version) {
            Some(Some(resources)) => resources.iter().any(|r| r == api.plural),
            Some(None) => true,
            None => false,
        };
        let preferred = group
            .preferred
            .as_deref()
            .filter(|p| api.versions.contains(p) && serves(p));
        match preferred {
            Some(p) => p.to_string(),
            None => api.versions.iter().rev().find(|v| serves(v))?.to_string(),
        }
    };
    let api_version = if api.group.is_empty() {
        version.clone()
    } else {
        format!("{}/{version}", api.group)
    };
    Some(ApiResource {
        group: api.group.to_string(),
        version,
        api_version,
        kind: api.kind.to_string(),
        plural: api.plural.to_string(),
    })
}

/// [`resolve`] for every kind.
pub fn resolve_all(kinds: &[Watched], groups: &ServedGroups) -> BTreeMap<Watched, ApiResource> {
    kinds
        .iter()
        .filter_map(|kind| Some((*kind, resolve(&kind.api(), groups)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectKind;

    fn aggregated() -> ServedGroups {
        from_aggregated(
            serde_json::from_str(include_str!(
                "../../../tests/fixtures/apiserver/04-discovery-apis-aggregated-v2.json"
            ))
            .unwrap(),
        )
    }

    fn group_list() -> ServedGroups {
        from_group_list(
            serde_json::from_str(include_str!(
                "../../../tests/fixtures/apiserver/03-discovery-apis.json"
            ))
            .unwrap(),
        )
    }

    fn versions(groups: &ServedGroups) -> Vec<(String, String)> {
        resolve_all(&Watched::all(), groups)
            .into_iter()
            .map(|(k, ar)| (k.to_string(), ar.api_version))
            .collect()
    }

    #[test]
    fn both_discovery_shapes_pick_the_same_versions() {
        let expected: Vec<(String, String)> = [
            ("Policy", "authentication.istio.io/v1alpha1"),
            ("MeshPolicy", "authentication.istio.io/v1alpha1"),
            ("PeerAuthentication", "security.istio.io/v1"),
            ("DestinationRule", "networking.istio.io/v1"),
            ("Service", "v1"),
            ("Ingress", "networking.k8s.io/v1"),
            ("IngressClass", "networking.k8s.io/v1"),
            ("Namespace", "v1"),
            // The backends of section 8, served by every cluster.
            (
                "MutatingWebhookConfiguration",
                "admissionregistration.k8s.io/v1",
            ),
            (
                "ValidatingWebhookConfiguration",
                "admissionregistration.k8s.io/v1",
            ),
            ("APIService", "apiregistration.k8s.io/v1"),
            ("ConfigMap", "v1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(versions(&aggregated()), expected);
        assert_eq!(versions(&group_list()), expected);
    }

    #[test]
    fn a_missing_group_or_version_is_not_served() {
        let mut groups = aggregated();
        groups.remove("authentication.istio.io");
        let found = resolve_all(&Watched::all(), &groups);
        assert!(!found.contains_key(&Watched::Mesh(ObjectKind::Policy)));
        assert!(!found.contains_key(&Watched::Mesh(ObjectKind::MeshPolicy)));

        // Only v1beta1 of security.istio.io (an older Istio): that one is used.
        let mut groups = aggregated();
        let security = groups.get_mut("security.istio.io").unwrap();
        security.versions.remove("v1");
        security.preferred = Some("v1beta1".into());
        let pa = resolve(
            &Watched::Mesh(ObjectKind::PeerAuthentication).api(),
            &groups,
        )
        .unwrap();
        assert_eq!(pa.api_version, "security.istio.io/v1beta1");
    }
}
