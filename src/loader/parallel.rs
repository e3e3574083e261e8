//! A large YAML stream's documents parsed on several threads.
//!
//! Parsing is most of the cost of loading a big bundle (libyaml's events alone took
//! 3.9 s of 10.5 s for 220,000 documents, benches/load_file.rs), and documents are
//! independent: anchors, aliases and merge keys do not cross `---`. So the text is
//! cut where the line scan found the document markers, the pieces are parsed and
//! converted to JSON on worker threads in batches, and the calling thread reads them
//! into objects in file order, exactly as the sequential path does.
//!
//! Only the case where every document reads cleanly is done here. A piece that is
//! not exactly one document, a syntax error, or a document or object that does not
//! convert makes this path undo what it read and hand the file to the sequential
//! path, which gives the errors, lines and notes it always gives.

use super::{
    add_json_document, add_list_item, is_list, json_document, yaml_to_json, Checkpoint, FileReader,
    JsonDocument, Origin,
};
use serde::Deserialize;
use serde_json::Value;
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc;

/// Smaller texts are read sequentially: threads would cost more than they save.
pub(super) const MIN_BYTES: usize = 1 << 20;
/// Documents per batch handed to a worker.
const BATCH: usize = 64;
/// At most this many workers (beside the calling thread, which builds the objects).
const MAX_WORKERS: usize = 4;

/// Reads the documents of `text`, cut at `cuts` (one piece per document, `lines`
/// giving each one's line), into `reader`. False when it read nothing: the caller
/// then reads the text sequentially.
pub(super) fn yaml_documents(
    reader: &mut FileReader,
    text: &str,
    path: &Path,
    lines: &[usize],
    cuts: &[usize],
) -> bool {
    yaml_documents_with(reader, text, path, lines, cuts, MIN_BYTES, workers())
}

fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS)
}

/// [`yaml_documents`] with its thresholds given (the tests run small texts here).
pub(super) fn yaml_documents_with(
    reader: &mut FileReader,
    text: &str,
    path: &Path,
    lines: &[usize],
    cuts: &[usize],
    min_bytes: usize,
    workers: usize,
) -> bool {
    if text.len() < min_bytes || workers < 2 || cuts.len() + 1 != lines.len() {
        return false;
    }
    if cuts.is_empty() {
        // One document: a `List` (`kubectl get -o yaml`) is read item by item.
        return yaml_list(reader, text, path, lines.first().copied(), workers);
    }
    let pieces: Vec<&str> = std::iter::once(0)
        .chain(cuts.iter().copied())
        .zip(cuts.iter().copied().chain(std::iter::once(text.len())))
        .map(|(start, end)| &text[start..end])
        .collect();
    let checkpoint = reader.checkpoint();
    let read_all = in_order(
        &pieces,
        workers,
        |piece| parse_piece(piece),
        |i, doc| {
            let origin = Origin {
                path: path.to_path_buf(),
                document: i,
                line: lines.get(i).copied(),
                item: None,
            };
            add_json_document(reader, origin, doc).is_ok()
        },
    );
    finish(reader, checkpoint, read_all)
}

/// A one-document `List` whose `items` are a block sequence: each item is cut out,
/// parsed and converted on the workers, and read in order here. The whole document
/// would first become libyaml's events and then one value (3.9 GB at the peak for
/// 220,000 items, benches/load_file.rs); an item at a time stays small.
fn yaml_list(
    reader: &mut FileReader,
    text: &str,
    path: &Path,
    line: Option<usize>,
    workers: usize,
) -> bool {
    let Some(split) = split_list(text) else {
        return false;
    };
    // The document without its items says whether it is a List.
    let Ok(serde_yaml_ng::Value::Mapping(header)) = serde_yaml_ng::from_str(&split.header) else {
        return false;
    };
    let api_version = header
        .get("apiVersion")
        .and_then(serde_yaml_ng::Value::as_str);
    let kind = header.get("kind").and_then(serde_yaml_ng::Value::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return false;
    };
    if header.contains_key("items") || !is_list(kind, true) {
        return false;
    }
    let origin = Origin {
        path: path.to_path_buf(),
        document: 0,
        line,
        item: None,
    };
    let items: Vec<&str> = split.items.iter().map(|r| &text[r.clone()]).collect();
    let indent = split.indent;
    let checkpoint = reader.checkpoint();
    let read_all = in_order(
        &items,
        workers,
        |item| parse_item(item, indent),
        |i, item| add_list_item(reader, &origin, api_version, kind, i, Ok(item)).is_ok(),
    );
    finish(reader, checkpoint, read_all)
}

fn finish(reader: &mut FileReader, checkpoint: Checkpoint, read_all: bool) -> bool {
    if read_all {
        reader.commit();
    } else {
        reader.rewind(checkpoint);
    }
    read_all
}

/// Runs `parse` over `pieces` on `workers` threads, in batches, and hands each
/// result to `add` in the pieces' order on this thread. False as soon as a piece
/// does not parse or `add` refuses one.
fn in_order<P: Sync, T: Send>(
    pieces: &[P],
    workers: usize,
    parse: impl Fn(&P) -> Option<T> + Sync,
    mut add: impl FnMut(usize, T) -> bool,
) -> bool {
    let batches: Vec<&[P]> = pieces.chunks(BATCH).collect();
    let parse = &parse;
    std::thread::scope(|scope| {
        // Worker `w` parses batches w, w + workers, ...; each answers in order on its
        // own channel, bounded so that parsing runs at most two batches ahead.
        let receivers: Vec<_> = (0..workers)
            .map(|w| {
                let (tx, rx) = mpsc::sync_channel::<Vec<Option<T>>>(2);
                let batches = &batches;
                scope.spawn(move || {
                    for batch in batches.iter().skip(w).step_by(workers) {
                        if tx.send(batch.iter().map(parse).collect()).is_err() {
                            // The reader stopped: the file goes to the sequential path.
                            return;
                        }
                    }
                });
                rx
            })
            .collect();
        let mut i = 0;
        for b in 0..batches.len() {
            let Ok(batch) = receivers[b % workers].recv() else {
                return false;
            };
            for parsed in batch {
                let Some(parsed) = parsed else {
                    return false;
                };
                if !add(i, parsed) {
                    return false;
                }
                i += 1;
            }
        }
        true
        // Returning drops the receivers, so that workers still sending stop.
    })
}

/// One piece as JSON, or `None` when it is not exactly one document that reads.
fn parse_piece(piece: &str) -> Option<JsonDocument> {
    json_document(one_document(piece)?).ok()
}

/// The one YAML document `text` holds; `None` when it does not read or holds more.
fn one_document(text: &str) -> Option<serde_yaml_ng::Value> {
    let mut documents = serde_yaml_ng::Deserializer::from_str(text);
    let value = serde_yaml_ng::Value::deserialize(documents.next()?).ok()?;
    documents.next().is_none().then_some(value)
}

/// A `List` document cut into its items.
#[derive(Debug, PartialEq)]
struct ListSplit {
    /// The document without its `items:` block.
    header: String,
    /// Column of the items' `-`.
    indent: usize,
    /// Each item's text, from its `-` line to the next item.
    items: Vec<Range<usize>>,
}

/// Finds a column-0 `items:` key followed by a block sequence, as kubectl prints a
/// List. `None` for any other shape (flow sequences, no items): the caller then
/// reads the document whole. Lines are only cut here; what they mean is left to the
/// parser, and any item that does not read alone sends the file back whole.
fn split_list(text: &str) -> Option<ListSplit> {
    let mut offset = 0;
    let mut lines = text.split_inclusive('\n').map(|raw| {
        let start = offset;
        offset += raw.len();
        (start, raw)
    });
    fn body(raw: &str) -> &str {
        raw.trim_end_matches(['\n', '\r'])
    }
    let spaces = |line: &str| line.len() - line.trim_start_matches(' ').len();
    let mut header = String::new();
    let items_start = loop {
        let (start, raw) = lines.next()?;
        if body(raw).trim_end() == "items:" {
            break start + raw.len();
        }
        header.push_str(raw);
    };
    let mut indent = None;
    let mut items: Vec<Range<usize>> = Vec::new();
    let mut end = items_start;
    for (start, raw) in lines.by_ref() {
        let line = body(raw);
        let blank = line.trim().is_empty();
        let comment = line.trim_start().starts_with('#');
        let n = spaces(line);
        let dash = line[n..].strip_prefix('-');
        let is_item = dash.is_some_and(|rest| rest.is_empty() || rest.starts_with(' '));
        match indent {
            None if blank || comment => {}
            None if is_item => indent = Some(n),
            None => return None,
            Some(k) if is_item && n == k => {}
            Some(k) if blank || comment || n > k => {
                end = start + raw.len();
                continue;
            }
            Some(_) => {
                // The first key after the sequence: the rest is the header's.
                header.push_str(&text[start..]);
                break;
            }
        }
        if is_item {
            if let Some(last) = items.last_mut() {
                last.end = start;
            }
            items.push(start..start + raw.len());
        }
        end = start + raw.len();
    }
    if let Some(last) = items.last_mut() {
        last.end = end.max(last.end);
    }
    let indent = indent?;
    Some(ListSplit {
        header,
        indent,
        items,
    })
}

/// Whether `text` may define a YAML anchor (`&name` after a space, an indicator or
/// at a line's start). serde_yaml_ng resolves an alias to the last anchor of its
/// name in the whole document, so an item with one cannot be read alone; a `&` in
/// a string (`a=1&b=2`) rarely looks like one, and if it does the list is read whole.
fn has_anchor(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'&'
            && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'[' | b'{' | b','))
            && bytes.get(i + 1).is_some_and(|c| !c.is_ascii_whitespace())
    })
}

/// One item of a [`ListSplit`], moved left to column 0 and read as a document of its
/// own: merge keys applied, converted to JSON. `None` when a line sits left of the
/// item's content (other than a comment) or the item does not read alone (an alias
/// to an anchor outside it, say).
fn parse_item(item: &str, indent: usize) -> Option<Value> {
    if has_anchor(item) {
        return None;
    }
    let column = indent + 2;
    let mut text = String::with_capacity(item.len());
    for (n, raw) in item.split_inclusive('\n').enumerate() {
        let line = raw.trim_end_matches(['\n', '\r']);
        let spaces = line.len() - line.trim_start_matches(' ').len();
        let kept = if n == 0 {
            // `- key: value` or a lone `-`: the dash becomes a space.
            let rest = line.get(indent..)?.strip_prefix('-')?;
            match rest.strip_prefix(' ') {
                Some(rest) => rest,
                None if rest.is_empty() => "",
                None => return None,
            }
        } else if spaces >= column {
            &line[column..]
        } else if line.trim().is_empty() {
            ""
        } else if line.trim_start().starts_with('#') {
            // A comment left of the content (not inside a block scalar, which would
            // be indented further): nothing to keep.
            continue;
        } else {
            return None;
        };
        text.push_str(kept);
        text.push('\n');
    }
    let mut value = one_document(&text)?;
    value.apply_merge().ok()?;
    yaml_to_json(value).ok()
}

#[cfg(test)]
mod tests {
    use super::super::{
        parse_counted, yaml_document_scan, Identity, Loaded, Sink, Syntax, DEFAULT_NAMESPACE,
    };
    use super::*;
    use crate::model::ObjectKind;
    use std::collections::HashMap;

    /// A stream with what the sequential path must agree on: comments, `...`, empty
    /// and non-mapping documents, a kind not read, a `List`, an anchor inside one
    /// document, a redefinition, YAML nulls and integer keys.
    fn stream(copies: usize) -> String {
        let mut text = String::from("# bundle\n");
        for i in 0..copies {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: ns}}\nspec:\n  selector: &sel {{app: a{i}}}\n  ports: [{{port: 80}}]\n---\n# empty\n---\nplain text\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n...\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: security.istio.io/v1\n  kind: PeerAuthentication\n  metadata: {{name: p{i}, namespace: ns}}\n  spec:\n    portLevelMtls:\n      8080: {{mode: DISABLE}}\n    mtls:\n- apiVersion: v1\n  kind: Service\n  metadata: {{name: s{i}, namespace: ns}}\n",
            ));
        }
        text
    }

    fn reader<'a, 's>(
        loaded: &'a mut Loaded,
        sink: Option<&'a mut Sink<'s>>,
    ) -> FileReader<'a, 's> {
        FileReader {
            loaded,
            sink,
            default_namespace: DEFAULT_NAMESPACE,
            notes: Vec::new(),
            line_bytes: 0,
            undo: None,
        }
    }

    fn summary(loaded: &Loaded, notes: &[(Origin, String)]) -> String {
        format!(
            "{:?}\n{:?}\n{:?}\n{notes:?}",
            loaded.objects, loaded.origins, loaded.notes
        )
    }

    #[test]
    fn documents_read_in_parallel_are_read_as_in_sequence() {
        let text = stream(300);
        let path = Path::new("bundle.yaml");
        let scan = yaml_document_scan(&text);
        let cuts = scan.cuts.expect("no directives");
        assert_eq!(cuts.len() + 1, scan.lines.len());

        let mut sequential = Loaded::default();
        let (result, _) = parse_counted(
            &mut sequential,
            None,
            &text,
            path,
            Syntax::Yaml,
            DEFAULT_NAMESPACE,
        );
        result.unwrap();
        assert!(
            text.len() < MIN_BYTES,
            "the call above took the sequential path"
        );

        let mut parallel = Loaded::default();
        let mut r = reader(&mut parallel, None);
        assert!(yaml_documents_with(
            &mut r,
            &text,
            path,
            &scan.lines,
            &cuts,
            0,
            3
        ));
        let notes: Vec<_> = std::mem::take(&mut r.notes);
        let notes: Vec<String> = notes
            .into_iter()
            .map(|(o, m)| format!("{o}: {m}"))
            .collect();
        parallel.notes.extend(notes);
        // 300 copies of 2 Services, 1 PeerAuthentication; redefinitions are kept in order.
        assert_eq!(parallel.objects.len(), 900);
        assert_eq!(summary(&parallel, &[]), summary(&sequential, &[]));
    }

    #[test]
    fn a_document_that_does_not_read_hands_the_file_back_untouched() {
        let good = stream(100);
        let path = Path::new("bundle.yaml");
        for broken in [
            // A syntax error in the middle.
            format!("{good}---\nkind: [unclosed\n{good}"),
            // An alias to an anchor of another document (the whole stream rejects it too).
            format!("{good}---\napiVersion: v1\nkind: Service\nmetadata: *sel\n"),
            // An object that does not parse.
            format!(
                "{good}---\napiVersion: v1\nkind: Service\nmetadata: {{name: x}}\nspec: 7\n{good}"
            ),
        ] {
            let scan = yaml_document_scan(&broken);
            let cuts = scan.cuts.unwrap();
            let mut applied = 0;
            let mut apply = |_| applied += 1;
            let earlier = Origin::file("earlier.yaml");
            let key: Identity = (ObjectKind::Service, "ns".into(), "s1".into());
            let mut sink = Sink {
                apply: &mut apply,
                seen: HashMap::from([(key.clone(), earlier.clone())]),
            };
            let mut loaded = Loaded::default();
            let mut r = reader(&mut loaded, Some(&mut sink));
            assert!(!yaml_documents_with(
                &mut r,
                &broken,
                path,
                &scan.lines,
                &cuts,
                0,
                2
            ));
            assert!(r.notes.is_empty() && r.undo.is_none());
            assert!(loaded.objects.is_empty() && loaded.notes.is_empty());
            // The identities read from this file are forgotten, the earlier one restored.
            assert_eq!(sink.seen, HashMap::from([(key, earlier)]));
        }
    }

    /// `kubectl get -o yaml`'s shape, with what cutting must not change: a literal
    /// block with `#` and blank-but-indented lines, comments left of the content,
    /// a flow mapping, a nested sequence, an item without a type.
    fn list(items: usize, indent: &str) -> String {
        let mut text = String::from("apiVersion: v1\nitems:\n");
        for i in 0..items {
            let item = format!(
                "- apiVersion: v1\n  kind: Service\n  metadata:\n    annotations:\n      note: |\n        # not a comment\n          \n        line {i}\n    labels: {{app: a{i}}}\n    name: s{i}\n# a comment\n    namespace: ns\n  spec:\n    selector: {{app: a{i}}}\n    ports:\n    - port: 80\n      targetPort: 8080\n\n- metadata: {{name: untyped{i}, namespace: ns}}\n  spec: {{ports: [{{port: 81}}]}}\n"
            );
            for line in item.lines() {
                let pad = if line.starts_with('#') || line.is_empty() {
                    ""
                } else {
                    indent
                };
                text.push_str(&format!("{pad}{line}\n"));
            }
        }
        text.push_str("kind: ServiceList\nmetadata:\n  resourceVersion: \"\"\n");
        text
    }

    fn sequential(text: &str) -> Loaded {
        assert!(
            text.len() < MIN_BYTES,
            "parse_counted reads it sequentially"
        );
        let mut loaded = Loaded::default();
        let path = Path::new("list.yaml");
        let (result, _) = parse_counted(&mut loaded, None, text, path, Syntax::Yaml, "default");
        result.unwrap();
        loaded
    }

    fn parallel(text: &str) -> Option<Loaded> {
        let scan = yaml_document_scan(text);
        let mut loaded = Loaded::default();
        let mut r = reader(&mut loaded, None);
        let path = Path::new("list.yaml");
        let cuts = scan.cuts.unwrap();
        if !yaml_documents_with(&mut r, text, path, &scan.lines, &cuts, 0, 2) {
            assert!(r.notes.is_empty());
            assert!(loaded.objects.is_empty() && loaded.notes.is_empty());
            return None;
        }
        let notes: Vec<_> = std::mem::take(&mut r.notes);
        loaded
            .notes
            .extend(notes.into_iter().map(|(o, m)| format!("{o}: {m}")));
        Some(loaded)
    }

    #[test]
    fn list_items_read_in_parallel_are_read_as_the_whole_list() {
        for indent in ["", "  "] {
            let text = list(200, indent);
            let split = split_list(&text).expect("a block sequence of items");
            assert_eq!((split.items.len(), split.indent), (400, indent.len()));
            let whole = sequential(&text);
            let cut = parallel(&text).expect("every item reads alone");
            assert_eq!(cut.objects.len(), 400);
            assert_eq!(
                summary(&cut, &[]),
                summary(&whole, &[]),
                "indent {indent:?}"
            );
        }
    }

    #[test]
    fn a_list_item_that_does_not_read_alone_hands_the_list_back() {
        let good = list(50, "");
        let (head, tail) = good.split_at(good.find("kind: ServiceList").unwrap());
        let anchored = |i: usize| {
            format!("- metadata: {{name: a{i}, namespace: ns, labels: &l {{app: a{i}}}}}\n  spec: {{selector: *l}}\n")
        };
        for (case, text) in [
            // An alias to an anchor of another item: the whole document reads it.
            (
                "alias",
                format!(
                    "{head}{}- metadata: {{name: x, namespace: ns, labels: *l}}\n{tail}",
                    anchored(0)
                ),
            ),
            // Anchors, even each used in its own item: serde_yaml_ng resolves an alias
            // to the last anchor of that name in the whole document.
            (
                "anchors",
                format!("{head}{}{}{tail}", anchored(1), anchored(2)),
            ),
            // A syntax error in one item: the sequential path reports it.
            ("syntax", format!("{head}- metadata: {{name: [\n{tail}")),
            // A flow sequence: not cut at all.
            (
                "flow",
                "apiVersion: v1\nitems: [{kind: Service}]\nkind: List\n".to_string(),
            ),
            // Not a List: read whole.
            ("kind", good.replace("kind: ServiceList", "kind: Service")),
        ] {
            assert!(parallel(&text).is_none(), "{case}");
        }
        let anchors = format!("{head}{}{}{tail}", anchored(1), anchored(2));
        assert_eq!(sequential(&anchors).objects.len(), 102);
    }

    #[test]
    fn directives_keep_a_stream_whole() {
        let text = "%YAML 1.2\n---\na: 1\n---\nb: 2\n";
        assert!(yaml_document_scan(text).cuts.is_none());
        let scan = yaml_document_scan("a: 1\n...\n# end\n");
        assert_eq!((scan.lines, scan.cuts), (vec![1], Some(vec![])));
        let text = "# c\n---\na: 1\n---\n\n# x\nb: 2\n...\nc: 3\n";
        let scan = yaml_document_scan(text);
        assert_eq!(scan.lines, vec![3, 7, 9]);
        let cuts = scan.cuts.unwrap();
        let pieces = [&text[..cuts[0]], &text[cuts[0]..cuts[1]], &text[cuts[1]..]];
        assert_eq!(
            pieces,
            ["# c\n---\na: 1\n", "---\n\n# x\nb: 2\n...\n", "c: 3\n"]
        );
    }
}
