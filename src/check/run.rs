//! The I/O of `check`: read the files (or list the cluster), print the notes, the
//! findings and the summary, and exit with the verdict.

use super::{check, CheckOptions, ClusterTarget, OutputFormat, Report, EXIT_INPUT};
use crate::audit::audit;
use crate::loader;
use crate::settings::Settings;
use crate::source::cluster::{self, ListError};
use std::io::Write as _;
use std::process::ExitCode;

/// `mtls-guard check PATH...` or `check --cluster`: exit 0 (no enforced conflict),
/// 1 (a conflict), 2 (unusable input, or a cluster that cannot be listed).
pub fn run(args: CheckOptions) -> ExitCode {
    if let Some(target) = &args.cluster {
        return run_cluster(&args, target);
    }
    let settings = &args.settings;
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
    let report = check(&loaded, settings);
    let empty = format!(
        "note: no DestinationRule found in {} file(s)",
        loaded.files.len()
    );
    print(&report, &args, &empty)
}

/// The rules stored in the cluster, judged: one list of every kind (as `serve`'s
/// cluster mode reads them), then the audit of that snapshot, with the mesh settings
/// `serve` would use (`settings` and the target's overrides over the mesh config).
pub async fn check_cluster(
    client: &kube::Client,
    target: &ClusterTarget,
    settings: &Settings,
) -> Result<Report, ListError> {
    let view =
        cluster::list_once(client, &target.istio_namespace, settings, &target.overrides).await?;
    Ok(audit(
        &view.snapshot,
        &view.settings,
        target.namespace.as_deref(),
    ))
}

fn run_cluster(args: &CheckOptions, target: &ClusterTarget) -> ExitCode {
    // Objects the model cannot read are logged by the cluster source: to stderr.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .without_time()
        .try_init();
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(async {
                let client =
                    cluster::connect(target.kubeconfig.as_deref(), target.context.as_deref())
                        .await?;
                Ok(check_cluster(&client, target, &args.settings).await?)
            })
        });
    match report {
        Ok(report) => {
            let empty = match &target.namespace {
                Some(ns) => format!("note: no DestinationRule in namespace {ns}"),
                None => "note: no DestinationRule in the cluster".to_string(),
            };
            print(&report, args, &empty)
        }
        Err(e) => {
            eprintln!("mtls-guard check: error: {e:#}");
            ExitCode::from(EXIT_INPUT)
        }
    }
}

/// Prints the notes (`empty` too when there is no rule) to stderr and the report to
/// stdout, and returns the verdict.
fn print(report: &Report, args: &CheckOptions, empty: &str) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    for note in &report.notes {
        let _ = writeln!(stderr, "note: {note}");
    }
    if report.rules.is_empty() {
        let _ = writeln!(stderr, "{empty}");
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
