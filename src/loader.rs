//! Files and folders -> typed objects: YAML (multi-document) and JSON, `List`s,
//! with the file and document every object came from.
//!
//! Rules, all documented in README.md ("Input files"):
//! - a folder is read recursively: files ending in `.yaml`, `.yml` or `.json`, sorted by
//!   name; entries whose name starts with `.` are skipped. A file named explicitly is
//!   read whatever its extension (`.json` as JSON, anything else as YAML);
//! - YAML is read into `serde_yaml_ng::Value` and converted to JSON here: non-string
//!   map keys are stringified (`portLevelMtls: {9080: ...}`), a YAML null stays a JSON
//!   null (`mtls:` null means STRICT, contract section 2), merge keys (`<<`) are applied;
//! - empty documents are skipped; a document that is not a mapping, or a mapping with
//!   neither `apiVersion` nor `kind`, is skipped with a note (a folder may hold other YAML);
//!   a kind the contract does not read is skipped with a note;
//! - `kind: List` and every `*List` kind are unwrapped into their `items`; an item without
//!   `apiVersion`/`kind` gets the list's (`ServiceList` items from the API server have none);
//! - a namespaced object without `metadata.namespace` is put in `default`, as `kubectl apply`
//!   does without `-n` ([`load_paths_in`] takes another namespace);
//! - an object defined twice (same kind, namespace and name) keeps the later definition,
//!   as a later `kubectl apply` would, with a note;
//! - a YAML or JSON syntax error, or an object that claims a kind the contract reads but
//!   does not parse, is an error naming the file and the line or document.

use crate::model::{DestinationRule, MeshObject, ModelError, ObjectKind};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The namespace of namespaced objects that have none, as with `kubectl apply` without `-n`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Where an object came from: a file, a document in it, and an item of a `List`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub path: PathBuf,
    /// 0-based index of the document in the file (YAML `---` documents, or
    /// concatenated JSON values).
    pub document: usize,
    /// 1-based line where the document's content starts, when known.
    pub line: Option<usize>,
    /// 0-based index in the `items` of a `List` document.
    pub item: Option<usize>,
}

impl Origin {
    /// The first document of `path`, line unknown.
    pub fn file(path: impl Into<PathBuf>) -> Origin {
        Origin {
            path: path.into(),
            document: 0,
            line: None,
            item: None,
        }
    }
}

/// `path:LINE`, or `path:#DOC` (1-based) when the line is unknown; a `List` item adds `[N]`.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        match self.line {
            Some(line) => write!(f, ":{line}")?,
            None => write!(f, ":#{}", self.document + 1)?,
        }
        if let Some(item) = self.item {
            write!(f, "[{item}]")?;
        }
        Ok(())
    }
}

/// Everything read from a set of paths.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// In file order (folders sorted by name), documents in order; a redefinition
    /// takes the place of the object it replaces.
    pub objects: Vec<MeshObject>,
    /// Where each of `objects` came from (same length, same order).
    pub origins: Vec<Origin>,
    /// What was skipped or replaced, each starting with the origin (`path:LINE: ...`).
    pub notes: Vec<String>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

impl Loaded {
    /// Every object with its origin.
    pub fn iter(&self) -> impl Iterator<Item = (&MeshObject, &Origin)> {
        self.objects.iter().zip(&self.origins)
    }

    /// The DestinationRules, each with its raw JSON and origin.
    pub fn destination_rules(&self) -> impl Iterator<Item = (&DestinationRule, &Value, &Origin)> {
        self.iter().filter_map(|(o, origin)| match o {
            MeshObject::DestinationRule(dr, raw) => Some((dr.as_ref(), raw, origin)),
            _ => None,
        })
    }

    /// Adds what another load found, with the same redefinition rule.
    pub fn extend(&mut self, other: Loaded) {
        self.files.extend(other.files);
        self.notes.extend(other.notes);
        self.objects.extend(other.objects);
        self.origins.extend(other.origins);
        self.dedup();
    }

    fn push(&mut self, object: MeshObject, origin: Origin) {
        self.objects.push(object);
        self.origins.push(origin);
    }

    /// Keeps the last definition of every (kind, namespace, name), in the place of the first.
    fn dedup(&mut self) {
        let mut seen: HashMap<(ObjectKind, String, String), usize> = HashMap::new();
        let objects = std::mem::take(&mut self.objects);
        let origins = std::mem::take(&mut self.origins);
        for (o, origin) in objects.into_iter().zip(origins) {
            let Some(key) = identity(&o) else {
                self.push(o, origin);
                continue;
            };
            match seen.get(&key) {
                Some(&i) => {
                    let (kind, ns, name) = &key;
                    let id = if ns.is_empty() {
                        format!("{kind} {name}")
                    } else {
                        format!("{kind} {ns}/{name}")
                    };
                    self.notes.push(format!(
                        "{origin}: {id} replaces the one at {} (the later definition wins, as with kubectl apply)",
                        self.origins[i]
                    ));
                    self.objects[i] = o;
                    self.origins[i] = origin;
                }
                None => {
                    seen.insert(key, self.objects.len());
                    self.push(o, origin);
                }
            }
        }
    }
}

fn identity(object: &MeshObject) -> Option<(ObjectKind, String, String)> {
    let meta = match object {
        MeshObject::Policy(p) | MeshObject::MeshPolicy(p) => &p.metadata,
        MeshObject::PeerAuthentication(pa) => &pa.metadata,
        MeshObject::DestinationRule(dr, _) => &dr.metadata,
        MeshObject::Service(s) => &s.metadata,
        MeshObject::Ingress(i) => &i.metadata,
        MeshObject::IngressClass(c) => &c.metadata,
        MeshObject::Namespace(n) => &n.metadata,
        MeshObject::Route(_, r) => &r.metadata,
        MeshObject::Gateway(g) => &g.metadata,
        MeshObject::GatewayClass(c) => &c.metadata,
        MeshObject::ReferenceGrant(g) => &g.metadata,
    };
    let name = meta.name.clone().filter(|n| !n.is_empty())?;
    Some((
        object.kind(),
        meta.namespace.clone().unwrap_or_default(),
        name,
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A YAML syntax error; `line` and `column` are 1-based.
    #[error("{}:{line}:{column}: YAML syntax error: {message}", path.display())]
    Yaml {
        path: PathBuf,
        document: usize,
        line: usize,
        column: usize,
        message: String,
    },
    /// A JSON syntax error; `line` and `column` are 1-based.
    #[error("{}:{line}:{column}: JSON syntax error: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A document that cannot be turned into JSON (a mapping key that is itself a
    /// mapping or a sequence, a bad merge key).
    #[error("{origin}: {message}")]
    Convert { origin: Origin, message: String },
    /// An object of a kind the contract reads that does not parse.
    #[error("{origin}: {source}")]
    Object {
        origin: Origin,
        #[source]
        source: ModelError,
    },
}

impl LoadError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            LoadError::Io { path, .. }
            | LoadError::Yaml { path, .. }
            | LoadError::Json { path, .. } => path,
            LoadError::Convert { origin, .. } | LoadError::Object { origin, .. } => &origin.path,
        }
    }
}

/// Reads files and folders, with namespaced objects that have none put in [`DEFAULT_NAMESPACE`].
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    load_paths_in(paths, DEFAULT_NAMESPACE)
}

/// Like [`load_paths`], with another namespace for objects that have none.
pub fn load_paths_in(paths: &[PathBuf], default_namespace: &str) -> Result<Loaded, LoadError> {
    let mut files = Vec::new();
    let mut visited = HashSet::new();
    for path in paths {
        collect(path, true, &mut files, &mut visited)?;
    }
    let mut loaded = Loaded::default();
    let mut read = HashSet::new();
    for file in files {
        // The same file named twice (a file and its folder) is read once.
        let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if !read.insert(key) {
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Io {
            path: file.clone(),
            source,
        })?;
        let one = parse_str_in(&text, &file, default_namespace)?;
        loaded.objects.extend(one.objects);
        loaded.origins.extend(one.origins);
        loaded.notes.extend(one.notes);
        loaded.files.push(file);
    }
    loaded.dedup();
    Ok(loaded)
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"))
}

fn collect(
    path: &Path,
    explicit: bool,
    files: &mut Vec<PathBuf>,
    visited: &mut HashSet<PathBuf>,
) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        if explicit || is_manifest(path) {
            files.push(path.to_path_buf());
        }
        return Ok(());
    }
    // A symlink loop would otherwise recurse forever.
    let canonical = std::fs::canonicalize(path).map_err(io)?;
    if !visited.insert(canonical) {
        return Ok(());
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        entries.push(entry.path());
    }
    entries.sort();
    for entry in entries {
        collect(&entry, false, files, visited)?;
    }
    Ok(())
}

/// Parses one file's text; `path` names it in origins and errors, and picks the
/// syntax (`.json`: JSON, anything else: YAML, which also reads most JSON).
pub fn parse_str(text: &str, path: impl AsRef<Path>) -> Result<Loaded, LoadError> {
    parse_str_in(text, path.as_ref(), DEFAULT_NAMESPACE)
}

/// Like [`parse_str`], with another namespace for objects that have none.
pub fn parse_str_in(
    text: &str,
    path: impl AsRef<Path>,
    default_namespace: &str,
) -> Result<Loaded, LoadError> {
    let path = path.as_ref();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let json = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let documents = if json {
        json_documents(text, path)?
    } else {
        yaml_documents(text, path)?
    };
    let mut loaded = Loaded {
        files: vec![path.to_path_buf()],
        ..Loaded::default()
    };
    for (origin, value) in documents {
        add_document(&mut loaded, origin, value, default_namespace)?;
    }
    loaded.dedup();
    Ok(loaded)
}

fn yaml_documents(text: &str, path: &Path) -> Result<Vec<(Origin, Value)>, LoadError> {
    let lines = yaml_document_lines(text);
    let mut values = Vec::new();
    for (document, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        match serde_yaml_ng::Value::deserialize(de) {
            Ok(v) => values.push(v),
            Err(e) => {
                let (line, column) = e.location().map_or_else(
                    // Errors without a position: the document's first line.
                    || (lines.get(document).copied().unwrap_or(1), 1),
                    |l| (l.line(), l.column()),
                );
                return Err(LoadError::Yaml {
                    path: path.to_path_buf(),
                    document,
                    line,
                    column,
                    message: strip_location(&e.to_string(), line, column),
                });
            }
        }
    }
    let lines_known = lines.len() == values.len();
    let mut out = Vec::with_capacity(values.len());
    for (document, mut value) in values.into_iter().enumerate() {
        let origin = Origin {
            path: path.to_path_buf(),
            document,
            line: if lines_known {
                Some(lines[document])
            } else {
                None
            },
            item: None,
        };
        if let Err(e) = value.apply_merge() {
            return Err(LoadError::Convert {
                origin,
                message: format!("YAML merge key: {e}"),
            });
        }
        match yaml_to_json(value) {
            Ok(json) => out.push((origin, json)),
            Err(message) => return Err(LoadError::Convert { origin, message }),
        }
    }
    Ok(out)
}

/// The 1-based line where each YAML document's content starts, found by scanning for
/// `---` and `...` markers at column 0 (they cannot occur inside content). When the
/// count disagrees with the parser's, the caller drops the lines.
fn yaml_document_lines(text: &str) -> Vec<usize> {
    let marker = |line: &str, m: &str| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    };
    let content = |line: &str| {
        let t = line.trim();
        !t.is_empty() && !t.starts_with('#')
    };
    let mut starts = Vec::new();
    // The open document's marker line, and its first content line.
    let mut open: Option<(usize, Option<usize>)> = None;
    let close = |open: &mut Option<(usize, Option<usize>)>, starts: &mut Vec<usize>| {
        if let Some((marker_line, first)) = open.take() {
            starts.push(first.unwrap_or(marker_line));
        }
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if marker(line, "---") {
            close(&mut open, &mut starts);
            let inline = content(&line[3..]);
            open = Some((n, inline.then_some(n)));
        } else if marker(line, "...") {
            close(&mut open, &mut starts);
        } else if line.starts_with('%') && open.is_none() {
            // A directive belongs to the next explicit document.
        } else if content(line) {
            match &mut open {
                Some((_, first @ None)) => *first = Some(n),
                Some(_) => {}
                None => open = Some((n, Some(n))),
            }
        }
    }
    close(&mut open, &mut starts);
    if starts.is_empty() {
        // An empty stream is one empty document.
        starts.push(1);
    }
    starts
}

fn json_documents(text: &str, path: &Path) -> Result<Vec<(Origin, Value)>, LoadError> {
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut offset = 0;
    loop {
        let start = offset + (text[offset..].len() - text[offset..].trim_start().len());
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                out.push((
                    Origin {
                        path: path.to_path_buf(),
                        document: out.len(),
                        line: Some(text[..start].matches('\n').count() + 1),
                        item: None,
                    },
                    value,
                ));
                offset = stream.byte_offset();
            }
            Some(Err(e)) => {
                return Err(LoadError::Json {
                    path: path.to_path_buf(),
                    line: e.line(),
                    column: e.column(),
                    message: strip_location(&e.to_string(), e.line(), e.column()),
                })
            }
        }
    }
    Ok(out)
}

/// The parser's message without the position the error already starts with; any
/// other position in it (`while parsing a flow sequence at line 3 column 4`) stays.
fn strip_location(message: &str, line: usize, column: usize) -> String {
    message.replacen(&format!(" at line {line} column {column}"), "", 1)
}

/// YAML -> JSON: non-string keys are stringified, tags are dropped, nulls stay nulls.
fn yaml_to_json(value: serde_yaml_ng::Value) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => yaml_number(&n),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(yaml_key(k)?, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

fn yaml_number(n: &serde_yaml_ng::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::from(i)
    } else if let Some(u) = n.as_u64() {
        Value::from(u)
    } else {
        n.as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(n.to_string()), Value::Number)
    }
}

fn yaml_key(key: serde_yaml_ng::Value) -> Result<String, String> {
    use serde_yaml_ng::Value as Y;
    match key {
        Y::String(s) => Ok(s),
        Y::Number(n) => Ok(n.to_string()),
        Y::Bool(b) => Ok(b.to_string()),
        Y::Null => Ok("null".to_string()),
        Y::Tagged(t) => yaml_key(t.value),
        Y::Sequence(_) | Y::Mapping(_) => {
            Err("a mapping key is a sequence or a mapping, which JSON cannot hold".to_string())
        }
    }
}

fn add_document(
    loaded: &mut Loaded,
    origin: Origin,
    value: Value,
    default_namespace: &str,
) -> Result<(), LoadError> {
    let Value::Object(map) = value else {
        if !value.is_null() {
            loaded.notes.push(format!(
                "{origin}: skipped: the document is not a mapping, so not a Kubernetes object"
            ));
        }
        return Ok(());
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind = map.get("kind").and_then(Value::as_str);
    if map.get("apiVersion").is_none() && map.get("kind").is_none() {
        loaded.notes.push(format!(
            "{origin}: skipped: no apiVersion and kind, so not a Kubernetes object"
        ));
        return Ok(());
    }
    if let (Some(api_version), Some(kind)) = (api_version, kind) {
        if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
            let (api_version, kind) = (api_version.to_string(), kind.to_string());
            let item_kind = kind.strip_suffix("List").unwrap_or_default().to_string();
            let items = match map.get("items") {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(_) => {
                    return Err(LoadError::Convert {
                        origin,
                        message: format!("{kind}: `items` is not a sequence"),
                    })
                }
            };
            for (i, mut item) in items.into_iter().enumerate() {
                let item_origin = Origin {
                    item: Some(i),
                    ..origin.clone()
                };
                if let Value::Object(m) = &mut item {
                    // Typed lists from the API server (ServiceList) omit the items' type.
                    if !item_kind.is_empty() {
                        m.entry("apiVersion")
                            .or_insert_with(|| Value::String(api_version.clone()));
                        m.entry("kind")
                            .or_insert_with(|| Value::String(item_kind.clone()));
                    }
                }
                add_document(loaded, item_origin, item, default_namespace)?;
            }
            return Ok(());
        }
        let Some(object_kind) = ObjectKind::of(api_version, kind) else {
            let name = map
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            loaded.notes.push(format!(
                "{origin}: skipped {api_version} {kind} {name:?}: a kind mtls-guard does not read"
            ));
            return Ok(());
        };
        let mut map = map;
        if object_kind.info().namespaced {
            set_default_namespace(&mut map, default_namespace);
        }
        return match MeshObject::from_value(Value::Object(map)) {
            Ok(Some(object)) => {
                loaded.push(object, origin);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(source) => Err(LoadError::Object { origin, source }),
        };
    }
    // One of apiVersion/kind is missing or not a string: a broken object.
    Err(LoadError::Object {
        origin,
        source: ModelError::MissingType,
    })
}

fn set_default_namespace(map: &mut Map<String, Value>, namespace: &str) {
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        let missing = meta
            .get("namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if missing {
            meta.insert(
                "namespace".to_string(),
                Value::String(namespace.to_string()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(text: &str) -> Loaded {
        parse_str(text, "t.yaml").expect("parses")
    }

    #[test]
    fn document_lines_follow_markers() {
        let text = "# c\n---\napiVersion: v1\nkind: A\n---\n\n# x\nkind: B\n...\nkind: C\n";
        assert_eq!(yaml_document_lines(text), vec![3, 8, 10]);
        assert_eq!(yaml_document_lines("a: 1\n"), vec![1]);
        assert_eq!(yaml_document_lines(""), vec![1]);
        assert_eq!(yaml_document_lines("a: 1\n---\n"), vec![1, 2]);
        assert_eq!(yaml_document_lines("--- {a: 1}\n"), vec![1]);
    }

    #[test]
    fn integer_keys_become_strings_and_nulls_stay() {
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("portLevelMtls:\n  9080:\n    mode: DISABLE\nmtls:\n").unwrap();
        let json = yaml_to_json(v).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"portLevelMtls": {"9080": {"mode": "DISABLE"}}, "mtls": null})
        );
    }

    #[test]
    fn complex_keys_are_errors() {
        let err = parse_str(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n? [1, 2]\n: x\n",
            "k.yaml",
        )
        .unwrap_err();
        assert!(matches!(err, LoadError::Convert { .. }), "{err}");
    }

    #[test]
    fn namespace_defaults_except_cluster_scoped() {
        let l = objects(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n",
        );
        match &l.objects[0] {
            MeshObject::Service(s) => assert_eq!(s.metadata.namespace.as_deref(), Some("default")),
            o => panic!("{o:?}"),
        }
        match &l.objects[1] {
            MeshObject::Namespace(n) => assert_eq!(n.metadata.namespace, None),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn origin_display() {
        let mut o = Origin::file("a/b.yaml");
        assert_eq!(o.to_string(), "a/b.yaml:#1");
        o.line = Some(7);
        o.item = Some(2);
        assert_eq!(o.to_string(), "a/b.yaml:7[2]");
    }
}
