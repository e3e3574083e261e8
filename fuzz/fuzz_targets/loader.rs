//! Bytes as one input file of `check`, read as YAML (`.yaml`) or JSON (`.json`)
//! by the loader's in-memory entry point, then checked and rendered the way
//! `check` does: a load error is an answer, a panic is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtls_guard::check::check;
use mtls_guard::loader::parse_str;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    // The loader reads files as UTF-8 text; anything else is rejected before it.
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let path = if choice & 1 == 0 {
        "input.yaml"
    } else {
        "input.json"
    };
    match parse_str(text, path) {
        Ok(loaded) => {
            let settings = mtls_guard_fuzz::settings(choice >> 1);
            let report = check(&loaded, &settings);
            let _ = report.summary();
            let _ = report.render_text(true);
            let _ = report.render_json();
            let _ = report.exit_code();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
