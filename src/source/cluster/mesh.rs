//! Mesh settings from the `istio` ConfigMap (`data.mesh`, Istio's MeshConfig as
//! YAML), under the operator's flags.

use crate::settings::Settings;
use serde::Deserialize;
use serde_json::Value;

/// The fields of Istio's MeshConfig that mtls-guard reads; absent means Istio's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    pub enable_auto_mtls: Option<bool>,
    pub root_namespace: Option<String>,
}

/// Istio's default for `enableAutoMtls` (on since Istio 1.5).
pub const ISTIO_AUTO_MTLS_DEFAULT: bool = true;

#[derive(Debug, thiserror::Error)]
pub enum MeshConfigError {
    #[error("ConfigMap {0}: data.mesh is not a MeshConfig: {1}")]
    Yaml(String, serde_yaml_ng::Error),
}

impl MeshConfig {
    /// Reads `data.mesh` of a ConfigMap (as JSON); a ConfigMap without it means
    /// Istio's defaults.
    pub fn from_config_map(config_map: &Value) -> Result<MeshConfig, MeshConfigError> {
        let Some(mesh) = config_map.pointer("/data/mesh").and_then(Value::as_str) else {
            return Ok(MeshConfig::default());
        };
        if mesh.trim().is_empty() {
            return Ok(MeshConfig::default());
        }
        serde_yaml_ng::from_str(mesh).map_err(|e| {
            let ns = config_map
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            let name = config_map
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            MeshConfigError::Yaml(format!("{ns}/{name}"), e)
        })
    }
}

/// The mesh settings the operator fixed with flags; what is `None` comes from the
/// mesh config, then Istio's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshOverrides {
    /// `--auto-mtls` / `--auto-mtls=false`.
    pub auto_mtls: Option<bool>,
    /// `--root-namespace`.
    pub root_namespace: Option<String>,
}

/// The settings reviews use: the flags' `base`, with auto mTLS and the root
/// namespace from the overrides, else the mesh config, else Istio's defaults
/// (auto mTLS on; the root namespace is the Istio namespace).
pub fn effective(
    base: &Settings,
    overrides: &MeshOverrides,
    mesh: Option<&MeshConfig>,
    istio_namespace: &str,
) -> Settings {
    let mut settings = base.clone();
    settings.auto_mtls = overrides
        .auto_mtls
        .or(mesh.and_then(|m| m.enable_auto_mtls))
        .unwrap_or(ISTIO_AUTO_MTLS_DEFAULT);
    settings.root_namespace = overrides
        .root_namespace
        .clone()
        .or(mesh.and_then(|m| m.root_namespace.clone()))
        .unwrap_or_else(|| istio_namespace.to_string());
    settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The ConfigMap item of the captured list (tests/fixtures/apiserver/18-*).
    fn captured() -> Value {
        let list: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/apiserver/18-list-configmaps-istio-system-name-istio.json"
        ))
        .unwrap();
        list["items"][0].clone()
    }

    #[test]
    fn reads_the_captured_mesh_config() {
        let mesh = MeshConfig::from_config_map(&captured()).unwrap();
        assert_eq!(
            mesh,
            MeshConfig {
                enable_auto_mtls: Some(false),
                root_namespace: Some("istio-system".into()),
            }
        );
    }

    #[test]
    fn flags_override_the_mesh_config_which_overrides_istio_defaults() {
        let base = Settings::default();
        let mesh = MeshConfig {
            enable_auto_mtls: Some(false),
            root_namespace: Some("mesh-root".into()),
        };
        let none = MeshOverrides::default();
        let s = effective(&base, &none, Some(&mesh), "istio-system");
        assert!(!s.auto_mtls);
        assert_eq!(s.root_namespace, "mesh-root");

        let s = effective(&base, &none, None, "istio-system");
        assert!(s.auto_mtls, "Istio's default is on");
        assert_eq!(s.root_namespace, "istio-system");

        let forced = MeshOverrides {
            auto_mtls: Some(true),
            root_namespace: Some("flagged".into()),
        };
        let s = effective(&base, &forced, Some(&mesh), "istio-system");
        assert!(s.auto_mtls);
        assert_eq!(s.root_namespace, "flagged");
    }

    #[test]
    fn missing_or_broken_mesh_data() {
        let empty = json!({"metadata": {"name": "istio"}, "data": {}});
        assert_eq!(
            MeshConfig::from_config_map(&empty).unwrap(),
            MeshConfig::default()
        );
        let other = json!({"data": {"mesh": "defaultConfig:\n  discoveryAddress: x:15012\n"}});
        assert_eq!(
            MeshConfig::from_config_map(&other).unwrap(),
            MeshConfig::default()
        );
        let broken = json!({"metadata": {"namespace": "istio-system", "name": "istio"},
                            "data": {"mesh": "enableAutoMtls: [oops"}});
        let err = MeshConfig::from_config_map(&broken).unwrap_err();
        assert!(err.to_string().contains("istio-system/istio"), "{err}");
    }
}
