//! The I/O of `check`: read the files, print the notes, the findings and the
//! summary, and exit with the verdict.

use super::{check, CheckOptions, OutputFormat, EXIT_INPUT};
use crate::loader;
use std::io::Write as _;
use std::process::ExitCode;

/// `mtls-guard check PATH...`: exit 0 (no enforced conflict), 1 (a conflict), 2 (unusable input).
pub fn run(args: CheckOptions) -> ExitCode {
    let settings = args.settings;
    let mut stdin = std::io::stdin().lock();
    let loaded = match loader::load_inputs(&args.paths, &args.namespace, Some(&mut stdin))
        .and_then(|l| l.require_input(&args.paths, args.allow_empty))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mtls-guard check: error: {e}");
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let report = check(&loaded, &settings);
    let mut stderr = std::io::stderr().lock();
    for note in &report.notes {
        let _ = writeln!(stderr, "note: {note}");
    }
    if report.rules.is_empty() {
        let _ = writeln!(
            stderr,
            "note: no DestinationRule found in {} file(s)",
            loaded.files.len()
        );
    }
    let text = match args.output {
        OutputFormat::Text => report.render_text(args.verbose),
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&report.render_json()).unwrap_or_default();
            s.push('\n');
            s
        }
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) does not change the verdict.
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    ExitCode::from(report.exit_code())
}
