//! Warnings about a policy object itself (contract section 8): objects that Istio
//! ignores, or reads otherwise than their author probably meant. The validating
//! webhook says them when such an object is written; judging already treats the
//! object the way Istio does (see [`crate::snapshot`]).

use super::verdict::{Warning, WarningCode};
use crate::model::{
    peer_without_mtls_message, AuthPolicySpec, ObjectKind, ObjectRef, PeerAuthenticationSpec,
};

/// The warnings for a v1alpha1 Policy or MeshPolicy (`object.kind` says which).
pub fn auth_policy_warnings(object: &ObjectRef, spec: &AuthPolicySpec) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let unnamed = object.name != "default";
    match object.kind {
        ObjectKind::Policy if spec.targets.is_empty() && unnamed => warnings.push(Warning {
            code: WarningCode::IgnoredPolicy,
            message: format!(
                "{object} has no targets and is not named `default`: Istio ignores it (only the Policy named `default` applies to a whole namespace); name it `default`, or list the services it is for in `targets`"
            ),
        }),
        ObjectKind::MeshPolicy if unnamed => warnings.push(Warning {
            code: WarningCode::IgnoredPolicy,
            message: format!(
                "{object} is not named `default`: Istio ignores it (only the MeshPolicy named `default` applies to the mesh); name it `default`"
            ),
        }),
        _ => {}
    }
    if spec.has_peer_without_mtls() {
        warnings.push(Warning {
            code: WarningCode::PeerWithoutMtls,
            message: peer_without_mtls_message(object, spec.mode()),
        });
    }
    warnings
}

/// The warnings for a PeerAuthentication.
pub fn peer_authentication_warnings(
    object: &ObjectRef,
    spec: &PeerAuthenticationSpec,
) -> Vec<Warning> {
    if spec.port_level_mtls.is_empty() || spec.match_labels().is_some() {
        return Vec::new();
    }
    let ports: Vec<&str> = spec.port_level_mtls.keys().map(String::as_str).collect();
    vec![Warning {
        code: WarningCode::PortLevelWithoutSelector,
        message: format!(
            "{object} has portLevelMtls (ports {}) but no selector: Istio rejects port-level settings without a workload selector, so they are ignored and its own mode applies to every port; select the workload's pods with `selector.matchLabels`, or move the ports to a PeerAuthentication that does",
            ports.join(", ")
        ),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn oref(kind: ObjectKind, namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn policy(spec: serde_json::Value) -> AuthPolicySpec {
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn policy_without_targets_counts_only_as_default() {
        let strict = policy(json!({"peers": [{"mtls": {}}]}));
        let codes = |kind, name, spec: &AuthPolicySpec| -> Vec<WarningCode> {
            auth_policy_warnings(&oref(kind, "shop", name), spec)
                .iter()
                .map(|w| w.code)
                .collect()
        };
        assert_eq!(
            codes(ObjectKind::Policy, "strict", &strict),
            [WarningCode::IgnoredPolicy]
        );
        assert!(codes(ObjectKind::Policy, "default", &strict).is_empty());
        let targeted = policy(json!({"targets": [{"name": "web"}], "peers": [{"mtls": {}}]}));
        assert!(codes(ObjectKind::Policy, "web-only", &targeted).is_empty());
        assert_eq!(
            codes(ObjectKind::MeshPolicy, "strict", &targeted),
            [WarningCode::IgnoredPolicy]
        );
        assert!(codes(ObjectKind::MeshPolicy, "default", &strict).is_empty());
        // Both traps at once.
        let trap = policy(json!({"peers": [{}]}));
        assert_eq!(
            codes(ObjectKind::Policy, "strict", &trap),
            [WarningCode::IgnoredPolicy, WarningCode::PeerWithoutMtls]
        );
    }

    #[test]
    fn port_level_without_selector() {
        let spec = |v| -> PeerAuthenticationSpec { serde_json::from_value(v).unwrap() };
        let pa = oref(ObjectKind::PeerAuthentication, "shop", "default");
        let w = peer_authentication_warnings(
            &pa,
            &spec(
                json!({"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}),
            ),
        );
        assert_eq!(w.len(), 1);
        assert!(
            w[0].message.starts_with(
                "PeerAuthentication shop/default has portLevelMtls (ports 8080) but no selector"
            ),
            "{}",
            w[0].message
        );
        // An empty selector is no selector.
        assert_eq!(
            peer_authentication_warnings(
                &pa,
                &spec(json!({"selector": {}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}))
            )
            .len(),
            1
        );
        assert!(peer_authentication_warnings(
            &pa,
            &spec(json!({"selector": {"matchLabels": {"app": "web"}}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}))
        )
        .is_empty());
        assert!(
            peer_authentication_warnings(&pa, &spec(json!({"mtls": {"mode": "STRICT"}})))
                .is_empty()
        );
    }
}
