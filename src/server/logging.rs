//! Logging for `serve`: tracing to stderr, as text or one JSON object per line.

use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `--log-reviews`: which answered reviews get a line at info level.
///
/// A line per review at full rate (tens of thousands a second) costs about a tenth
/// of the throughput; the decisions worth auditing are the ones that changed or
/// blocked something, and every review is counted in the metrics anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReviewLog {
    /// Every review.
    All,
    /// Reviews that were patched or denied, or allowed with warnings; plain
    /// allows are logged at debug level.
    #[default]
    Changes,
    /// No review at info level (all at debug). Unreadable or refused requests are
    /// still logged as warnings whatever the choice.
    None,
}

impl ReviewLog {
    /// Whether an answered review (not an error) gets an info line.
    pub fn at_info(self, changed: bool) -> bool {
        match self {
            ReviewLog::All => true,
            ReviewLog::Changes => changed,
            ReviewLog::None => false,
        }
    }
}

/// A value taken from a request, fit for a log line: at most 253 bytes (the
/// longest Kubernetes name) and no control characters, so that a forged review
/// cannot write fake log lines or flood the log through its name or uid.
pub(crate) fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 253;
    if text.len() <= MAX && !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::new();
    for c in text.chars().flat_map(char::escape_debug) {
        if out.len() >= MAX {
            out.push_str("...");
            break;
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

/// Installs the global subscriber (level from `RUST_LOG`, default `info`); does
/// nothing when one is already installed.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_values_are_cleaned_for_logs() {
        assert_eq!(clean("reviews"), "reviews");
        assert!(matches!(clean("reviews"), std::borrow::Cow::Borrowed(_)));
        let forged = clean("x\n2026-01-01T00:00:00Z  INFO review: allowed");
        assert!(!forged.contains('\n'), "{forged}");
        assert!(forged.starts_with("x\\n2026"), "{forged}");
        let long = "a".repeat(10_000);
        let cleaned = clean(&long);
        assert!(cleaned.len() <= 256, "{}", cleaned.len());
        assert!(cleaned.ends_with("..."));
    }

    #[test]
    fn review_log_levels() {
        assert!(ReviewLog::All.at_info(false));
        assert!(ReviewLog::Changes.at_info(true));
        assert!(!ReviewLog::Changes.at_info(false));
        assert!(!ReviewLog::None.at_info(true));
        assert_eq!(ReviewLog::default(), ReviewLog::Changes);
    }
}
