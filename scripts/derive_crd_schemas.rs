//! Derives the CRD schemas the tests validate against (`tests/fixtures/crds/`).
//!
//! Reads CustomResourceDefinition YAML files and writes, for each CRD, one
//! `<metadata.name>.json` holding the `openAPIV3Schema` of every served version
//! (`{"<version>": <schema>, ...}`), with every schema `description` removed: the
//! tests need the structure only, and the repository carries no upstream description text.
//!
//! ```sh
//! cargo run --example derive-crd-schemas -- tests/fixtures/crds istio-crds.yaml gateway-api-crds.yaml
//! ```

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

fn main() -> Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [out, inputs @ ..] = args.as_slice() else {
        bail!("usage: derive-crd-schemas OUT_DIR CRD.yaml...");
    };
    if inputs.is_empty() {
        bail!("usage: derive-crd-schemas OUT_DIR CRD.yaml...");
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for input in inputs {
        derive(input, out)?;
    }
    Ok(())
}

fn derive(input: &Path, out: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let crd =
            Value::deserialize(doc).with_context(|| format!("parsing {}", input.display()))?;
        if crd["kind"] != "CustomResourceDefinition" {
            continue;
        }
        let name = crd["metadata"]["name"]
            .as_str()
            .with_context(|| format!("{}: a CRD without metadata.name", input.display()))?;
        let mut versions = Map::new();
        for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
            if v["served"] != true {
                continue;
            }
            let mut schema = v["schema"]["openAPIV3Schema"].clone();
            if schema.is_null() {
                bail!("{name} {}: no openAPIV3Schema", v["name"]);
            }
            strip_descriptions(&mut schema);
            let version = v["name"].as_str().context("a version without a name")?;
            versions.insert(version.to_string(), schema);
        }
        let path = out.join(format!("{name}.json"));
        let mut json = serde_json::to_string_pretty(&Value::Object(versions))?;
        json.push('\n');
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("{} <- {name} ({})", path.display(), input.display());
    }
    Ok(())
}

/// Removes `description` from a schema and every schema nested in it. Only schema
/// positions are visited, so a property that happens to be named `description`, and
/// values under `default`, `enum` or `example`, stay as they are.
fn strip_descriptions(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    map.remove("description");
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            "properties" | "patternProperties" | "definitions" | "dependencies" => {
                if let Value::Object(children) = value {
                    children.values_mut().for_each(strip_descriptions);
                }
            }
            "items"
            | "additionalProperties"
            | "additionalItems"
            | "not"
            | "allOf"
            | "anyOf"
            | "oneOf" => match value {
                Value::Array(children) => children.iter_mut().for_each(strip_descriptions),
                other => strip_descriptions(other),
            },
            _ => {}
        }
    }
}
