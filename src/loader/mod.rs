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
//!   does not parse, is an error naming the file and the line or document (and, for an
//!   object, the JSON path of the field at fault);
//! - `-` is standard input for [`load_inputs`]; reading no file at all is an error only
//!   when the caller asks for input ([`Loaded::require_input`]).
//!
//! Loading is linear in the input: each document becomes typed objects before the next
//! is parsed, document lines are counted in one pass over the text, and a `List`'s items
//! are taken, not copied (benches/load_file.rs measures one big file against the same
//! objects in ten). A YAML file of 1 MB or more has its documents, or the items of its
//! one `List`, parsed on several threads ([`parallel`]), with the same result.

mod parallel;

use crate::model::{DestinationRule, MeshObject, ModelError, ObjectKind};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read;
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

    /// Fails with [`LoadError::NoInput`] when no file was read from `paths` (an empty
    /// folder, one without YAML/JSON, an empty standard input), unless `allow_empty`:
    /// a mistyped path must not pass as a clean check.
    pub fn require_input(self, paths: &[PathBuf], allow_empty: bool) -> Result<Self, LoadError> {
        if self.files.is_empty() && !allow_empty {
            return Err(LoadError::NoInput {
                paths: paths.to_vec(),
            });
        }
        Ok(self)
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
        let mut seen: HashMap<Identity, usize> = HashMap::new();
        let objects = std::mem::take(&mut self.objects);
        let origins = std::mem::take(&mut self.origins);
        for (o, origin) in objects.into_iter().zip(origins) {
            let Some(key) = identity(&o) else {
                self.push(o, origin);
                continue;
            };
            match seen.get(&key) {
                Some(&i) => {
                    self.notes
                        .push(replacement_note(&key, &origin, &self.origins[i]));
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

/// What the redefinition rule says when `origin` replaces the object read at `previous`.
fn replacement_note(key: &Identity, origin: &Origin, previous: &Origin) -> String {
    let (kind, ns, name) = key;
    let id = if ns.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {ns}/{name}")
    };
    format!(
        "{origin}: {id} replaces the one at {previous} (the later definition wins, as with kubectl apply)"
    )
}

/// Kind, namespace and name: what the redefinition rule compares.
type Identity = (ObjectKind, String, String);

fn identity(object: &MeshObject) -> Option<Identity> {
    let name = object.name();
    if name.is_empty() {
        return None;
    }
    Some((
        object.kind(),
        object.namespace().to_string(),
        name.to_string(),
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
    /// Nothing to read: see [`Loaded::require_input`].
    #[error("no input: {} (--allow-empty accepts that)", no_input(paths))]
    NoInput { paths: Vec<PathBuf> },
    /// An object of a kind the contract reads that does not parse.
    #[error("{origin}: {source}")]
    Object {
        origin: Origin,
        #[source]
        source: ModelError,
    },
}

/// What was looked at and found empty.
fn no_input(paths: &[PathBuf]) -> String {
    let (stdin, files): (Vec<_>, Vec<_>) = paths.iter().partition(|p| p.as_os_str() == STDIN_PATH);
    let mut parts = Vec::new();
    if !files.is_empty() {
        let files: Vec<_> = files.iter().map(|p| p.display().to_string()).collect();
        parts.push(format!(
            "no *.yaml, *.yml or *.json file in {}",
            files.join(", ")
        ));
    }
    if !stdin.is_empty() {
        parts.push("standard input is empty".to_string());
    }
    parts.join("; ")
}

impl LoadError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            LoadError::Io { path, .. }
            | LoadError::Yaml { path, .. }
            | LoadError::Json { path, .. } => path,
            LoadError::Convert { origin, .. } | LoadError::Object { origin, .. } => &origin.path,
            LoadError::NoInput { paths } => paths.first().map_or(Path::new(""), |p| p),
        }
    }
}

/// Reads files and folders, with namespaced objects that have none put in [`DEFAULT_NAMESPACE`].
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    load_paths_in(paths, DEFAULT_NAMESPACE)
}

/// Like [`load_paths`], with another namespace for objects that have none.
pub fn load_paths_in(paths: &[PathBuf], default_namespace: &str) -> Result<Loaded, LoadError> {
    load_inputs(paths, default_namespace, None)
}

/// The path that means standard input to [`load_inputs`], as with linters.
pub const STDIN_PATH: &str = "-";
/// How standard input is named in origins and errors.
pub const STDIN_NAME: &str = "<stdin>";

/// Like [`load_paths_in`]; a path `-` reads `stdin` when given (once, however often it
/// is named). Standard input is JSON when its first character other than white space
/// is `{`, as kubectl decides, and YAML otherwise; it counts as a file read only when
/// it holds more than white space, so an empty pipe is no input.
pub fn load_inputs(
    paths: &[PathBuf],
    default_namespace: &str,
    stdin: Option<&mut dyn Read>,
) -> Result<Loaded, LoadError> {
    load(paths, default_namespace, stdin, None)
}

/// Like [`load_paths_in`], but every object goes to `apply` as soon as it is read, so
/// that the objects of a large input are never all held at once (`serve` indexes
/// them as they come). What would replace an earlier definition comes later to
/// `apply` too, with the same note as [`load_paths_in`] gives. The result holds the
/// notes and the files read, and no objects.
pub fn stream_paths_in(
    paths: &[PathBuf],
    default_namespace: &str,
    apply: &mut dyn FnMut(MeshObject),
) -> Result<Loaded, LoadError> {
    let mut sink = Sink {
        apply,
        seen: HashMap::new(),
    };
    load(paths, default_namespace, None, Some(&mut sink))
}

/// Objects handed on as they are read, with where each identity was last defined.
struct Sink<'a> {
    apply: &'a mut dyn FnMut(MeshObject),
    seen: HashMap<Identity, Origin>,
}

fn load(
    paths: &[PathBuf],
    default_namespace: &str,
    mut stdin: Option<&mut dyn Read>,
    mut sink: Option<&mut Sink>,
) -> Result<Loaded, LoadError> {
    let mut files = Vec::new();
    let mut visited = HashSet::new();
    for path in paths {
        if stdin.is_some() && path.as_os_str() == STDIN_PATH {
            files.push(path.clone());
            continue;
        }
        collect(path, true, &mut files, &mut visited)?;
    }
    let mut loaded = Loaded::default();
    let mut read = HashSet::new();
    for file in files {
        if stdin.is_some() && file.as_os_str() == STDIN_PATH {
            let Some(input) = stdin.take() else { continue };
            let name = PathBuf::from(STDIN_NAME);
            let mut text = String::new();
            input
                .read_to_string(&mut text)
                .map_err(|source| LoadError::Io {
                    path: name.clone(),
                    source,
                })?;
            let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
            if trimmed.is_empty() {
                continue;
            }
            let syntax = if trimmed.starts_with('{') {
                Syntax::Json
            } else {
                Syntax::Yaml
            };
            parse_into(
                &mut loaded,
                sink.as_deref_mut(),
                &text,
                &name,
                syntax,
                default_namespace,
            )?;
            loaded.files.push(name);
            continue;
        }
        // The same file named twice (a file and its folder) is read once.
        let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if !read.insert(key) {
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Io {
            path: file.clone(),
            source,
        })?;
        parse_into(
            &mut loaded,
            sink.as_deref_mut(),
            &text,
            &file,
            Syntax::of(&file),
            default_namespace,
        )?;
        drop(text);
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

/// The syntax a file is read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Json,
    /// YAML, which also reads most JSON.
    Yaml,
}

impl Syntax {
    /// `.json`: JSON, anything else: YAML.
    fn of(path: &Path) -> Syntax {
        let json = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if json {
            Syntax::Json
        } else {
            Syntax::Yaml
        }
    }
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
    let mut loaded = Loaded::default();
    parse_into(
        &mut loaded,
        None,
        text,
        path,
        Syntax::of(path),
        default_namespace,
    )?;
    loaded.files.push(path.to_path_buf());
    loaded.dedup();
    Ok(loaded)
}

/// What one file's documents are read into. Each document becomes typed objects
/// before the next one is parsed, so a file's text is never held beside all of its
/// documents as values (a 220,000-object bundle stays small).
struct FileReader<'a, 's> {
    loaded: &'a mut Loaded,
    /// Where objects go when they are not kept in `loaded`.
    sink: Option<&'a mut Sink<'s>>,
    default_namespace: &'a str,
    /// Notes on this file, formatted once the documents' lines are known to be right.
    notes: Vec<(Origin, String)>,
    /// Bytes examined to find documents' lines (each byte once: see the tests).
    line_bytes: usize,
    /// While [`parallel`] reads a file: the sink's identities it set, with what they
    /// had before, so that a fallback to the sequential path can undo them.
    undo: Option<Vec<(Identity, Option<Origin>)>>,
}

/// How far a [`FileReader`] had got, to go back to.
struct Checkpoint {
    objects: usize,
    loaded_notes: usize,
    notes: usize,
}

impl FileReader<'_, '_> {
    fn note(&mut self, origin: &Origin, message: String) {
        self.notes.push((origin.clone(), message));
    }

    fn push(&mut self, object: MeshObject, origin: Origin) {
        let Some(sink) = self.sink.as_deref_mut() else {
            self.loaded.push(object, origin);
            return;
        };
        if let Some(key) = identity(&object) {
            if let Some(previous) = sink.seen.get(&key) {
                let note = replacement_note(&key, &origin, previous);
                self.loaded.notes.push(note);
            }
            match &mut self.undo {
                Some(undo) => {
                    let previous = sink.seen.insert(key.clone(), origin);
                    undo.push((key, previous));
                }
                None => {
                    sink.seen.insert(key, origin);
                }
            }
        }
        (sink.apply)(object);
    }

    /// Starts recording what [`Self::rewind`] undoes.
    fn checkpoint(&mut self) -> Checkpoint {
        self.undo = Some(Vec::new());
        Checkpoint {
            objects: self.loaded.objects.len(),
            loaded_notes: self.loaded.notes.len(),
            notes: self.notes.len(),
        }
    }

    /// Keeps what was read since `checkpoint`.
    fn commit(&mut self) {
        self.undo = None;
    }

    /// Forgets what was read since `checkpoint`: kept objects, notes, and the sink's
    /// identities. Objects already handed to the sink stay handed: the sequential
    /// path hands each again, in the same order, so the last one given still wins.
    fn rewind(&mut self, to: Checkpoint) {
        self.loaded.objects.truncate(to.objects);
        self.loaded.origins.truncate(to.objects);
        self.loaded.notes.truncate(to.loaded_notes);
        self.notes.truncate(to.notes);
        let undo = self.undo.take().unwrap_or_default();
        if let Some(sink) = self.sink.as_deref_mut() {
            for (key, previous) in undo.into_iter().rev() {
                match previous {
                    Some(origin) => sink.seen.insert(key, origin),
                    None => sink.seen.remove(&key),
                };
            }
        }
    }
}

fn parse_into(
    loaded: &mut Loaded,
    sink: Option<&mut Sink>,
    text: &str,
    path: &Path,
    syntax: Syntax,
    default_namespace: &str,
) -> Result<(), LoadError> {
    parse_counted(loaded, sink, text, path, syntax, default_namespace).0
}

/// [`parse_into`], also returning how many bytes were examined to number lines.
fn parse_counted(
    loaded: &mut Loaded,
    sink: Option<&mut Sink>,
    text: &str,
    path: &Path,
    syntax: Syntax,
    default_namespace: &str,
) -> (Result<(), LoadError>, usize) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first_object = loaded.objects.len();
    let mut reader = FileReader {
        loaded,
        sink,
        default_namespace,
        notes: Vec::new(),
        line_bytes: 0,
        undo: None,
    };
    let result = match syntax {
        Syntax::Json => json_documents(&mut reader, text, path),
        Syntax::Yaml => yaml_documents(&mut reader, text, path, first_object),
    };
    let FileReader {
        loaded,
        notes,
        line_bytes,
        ..
    } = reader;
    loaded.notes.extend(
        notes
            .into_iter()
            .map(|(origin, message)| format!("{origin}: {message}")),
    );
    (result, line_bytes)
}

fn yaml_documents(
    reader: &mut FileReader,
    text: &str,
    path: &Path,
    first_object: usize,
) -> Result<(), LoadError> {
    let DocumentScan { lines, cuts } = yaml_document_scan(text);
    reader.line_bytes += text.len();
    if let Some(cuts) = cuts {
        if parallel::yaml_documents(reader, text, path, &lines, &cuts) {
            return Ok(());
        }
    }
    let syntax_error = |document: usize, e: serde_yaml_ng::Error| {
        let (line, column) = e.location().map_or_else(
            // Errors without a position: the document's first line.
            || (lines.get(document).copied().unwrap_or(1), 1),
            |l| (l.line(), l.column()),
        );
        LoadError::Yaml {
            path: path.to_path_buf(),
            document,
            line,
            column,
            message: strip_location(&e.to_string(), line, column),
        }
    };
    let mut documents = serde_yaml_ng::Deserializer::from_str(text).enumerate();
    let mut count = 0;
    while let Some((document, de)) = documents.next() {
        count += 1;
        let origin = Origin {
            path: path.to_path_buf(),
            document,
            line: lines.get(document).copied(),
            item: None,
        };
        let value = serde_yaml_ng::Value::deserialize(de).map_err(|e| syntax_error(document, e))?;
        if let Err(mut error) = yaml_document(reader, origin, value) {
            // A syntax error further on is reported first, as the file cannot be read
            // at all; and the line is only trusted when the documents were all counted.
            for (document, de) in documents.by_ref() {
                count += 1;
                serde::de::IgnoredAny::deserialize(de).map_err(|e| syntax_error(document, e))?;
            }
            if count != lines.len() {
                if let LoadError::Convert { origin, .. } | LoadError::Object { origin, .. } =
                    &mut error
                {
                    origin.line = None;
                }
            }
            return Err(error);
        }
    }
    // The line scan disagrees with the parser (an unusual stream): say `#N` instead.
    if count != lines.len() {
        for origin in &mut reader.loaded.origins[first_object..] {
            origin.line = None;
        }
        if let Some(sink) = reader.sink.as_deref_mut() {
            for origin in sink.seen.values_mut().filter(|o| o.path == path) {
                origin.line = None;
            }
        }
        for (origin, _) in &mut reader.notes {
            origin.line = None;
        }
    }
    Ok(())
}

/// One YAML document: merge keys applied, converted to JSON; a `List`'s items one at
/// a time, so that the list is never held twice.
fn yaml_document(
    reader: &mut FileReader,
    origin: Origin,
    value: serde_yaml_ng::Value,
) -> Result<(), LoadError> {
    match json_document(value) {
        Ok(document) => add_json_document(reader, origin, document),
        Err(message) => Err(LoadError::Convert { origin, message }),
    }
}

/// A YAML document made JSON, ready for the reader.
enum JsonDocument {
    One(Value),
    /// A `List` document: its type and its items, converted one at a time as they
    /// are added, so that the list is never held twice.
    List {
        api_version: String,
        kind: String,
        items: Vec<serde_yaml_ng::Value>,
    },
}

/// The pure half of [`yaml_document`] (no reader): merge keys applied, the value
/// converted, or a `List`'s items taken out. The parallel path runs it on workers.
fn json_document(mut value: serde_yaml_ng::Value) -> Result<JsonDocument, String> {
    if let Err(e) = value.apply_merge() {
        return Err(format!("YAML merge key: {e}"));
    }
    if let serde_yaml_ng::Value::Mapping(map) = &mut value {
        let api_version = map.get("apiVersion").and_then(serde_yaml_ng::Value::as_str);
        let kind = map.get("kind").and_then(serde_yaml_ng::Value::as_str);
        if let (Some(api_version), Some(kind)) = (api_version, kind) {
            let items = map.get("items");
            if is_list(kind, items.is_some())
                && matches!(items, Some(serde_yaml_ng::Value::Sequence(_)))
            {
                let (api_version, kind) = (api_version.to_string(), kind.to_string());
                let Some(serde_yaml_ng::Value::Sequence(items)) = map.remove("items") else {
                    unreachable!("checked above")
                };
                return Ok(JsonDocument::List {
                    api_version,
                    kind,
                    items,
                });
            }
        }
    }
    yaml_to_json(value).map(JsonDocument::One)
}

fn add_json_document(
    reader: &mut FileReader,
    origin: Origin,
    document: JsonDocument,
) -> Result<(), LoadError> {
    match document {
        JsonDocument::One(json) => add_document(reader, origin, json),
        JsonDocument::List {
            api_version,
            kind,
            items,
        } => {
            let items = items.into_iter().map(yaml_to_json);
            add_list(reader, &origin, &api_version, &kind, items)
        }
    }
}

/// The 1-based line where each YAML document's content starts, found by scanning for
/// `---` and `...` markers at column 0 (they cannot occur inside content). When the
/// count disagrees with the parser's, the caller drops the lines.
#[cfg(test)]
fn yaml_document_lines(text: &str) -> Vec<usize> {
    yaml_document_scan(text).lines
}

/// What one pass over a YAML stream's lines finds.
struct DocumentScan {
    /// See [`yaml_document_lines`].
    lines: Vec<usize>,
    /// Byte offsets that cut the text into one piece per document (the pieces after
    /// the first start there), for [`parallel`]; `None` when the text has
    /// directives (`%YAML`, `%TAG`), which pieces parsed alone would lose.
    cuts: Option<Vec<usize>>,
}

fn yaml_document_scan(text: &str) -> DocumentScan {
    let marker = |line: &str, m: &str| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    };
    let content = |line: &str| {
        let t = line.trim();
        !t.is_empty() && !t.starts_with('#')
    };
    let mut starts = Vec::new();
    let mut cuts = Vec::new();
    let mut directives = false;
    // The last cut was made by a `...` (the piece after it may hold no document).
    let mut cut_by_end = false;
    // The open document's marker line, and its first content line.
    let mut open: Option<(usize, Option<usize>)> = None;
    let close = |open: &mut Option<(usize, Option<usize>)>, starts: &mut Vec<usize>| {
        if let Some((marker_line, first)) = open.take() {
            starts.push(first.unwrap_or(marker_line));
        }
    };
    let mut offset = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (n, start) = (i + 1, offset);
        offset += raw.len();
        directives |= line.starts_with('%');
        if marker(line, "---") {
            if open.is_some() {
                cuts.push(start);
                cut_by_end = false;
            }
            close(&mut open, &mut starts);
            let inline = content(&line[3..]);
            open = Some((n, inline.then_some(n)));
        } else if marker(line, "...") {
            if open.is_some() {
                cuts.push(offset);
                cut_by_end = true;
            }
            close(&mut open, &mut starts);
        } else if line.starts_with('%') && open.is_none() {
            // A directive belongs to the next explicit document.
        } else if content(line) {
            match &mut open {
                Some((_, first @ None)) => *first = Some(n),
                Some(_) => {}
                None => {
                    open = Some((n, Some(n)));
                    cut_by_end = false;
                }
            }
        }
    }
    if open.is_none() && cut_by_end {
        // Only comments or blank lines after the last `...`: no document there.
        cuts.pop();
    }
    close(&mut open, &mut starts);
    if starts.is_empty() {
        // An empty stream is one empty document.
        starts.push(1);
    }
    DocumentScan {
        lines: starts,
        cuts: (!directives).then_some(cuts),
    }
}

/// Line numbers of byte offsets asked in increasing order: every byte is examined
/// once, however many documents the text holds.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    /// 1-based line at `offset`.
    line: usize,
    scanned: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        LineCounter {
            text: text.as_bytes(),
            offset: 0,
            line: 1,
            scanned: 0,
        }
    }

    /// The 1-based line of byte `offset`, which is not before the previous one asked.
    fn line_at(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        if offset < self.offset {
            // Not reached by the loader; counting again from the start is right anyway.
            self.offset = 0;
            self.line = 1;
        }
        let span = &self.text[self.offset..offset];
        self.line += span.iter().filter(|&&b| b == b'\n').count();
        self.scanned += span.len();
        self.offset = offset;
        self.line
    }
}

fn json_documents(reader: &mut FileReader, text: &str, path: &Path) -> Result<(), LoadError> {
    let mut lines = LineCounter::new(text);
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let syntax_error = |e: serde_json::Error| LoadError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: strip_location(&e.to_string(), e.line(), e.column()),
    };
    let mut document = 0;
    let result = loop {
        // The next value starts after the white space that follows the previous one.
        let offset = stream.byte_offset();
        let rest = &text[offset..];
        let start = offset + (rest.len() - rest.trim_start().len());
        match stream.next() {
            None => break Ok(()),
            Some(Ok(value)) => {
                let origin = Origin {
                    path: path.to_path_buf(),
                    document,
                    line: Some(lines.line_at(start)),
                    item: None,
                };
                document += 1;
                if let Err(e) = add_document(reader, origin, value) {
                    // A syntax error further on is reported first: the file cannot be read.
                    break match stream.find_map(Result::err) {
                        Some(syntax) => Err(syntax_error(syntax)),
                        None => Err(e),
                    };
                }
            }
            Some(Err(e)) => break Err(syntax_error(e)),
        }
    };
    reader.line_bytes += lines.scanned;
    result
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

/// `kind: List`, and a `*List` kind with `items` (`ServiceList` from the API server).
fn is_list(kind: &str, has_items: bool) -> bool {
    kind == "List" || (kind.ends_with("List") && has_items)
}

/// A `List`'s items, each read as a document of its own; an item without
/// `apiVersion`/`kind` gets the list's (typed lists from the API server omit them).
fn add_list(
    reader: &mut FileReader,
    origin: &Origin,
    api_version: &str,
    kind: &str,
    items: impl Iterator<Item = Result<Value, String>>,
) -> Result<(), LoadError> {
    for (i, item) in items.enumerate() {
        add_list_item(reader, origin, api_version, kind, i, item)?;
    }
    Ok(())
}

/// Item `i` of a `List` document at `origin`.
fn add_list_item(
    reader: &mut FileReader,
    origin: &Origin,
    api_version: &str,
    kind: &str,
    i: usize,
    item: Result<Value, String>,
) -> Result<(), LoadError> {
    let item_kind = kind.strip_suffix("List").unwrap_or_default();
    let item_origin = Origin {
        item: Some(i),
        ..origin.clone()
    };
    let mut item = match item {
        Ok(item) => item,
        Err(message) => {
            return Err(LoadError::Convert {
                origin: item_origin,
                message,
            })
        }
    };
    if let Value::Object(m) = &mut item {
        if !item_kind.is_empty() {
            m.entry("apiVersion")
                .or_insert_with(|| Value::String(api_version.to_string()));
            m.entry("kind")
                .or_insert_with(|| Value::String(item_kind.to_string()));
        }
    }
    add_document(reader, item_origin, item)
}

fn add_document(reader: &mut FileReader, origin: Origin, value: Value) -> Result<(), LoadError> {
    let Value::Object(mut map) = value else {
        if !value.is_null() {
            reader.note(
                &origin,
                "skipped: the document is not a mapping, so not a Kubernetes object".into(),
            );
        }
        return Ok(());
    };
    if map.get("apiVersion").is_none() && map.get("kind").is_none() {
        reader.note(
            &origin,
            "skipped: no apiVersion and kind, so not a Kubernetes object".into(),
        );
        return Ok(());
    }
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind = map.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        // One of apiVersion/kind is missing or not a string: a broken object.
        return Err(LoadError::Object {
            origin,
            source: ModelError::MissingType,
        });
    };
    if is_list(kind, map.contains_key("items")) {
        let (api_version, kind) = (api_version.to_string(), kind.to_string());
        let items = match map.remove("items") {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(LoadError::Convert {
                    origin,
                    message: format!("{kind}: `items` is not a sequence"),
                })
            }
        };
        return add_list(
            reader,
            &origin,
            &api_version,
            &kind,
            items.into_iter().map(Ok),
        );
    }
    let Some(object_kind) = ObjectKind::of(api_version, kind) else {
        let name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let message =
            format!("skipped {api_version} {kind} {name:?}: a kind mtls-guard does not read");
        reader.note(&origin, message);
        return Ok(());
    };
    if object_kind.info().namespaced {
        set_default_namespace(&mut map, reader.default_namespace);
    }
    match MeshObject::from_value(Value::Object(map)) {
        Ok(Some(object)) => {
            reader.push(object, origin);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(source) => Err(LoadError::Object { origin, source }),
    }
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

    /// Numbering the documents' lines examines each byte of a file once, so that a
    /// file of n documents loads in linear time. (It did not: the line of every JSON
    /// document was counted from the start of the file, n * n / 2 document lengths.)
    #[test]
    fn line_numbering_examines_each_byte_once() {
        let n = 2000;
        let object = |i: usize| {
            serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("s{i}"), "namespace": "n"},
                "spec": {"ports": [{"port": 8080}]},
            })
        };
        let lines: String = (0..n).map(|i| format!("{}\n", object(i))).collect();
        let pretty: String = (0..n).map(|i| format!("{:#}\n", object(i))).collect();
        let yaml: String = (0..n)
            .map(|i| format!("---\n{}", serde_yaml_ng::to_string(&object(i)).unwrap()))
            .collect();
        for (text, syntax, line_of_last) in [
            (&lines, Syntax::Json, n),
            (
                &pretty,
                Syntax::Json,
                1 + (n - 1) * pretty.lines().count() / n,
            ),
            (&yaml, Syntax::Yaml, 2 + (n - 1) * yaml.lines().count() / n),
        ] {
            let mut loaded = Loaded::default();
            let (result, examined) =
                parse_counted(&mut loaded, None, text, Path::new("big"), syntax, "default");
            result.unwrap();
            assert_eq!(loaded.objects.len(), n);
            assert_eq!(loaded.origins[n - 1].line, Some(line_of_last), "{syntax:?}");
            assert!(
                examined <= text.len(),
                "{syntax:?}: {examined} bytes examined to number the lines of {} bytes",
                text.len()
            );
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
