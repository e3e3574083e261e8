//! Modes (contract section 6): which mode a DestinationRule is admitted in, and
//! what each mode lets mtls-guard do. The webhook and `check` both ask here, so
//! they cannot disagree about a namespace.

use crate::settings::Settings;
use crate::snapshot::Snapshot;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Label on a Namespace that overrides the global mode (`--mode`).
pub const MODE_LABEL: &str = "mtls-guard.io/mode";

/// What the webhook does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Mode {
    /// Fill, patch, deny conflicts.
    #[default]
    Enforce,
    /// Allow everything, no patch; warn about what `enforce` would have done.
    Warn,
    /// Allow, no patch, no warnings.
    Off,
}

impl Mode {
    /// Whether rules are judged at all: in `off` they are allowed untouched and silent.
    pub fn judges(self) -> bool {
        self != Mode::Off
    }

    /// Whether conflicts are denied and fills and patches applied; in `warn` each of
    /// them is only a warning.
    pub fn enforces(self) -> bool {
        self == Mode::Enforce
    }
}

/// The mode of a DestinationRule admitted in `namespace`: the namespace's
/// [`MODE_LABEL`] when the snapshot has one (and it is valid), else `--mode`. A
/// namespace the snapshot does not know uses the default.
pub fn mode_for(snapshot: &Snapshot, settings: &Settings, namespace: &str) -> Mode {
    snapshot.namespace_mode(namespace).unwrap_or(settings.mode)
}

/// Reads [`MODE_LABEL`] from a Namespace's labels: `Ok(None)` without the label,
/// `Err(value)` for a value that is not a mode (the default then applies).
pub fn label_mode(labels: Option<&BTreeMap<String, String>>) -> Result<Option<Mode>, String> {
    match labels.and_then(|l| l.get(MODE_LABEL)) {
        None => Ok(None),
        Some(raw) => raw.parse().map(Some).map_err(|_| raw.clone()),
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "enforce" => Ok(Mode::Enforce),
            "warn" => Ok(Mode::Warn),
            "off" => Ok(Mode::Off),
            other => Err(format!(
                "unknown mode {other:?}: expected enforce, warn or off"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Off => "off",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MeshObject;

    fn namespace(name: &str, label: Option<&str>) -> MeshObject {
        let labels = label.map_or(
            serde_json::json!({}),
            |l| serde_json::json!({ MODE_LABEL: l }),
        );
        MeshObject::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": name, "labels": labels },
        }))
        .unwrap()
        .unwrap()
    }

    #[test]
    fn the_namespace_label_beats_the_default_and_a_bad_one_does_not() {
        let snapshot = Snapshot::from_objects([
            namespace("quiet", Some("off")),
            namespace("loose", Some("Warn")),
            namespace("typo", Some("of")),
            namespace("plain", None),
        ]);
        let settings = Settings::default();
        assert_eq!(mode_for(&snapshot, &settings, "quiet"), Mode::Off);
        assert_eq!(mode_for(&snapshot, &settings, "loose"), Mode::Warn);
        assert_eq!(mode_for(&snapshot, &settings, "typo"), Mode::Enforce);
        assert_eq!(mode_for(&snapshot, &settings, "plain"), Mode::Enforce);
        assert_eq!(mode_for(&snapshot, &settings, "unknown"), Mode::Enforce);
        let warn = Settings {
            mode: Mode::Warn,
            ..Settings::default()
        };
        assert_eq!(mode_for(&snapshot, &warn, "quiet"), Mode::Off);
        assert_eq!(mode_for(&snapshot, &warn, "unknown"), Mode::Warn);
        assert!(snapshot.notes().iter().any(|n| n.contains("\"of\"")));
    }

    #[test]
    fn what_each_mode_does() {
        assert!(Mode::Enforce.judges() && Mode::Enforce.enforces());
        assert!(Mode::Warn.judges() && !Mode::Warn.enforces());
        assert!(!Mode::Off.judges() && !Mode::Off.enforces());
    }
}
