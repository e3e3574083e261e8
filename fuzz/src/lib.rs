//! What the fuzz targets share: the Bookinfo snapshot the admission tests and
//! benches use, and the admission property (never a panic; a patch applies and the
//! patched object re-judges with nothing left to change).

use base64::Engine;
use mtls_guard::admission::{review, Endpoint, ReviewVerdict};
use mtls_guard::loader::load_paths;
use mtls_guard::settings::{IngressGateway, Mode, Settings};
use mtls_guard::snapshot::Snapshot;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

/// examples/bookinfo through the loader `check` uses (contract section 7).
pub fn bookinfo() -> &'static Snapshot {
    &worlds()[0]
}

/// The example worlds, through the loader `check` uses: Bookinfo (section 7), with
/// its exemption, with a STRICT PeerAuthentication, and the Gateway API Bookinfo
/// with and without its exemption.
pub fn worlds() -> &'static [Snapshot] {
    static WORLDS: OnceLock<Vec<Snapshot>> = OnceLock::new();
    WORLDS.get_or_init(|| {
        let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let sets: [&[&str]; 5] = [
            &["bookinfo"],
            &["bookinfo", "bookinfo-exemption"],
            &["bookinfo", "peerauthentication"],
            &["bookinfo-gateway"],
            &["bookinfo-gateway", "bookinfo-gateway-exemption"],
        ];
        sets.iter()
            .map(|dirs| {
                let paths: Vec<PathBuf> = dirs.iter().map(|d| examples.join(d)).collect();
                let loaded = load_paths(&paths).expect("the examples load");
                Snapshot::from_objects(loaded.objects)
            })
            .collect()
    })
}

/// The settings a fuzz input picks from: the defaults and the ones that change
/// what the judge reads (auto mTLS, gateway present/absent, mode warn).
pub fn settings(choice: u8) -> Settings {
    let mut s = Settings::default();
    match choice % 5 {
        0 => {}
        1 => s.auto_mtls = true,
        2 => s.ingress_gateway = IngressGateway::Present,
        3 => s.ingress_gateway = IngressGateway::Absent,
        _ => s.mode = Mode::Warn,
    }
    s
}

/// Reviews `body` on both endpoints (a panic is the finding). When the mutating
/// answer carries a patch, it must be a JSON Patch that applies to the request's
/// object, and the patched review must come back with no patch from `/mutate`.
pub fn check_review(snapshot: &Snapshot, settings: &Settings, body: &[u8]) {
    let validated = review(snapshot, settings, Endpoint::Validate, body);
    assert!(
        serde_json::from_slice::<Value>(&validated.body).is_ok(),
        "the validating answer is JSON"
    );
    let mutated = review(snapshot, settings, Endpoint::Mutate, body);
    let answer: Value = serde_json::from_slice(&mutated.body).expect("the mutating answer is JSON");
    let Some(encoded) = answer.pointer("/response/patch") else {
        assert_ne!(
            mutated.verdict,
            ReviewVerdict::Patched,
            "patched without a patch"
        );
        return;
    };
    assert_eq!(mutated.verdict, ReviewVerdict::Patched);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_str().expect("patch is a string"))
        .expect("patch is base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch is a JSON Patch");
    // The review reads only the fields it needs, so bytes that are not UTF-8 in a
    // field it skips (managedFields, say) do not stop it; they cannot be in what it
    // judged. Replaced, they let the body be read whole to apply the patch.
    let Ok(mut request) = serde_json::from_str::<Value>(&String::from_utf8_lossy(body)) else {
        // Not JSON even so (a lone surrogate escape in a skipped field): no object to patch.
        return;
    };
    let object = request
        .pointer_mut("/request/object")
        .expect("a patched review has an object");
    if let Err(e) = json_patch::patch(object, &patch) {
        panic!(
            "the patch does not apply: {e}\npatch: {}\nobject: {}",
            String::from_utf8_lossy(&bytes),
            object
        );
    }
    let again_body = serde_json::to_vec(&request).unwrap();
    let again = review(snapshot, settings, Endpoint::Mutate, &again_body);
    let again_answer: Value = serde_json::from_slice(&again.body).unwrap();
    assert!(
        again.verdict == ReviewVerdict::Allowed
            && again_answer.pointer("/response/patch").is_none(),
        "the patched object re-judges with something left to change ({:?})\npatch: {}\nanswer: {}",
        again.verdict,
        String::from_utf8_lossy(&bytes),
        again_answer
    );
    // The validating webhook sees the patched object next: it must still read it.
    let validated = review(snapshot, settings, Endpoint::Validate, &again_body);
    assert_ne!(
        validated.verdict,
        ReviewVerdict::Error,
        "the patched object no longer reads: {}",
        String::from_utf8_lossy(&validated.body)
    );
}
