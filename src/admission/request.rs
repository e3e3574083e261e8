//! Reading an AdmissionReview request: only the fields a decision needs, and
//! the object typed by its kind in the same pass over the body.
//!
//! kube-apiserver sends `request.kind` before `request.object`, so the object
//! can be read straight into the typed view of its kind; `userInfo` and
//! `managedFields` are skipped, and `oldObject` too unless the kind's changes are
//! reviewed (contract section 8: a DELETE carries the object only there). Scanning the JSON is most of
//! the cost of a review (measured: 25 µs with kube's
//! `AdmissionReview<DynamicObject>`, 6.3 µs with a raw object read again,
//! see `benches/review.rs`). Anything this fast path cannot read (escaped
//! keys, an object of the wrong shape, `object` before `kind`) is read again
//! by the plain path, which keeps the object raw and reports a precise error.

use crate::model::{AuthPolicy, DestinationRule, ObjectKind, PeerAuthentication};
use kube::core::admission::Operation;
use kube::core::GroupVersionKind;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// The top level of an AdmissionReview.
pub(super) struct ReviewIn<'a> {
    pub api_version: Option<Cow<'a, str>>,
    pub request: Option<RequestIn<'a>>,
}

pub(super) struct RequestIn<'a> {
    pub uid: Cow<'a, str>,
    pub kind: GroupVersionKind,
    pub name: Cow<'a, str>,
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Operation,
    pub dry_run: bool,
    pub object: ObjectIn<'a>,
    /// `request.oldObject`, read only for kinds whose changes are reviewed (contract
    /// section 8): a DELETE carries the object there, and a null `object`.
    pub old_object: ObjectIn<'a>,
}

/// `request.object`, read as far as its kind calls for.
pub(super) enum ObjectIn<'a> {
    /// Missing or null.
    Absent,
    Rule(Box<DestinationRule>),
    Policy(Box<AuthPolicy>),
    PeerAuthentication(Box<PeerAuthentication>),
    /// Present, of a kind no decision reads.
    Other,
    /// Not read yet: its kind was not known when it was met, or it did not fit
    /// the typed view (the caller reads it and reports why).
    Raw(&'a RawValue),
}

/// Reads `body`: the fast path first, then the plain one for a precise error.
pub(super) fn parse(body: &[u8]) -> Result<ReviewIn<'_>, serde_json::Error> {
    if let Ok(fast) = serde_json::from_slice::<Fast>(body) {
        return Ok(fast.0);
    }
    let plain: PlainReview = serde_json::from_slice(body)?;
    Ok(ReviewIn {
        api_version: plain.api_version,
        request: plain.request.map(|r| RequestIn {
            uid: r.uid,
            kind: r.kind,
            name: r.name,
            namespace: r.namespace,
            operation: r.operation,
            dry_run: r.dry_run,
            object: raw_or_absent(r.object),
            old_object: raw_or_absent(r.old_object),
        }),
    })
}

fn raw_or_absent(raw: Option<&RawValue>) -> ObjectIn<'_> {
    match raw {
        Some(raw) if raw.get() != "null" => ObjectIn::Raw(raw),
        _ => ObjectIn::Absent,
    }
}

#[derive(Deserialize)]
struct PlainReview<'a> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    request: Option<PlainRequest<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlainRequest<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    kind: GroupVersionKind,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    operation: Operation,
    #[serde(default)]
    dry_run: bool,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    old_object: Option<&'a RawValue>,
}

/// The fast path's review: the same fields, with a request read by [`FastRequest`].
struct Fast<'a>(ReviewIn<'a>);

#[derive(Deserialize)]
struct FastReview<'a> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    request: Option<FastRequest<'a>>,
}

struct FastRequest<'a>(RequestIn<'a>);

impl<'de> Deserialize<'de> for Fast<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = FastReview::deserialize(d)?;
        Ok(Fast(ReviewIn {
            api_version: r.api_version,
            request: r.request.map(|r| r.0),
        }))
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Field {
    Uid,
    Kind,
    Name,
    Namespace,
    Operation,
    DryRun,
    Object,
    OldObject,
    #[serde(other)]
    Ignored,
}

/// A string borrowed from the body when it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for FastRequest<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FastRequestVisitor(PhantomData))
    }
}

struct FastRequestVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for FastRequestVisitor<'a> {
    type Value = FastRequest<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionReview request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut uid = None;
        let mut kind: Option<GroupVersionKind> = None;
        let mut name = None;
        let mut namespace = None;
        let mut operation = None;
        let mut dry_run = false;
        let mut object = ObjectIn::Absent;
        let mut old_object = ObjectIn::Absent;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Uid => uid = Some(map.next_value::<Text>()?.0),
                Field::Kind => kind = Some(map.next_value()?),
                Field::Name => name = map.next_value::<Option<Text>>()?.map(|t| t.0),
                Field::Namespace => namespace = map.next_value::<Option<Text>>()?.map(|t| t.0),
                Field::Operation => operation = Some(map.next_value()?),
                Field::DryRun => dry_run = map.next_value::<Option<bool>>()?.unwrap_or(false),
                Field::Object => {
                    let known = kind
                        .as_ref()
                        .map(|k| ObjectKind::of_group_kind(&k.group, &k.kind));
                    object = match known {
                        Some(Some(ObjectKind::DestinationRule)) => map
                            .next_value::<Option<DestinationRule>>()?
                            .map_or(ObjectIn::Absent, |r| ObjectIn::Rule(Box::new(r))),
                        Some(Some(ObjectKind::Policy | ObjectKind::MeshPolicy)) => map
                            .next_value::<Option<AuthPolicy>>()?
                            .map_or(ObjectIn::Absent, |p| ObjectIn::Policy(Box::new(p))),
                        Some(Some(ObjectKind::PeerAuthentication)) => map
                            .next_value::<Option<PeerAuthentication>>()?
                            .map_or(ObjectIn::Absent, |p| {
                                ObjectIn::PeerAuthentication(Box::new(p))
                            }),
                        // The other kinds whose changes are reviewed: typed when judged.
                        Some(Some(k)) if k.info().changes_reviewed => map
                            .next_value::<Option<&'de RawValue>>()?
                            .map_or(ObjectIn::Absent, ObjectIn::Raw),
                        Some(_) => map
                            .next_value::<Option<IgnoredAny>>()?
                            .map_or(ObjectIn::Absent, |_| ObjectIn::Other),
                        None => map
                            .next_value::<Option<&'de RawValue>>()?
                            .map_or(ObjectIn::Absent, ObjectIn::Raw),
                    };
                }
                Field::OldObject => {
                    // Only a reviewed change reads it (a DestinationRule's is skipped).
                    let reviewed = kind.as_ref().is_none_or(|k| {
                        ObjectKind::of_group_kind(&k.group, &k.kind)
                            .is_some_and(|k| k.info().changes_reviewed)
                    });
                    old_object = if reviewed {
                        map.next_value::<Option<&'de RawValue>>()?
                            .filter(|raw| raw.get() != "null")
                            .map_or(ObjectIn::Absent, ObjectIn::Raw)
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        ObjectIn::Absent
                    };
                }
                Field::Ignored => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(FastRequest(RequestIn {
            uid: uid.ok_or_else(|| A::Error::missing_field("uid"))?,
            kind: kind.ok_or_else(|| A::Error::missing_field("kind"))?,
            name: name.unwrap_or_default(),
            namespace,
            operation: operation.ok_or_else(|| A::Error::missing_field("operation"))?,
            dry_run,
            object,
            old_object,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every real capture takes the fast path (a fallback would read the body twice).
    #[test]
    fn real_captures_take_the_fast_path() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let body = std::fs::read(&path).unwrap();
            let fast = serde_json::from_slice::<Fast>(&body)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let request = fast.0.request.expect("a request");
            let kind = request.kind.kind.as_str();
            match (&request.object, kind) {
                (ObjectIn::Rule(_), "DestinationRule")
                | (ObjectIn::Policy(_), "Policy" | "MeshPolicy")
                | (ObjectIn::PeerAuthentication(_), "PeerAuthentication") => {}
                (
                    ObjectIn::Raw(_),
                    "GatewayClass" | "Gateway" | "HTTPRoute" | "GRPCRoute" | "TLSRoute"
                    | "TCPRoute" | "ReferenceGrant",
                ) => {}
                (ObjectIn::Absent, _) => {
                    assert_eq!(request.operation, Operation::Delete);
                    // A reviewed change's DELETE carries the object in oldObject.
                    let reviewed = ObjectKind::of_group_kind(&request.kind.group, kind)
                        .is_some_and(|k| k.info().changes_reviewed);
                    assert_eq!(
                        matches!(request.old_object, ObjectIn::Raw(_)),
                        reviewed,
                        "{}",
                        path.display()
                    );
                }
                _ => panic!("{}: object not typed by its kind {kind}", path.display()),
            }
            n += 1;
        }
        assert_eq!(n, 71);
    }
}
