//! The loader over real files: the Bookinfo example, the captured API server lists
//! (`tests/fixtures/apiserver`), and hand-written YAML quirks.

use mtls_guard::loader::{self, LoadError, Loaded, Origin};
use mtls_guard::model::{MeshObject, ObjectKind, PolicyMode};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

fn kinds(l: &Loaded) -> Vec<ObjectKind> {
    l.objects.iter().map(MeshObject::kind).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bookinfo_example_folder() {
    let l = loader::load_paths(&[root().join("examples/bookinfo")]).expect("loads");
    let names: Vec<_> = l
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    // Sorted by name.
    assert_eq!(
        names,
        vec![
            "destination-rule-all-mtls.yaml",
            "ingress.yaml",
            "namespace.yaml",
            "policy.yaml",
            "services.yaml"
        ]
    );
    use ObjectKind::*;
    assert_eq!(
        kinds(&l),
        vec![
            DestinationRule,
            DestinationRule,
            DestinationRule,
            DestinationRule,
            Ingress,
            Namespace,
            Policy,
            Service,
            Service,
            Service,
            Service
        ]
    );
    assert_eq!(l.origins.len(), l.objects.len());
    assert!(l.notes.is_empty(), "{:?}", l.notes);
    let rules: Vec<(String, Option<usize>, usize)> = l
        .destination_rules()
        .map(|(dr, raw, origin)| {
            assert_eq!(raw["kind"], "DestinationRule");
            (
                dr.metadata.name.clone().unwrap(),
                origin.line,
                origin.document,
            )
        })
        .collect();
    assert_eq!(
        rules,
        vec![
            ("productpage".to_string(), Some(2), 0),
            ("reviews".to_string(), Some(17), 1),
            ("ratings".to_string(), Some(38), 2),
            ("details".to_string(), Some(62), 3),
        ]
    );
    // Every DestinationRule is the fixtures' "all mTLS" one (07-14).
    for (n, name) in [
        (7, "productpage"),
        (9, "reviews"),
        (11, "ratings"),
        (13, "details"),
    ] {
        let dir = fixtures().join("admission");
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{n:02}-"))
            })
            .unwrap();
        let review: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let (_, raw, _) = l
            .destination_rules()
            .find(|(dr, _, _)| dr.metadata.name.as_deref() == Some(name))
            .unwrap();
        assert_eq!(raw["spec"], review["request"]["object"]["spec"], "{name}");
        assert_eq!(raw["apiVersion"], review["request"]["object"]["apiVersion"]);
    }
}

#[test]
fn api_server_lists_without_item_types() {
    // ServiceList items from the API server carry no apiVersion/kind.
    let path = fixtures().join("apiserver/14-list-services.json");
    let l = loader::load_paths(std::slice::from_ref(&path)).expect("loads");
    assert!(!l.objects.is_empty());
    assert!(kinds(&l).iter().all(|k| *k == ObjectKind::Service));
    for (i, origin) in l.origins.iter().enumerate() {
        assert_eq!(origin.item, Some(i));
        assert_eq!(origin.line, Some(1));
        assert_eq!(origin.to_string(), format!("{}:1[{i}]", path.display()));
    }
    let l = loader::load_paths(&[fixtures().join("apiserver/12-list-policies-v1alpha1.json")])
        .expect("loads");
    assert!(kinds(&l).contains(&ObjectKind::Policy));
}

#[test]
fn admission_reviews_and_other_kinds_are_skipped_with_notes() {
    let not_mesh = fixtures().join("hand-written/not-mesh.yaml");
    let l = loader::load_paths(&[
        not_mesh.clone(),
        fixtures().join("admission/01-create-policy-default-v1-mutating.json"),
    ])
    .expect("loads");
    assert!(l.objects.is_empty());
    // Notes start with the origin: file and line of the document. The empty
    // document (line 27) is skipped without one.
    let at = |line: usize| format!("{}:{line}: skipped", not_mesh.display());
    assert_eq!(l.notes.len(), 5, "{:#?}", l.notes);
    for (note, line, says) in [
        (&l.notes[0], 2, "CustomResourceDefinition"),
        (&l.notes[1], 17, "apps/v1 Deployment"),
        (&l.notes[2], 29, "not a mapping"),
        (&l.notes[3], 32, "no apiVersion and kind"),
        (&l.notes[4], 1, "admission.k8s.io/v1 AdmissionReview"),
    ] {
        if line > 1 {
            assert!(note.starts_with(&at(line)), "{note}");
        }
        assert!(note.contains(says), "{note}");
    }
}

#[test]
fn yaml_null_mtls_is_kept() {
    let l = loader::parse_str(
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: null-trap, namespace: bookinfo}\nspec:\n  peers:\n  - mtls:\n",
        "p.yaml",
    )
    .unwrap();
    let MeshObject::Policy(p) = &l.objects[0] else {
        panic!("{:?}", l.objects)
    };
    assert_eq!(p.spec.mode(), PolicyMode::Strict);
    assert!(!p.spec.has_peer_without_mtls());

    let l = loader::parse_str(
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: dropped, namespace: bookinfo}\nspec:\n  peers:\n  - {}\n",
        "p.yaml",
    )
    .unwrap();
    let MeshObject::Policy(p) = &l.objects[0] else {
        panic!()
    };
    assert_eq!(p.spec.mode(), PolicyMode::Plaintext);
    assert!(p.spec.has_peer_without_mtls());
}

#[test]
fn integer_port_level_mtls_keys() {
    let l = loader::parse_str(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pp, namespace: bookinfo}\nspec:\n  selector: {matchLabels: {app: productpage}}\n  portLevelMtls:\n    9080: {mode: DISABLE}\n    \"9443\": {mode: STRICT}\n",
        "pa.yaml",
    )
    .unwrap();
    let MeshObject::PeerAuthentication(pa) = &l.objects[0] else {
        panic!()
    };
    let keys: Vec<&str> = pa.spec.port_level_mtls.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["9080", "9443"]);
}

#[test]
fn multi_document_yaml_lists_and_empty_documents() {
    let text = "\
# leading comment
---
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: n}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c, namespace: n}
---
# only a comment
---
just a string
---
notes: a mapping that is not an object
---
apiVersion: v1
kind: Namespace
metadata: {name: n}
";
    let l = loader::parse_str(text, "m.yaml").unwrap();
    assert_eq!(kinds(&l), vec![ObjectKind::Service, ObjectKind::Namespace]);
    assert_eq!(
        l.origins[0],
        Origin {
            path: "m.yaml".into(),
            document: 1,
            line: Some(4),
            item: Some(0),
        }
    );
    assert_eq!(l.origins[1].document, 5);
    assert_eq!(l.origins[1].line, Some(20));
    assert_eq!(l.notes.len(), 3, "{:#?}", l.notes);
    assert!(l.notes[0].starts_with("m.yaml:4[1]: skipped v1 ConfigMap"));
    assert!(l.notes[1].starts_with("m.yaml:16: skipped: the document is not a mapping"));
    assert!(l.notes[2].starts_with("m.yaml:18: skipped: no apiVersion and kind"));
}

#[test]
fn concatenated_json_documents() {
    let text = "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n\n  {\"apiVersion\": \"v1\", \"kind\": \"Namespace\",\n \"metadata\": {\"name\": \"b\"}}\n";
    let l = loader::parse_str(text, "two.json").unwrap();
    assert_eq!(l.objects.len(), 2);
    assert_eq!(l.origins[1].line, Some(3));
    assert_eq!(l.origins[1].document, 1);
}

#[test]
fn yaml_merge_keys_and_tags() {
    let text = "\
apiVersion: v1
kind: Service
metadata:
  name: a
  namespace: n
  labels: &labels {app: a}
spec:
  selector:
    <<: *labels
    tier: !custom web
";
    let l = loader::parse_str(text, "s.yaml").unwrap();
    let MeshObject::Service(s) = &l.objects[0] else {
        panic!()
    };
    let selector = s.spec.as_ref().unwrap().selector.as_ref().unwrap();
    assert_eq!(selector.get("app").map(String::as_str), Some("a"));
    assert_eq!(selector.get("tier").map(String::as_str), Some("web"));
}

#[test]
fn folders_are_recursive_sorted_and_skip_hidden_and_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let ns = |name: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n");
    write(dir.path(), "b.yaml", &ns("b"));
    write(dir.path(), "a/z.yml", &ns("az"));
    write(
        dir.path(),
        "c.JSON",
        "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"c\"}}",
    );
    write(dir.path(), ".hidden/x.yaml", &ns("hidden"));
    write(dir.path(), ".h.yaml", &ns("hidden2"));
    let txt = write(dir.path(), "readme.txt", &ns("txt"));
    let l = loader::load_paths(&[dir.path().to_path_buf()]).unwrap();
    let names: Vec<String> = l
        .objects
        .iter()
        .map(|o| match o {
            MeshObject::Namespace(n) => n.metadata.name.clone().unwrap(),
            o => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(names, vec!["az", "b", "c"]);
    // A file named explicitly is read whatever its extension; a file named twice once.
    let l = loader::load_paths(&[
        txt.clone(),
        dir.path().join("b.yaml"),
        dir.path().to_path_buf(),
    ])
    .unwrap();
    assert_eq!(l.objects.len(), 4);
    assert_eq!(l.files.len(), 4);
}

#[test]
fn later_definitions_replace_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let svc = |port: u16| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: n}}\nspec:\n  ports: [{{port: {port}}}]\n")
    };
    let first = write(dir.path(), "1.yaml", &svc(80));
    let second = write(dir.path(), "2.yaml", &svc(81));
    let l = loader::load_paths(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(l.objects.len(), 1);
    let MeshObject::Service(s) = &l.objects[0] else {
        panic!()
    };
    assert_eq!(s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port, 81);
    assert_eq!(l.origins[0].path, second);
    assert_eq!(
        l.notes,
        vec![format!(
            "{}:1: Service n/s replaces the one at {}:1 (the later definition wins, as with kubectl apply)",
            second.display(),
            first.display()
        )]
    );
}

#[test]
fn default_namespace() {
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r}\n---\napiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata: {name: default}\n";
    let l = loader::parse_str(text, "x.yaml").unwrap();
    let (dr, raw, _) = l.destination_rules().next().unwrap();
    assert_eq!(dr.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(raw["metadata"]["namespace"], "default");
    let MeshObject::MeshPolicy(mp) = &l.objects[1] else {
        panic!()
    };
    assert_eq!(mp.metadata.namespace, None);
    let l = loader::parse_str_in(text, "x.yaml", "bookinfo").unwrap();
    let (dr, _, _) = l.destination_rules().next().unwrap();
    assert_eq!(dr.metadata.namespace.as_deref(), Some("bookinfo"));
}

#[test]
fn errors_name_file_and_line() {
    let err = loader::parse_str("a: 1\n---\nb: [1\nc: 2\n", "e.yaml").unwrap_err();
    match &err {
        LoadError::Yaml {
            path,
            document,
            line,
            ..
        } => {
            assert_eq!(path, Path::new("e.yaml"));
            assert_eq!(*document, 1);
            assert!(*line >= 3, "{err}");
        }
        e => panic!("{e:?}"),
    }
    assert!(err.to_string().starts_with("e.yaml:"), "{err}");

    let err = loader::parse_str("{\"a\": 1,}", "e.json").unwrap_err();
    assert!(matches!(err, LoadError::Json { line: 1, .. }), "{err:?}");
    assert!(err.to_string().starts_with("e.json:1:"), "{err}");

    // An object of a kind the contract reads that does not parse.
    let err = loader::parse_str(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: a}\nspec:\n  mtls: {mode: SOMETIMES}\n",
        "o.yaml",
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Object { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("o.yaml:6: PeerAuthentication p"),
        "{err}"
    );

    // A kind without apiVersion: a broken object, not a foreign document.
    let err =
        loader::parse_str("kind: DestinationRule\nmetadata: {name: r}\n", "k.yaml").unwrap_err();
    assert!(matches!(err, LoadError::Object { .. }), "{err:?}");

    let err = loader::load_paths(&[PathBuf::from("/does/not/exist")]).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err:?}");
    assert_eq!(err.path(), Path::new("/does/not/exist"));
}

/// Streaming (what `serve` does) hands on every object a load keeps, plus the ones
/// replaced by a later definition (applied in order, the later one wins), with the
/// same notes.
#[test]
fn streaming_sees_what_a_load_keeps() {
    let paths = [
        root().join("examples/bookinfo"),
        root().join("examples/scenarios"),
        fixtures().join("apiserver/10-list-destinationrules-v1.json"),
        fixtures().join("apiserver/14-list-services.json"),
    ];
    let kept = loader::load_paths(&paths).expect("loads");
    let mut streamed = Vec::new();
    let summary =
        loader::stream_paths_in(&paths, loader::DEFAULT_NAMESPACE, &mut |o| streamed.push(o))
            .expect("streams");
    assert!(summary.objects.is_empty());
    assert_eq!(summary.files, kept.files);
    assert_eq!(summary.notes, kept.notes);
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.contains("replaces the one at")),
        "{:#?}",
        summary.notes
    );
    // Every object a load keeps is handed on, in the same order; the others are
    // the ones replaced later, one per replacement note.
    let kept: Vec<String> = kept.objects.iter().map(|o| format!("{o:?}")).collect();
    let streamed: Vec<String> = streamed.iter().map(|o| format!("{o:?}")).collect();
    let replaced = summary
        .notes
        .iter()
        .filter(|n| n.contains("replaces the one at"))
        .count();
    assert_eq!(streamed.len(), kept.len() + replaced);
    let mut rest = streamed.clone();
    for object in &kept {
        let at = rest.iter().position(|s| s == object);
        assert!(at.is_some(), "{object} not streamed");
        rest.remove(at.unwrap());
    }
}
