//! The README and the docs stay true: every `check` run the README shows prints what
//! the binary prints, and nothing a user reads points outside the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mtls-guard");
/// How the README calls the binary the set-up command builds.
const SHOWN_BIN: &str = "./target/release/mtls-guard";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One `$ mtls-guard ...` line of the README, what it shows below it, and the exit
/// code a following `$ echo $?` shows.
struct Shown {
    args: Vec<String>,
    output: Vec<String>,
    exit: Option<i32>,
}

/// Every run of the binary shown in a fenced block of the README.
fn shown_runs(readme: &str) -> Vec<Shown> {
    let mut runs: Vec<Shown> = Vec::new();
    let mut in_block = false;
    let mut expect_exit = false;
    let mut current: Option<Shown> = None;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            runs.extend(current.take());
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(rest) = line.strip_prefix("$ ") {
            runs.extend(current.take());
            expect_exit = rest == "echo $?";
            if let Some(args) = rest.strip_prefix(SHOWN_BIN) {
                current = Some(Shown {
                    args: args.split_whitespace().map(String::from).collect(),
                    output: Vec::new(),
                    exit: None,
                });
            }
        } else if expect_exit {
            let last = runs.last_mut().expect("`echo $?` after a run");
            last.exit = Some(line.parse().expect("an exit code"));
            expect_exit = false;
        } else if let Some(run) = current.as_mut() {
            run.output.push(line.to_string());
        }
    }
    runs
}

#[test]
fn readme_check_runs_print_what_is_shown() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let runs = shown_runs(&readme);
    assert!(runs.len() >= 5, "found only {} runs", runs.len());
    for run in &runs {
        let out = Command::new(BIN)
            .args(&run.args)
            .current_dir(root())
            .output()
            .unwrap();
        // The notes (standard error) come before the findings, as on a terminal.
        let printed: Vec<String> = String::from_utf8(out.stderr)
            .unwrap()
            .lines()
            .chain(String::from_utf8(out.stdout).unwrap().lines())
            .map(String::from)
            .collect();
        let command = format!("{SHOWN_BIN} {}", run.args.join(" "));
        assert_eq!(
            printed.join("\n"),
            run.output.join("\n"),
            "README.md shows another output for `{command}`"
        );
        let code = out.status.code();
        assert_eq!(
            code,
            Some(run.exit.unwrap_or(0)),
            "exit code of `{command}`"
        );
    }
}

/// Every file a user reads (or the code and tests are), outside the captured fixtures.
fn files_to_read(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == root().join("tests/fixtures") {
            continue;
        }
        if path.is_dir() {
            files_to_read(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn nothing_points_outside_the_repository() {
    // Built from parts, so that this file does not name it.
    let outside = ["..", "/shared"].concat();
    let mut files = vec![root().join("README.md"), root().join("Cargo.toml")];
    for dir in [
        "docs", "src", "tests", "benches", "examples", "scripts", ".ci",
    ] {
        if root().join(dir).is_dir() {
            files_to_read(&root().join(dir), &mut files);
        }
    }
    assert!(files.len() > 30, "{files:?}");
    let mut found = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue; // not text
        };
        for (i, line) in text.lines().enumerate() {
            if line.contains(&outside) {
                found.push(format!("{}:{}: {line}", file.display(), i + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{outside} named in:\n{}",
        found.join("\n")
    );
}

#[test]
fn example_reviews_are_the_captures_unchanged() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("examples/reviews")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap();
            let capture = root().join("tests/fixtures/admission").join(name);
            assert!(
                std::fs::read(&path).unwrap() == std::fs::read(&capture).unwrap(),
                "{} differs from {}",
                path.display(),
                capture.display()
            );
            n += 1;
        }
    }
    assert_eq!(n, 3);
}

#[test]
fn readme_names_the_minimum_rust_version() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let minimum = env!("CARGO_PKG_RUST_VERSION");
    assert!(!minimum.is_empty(), "Cargo.toml states a rust-version");
    assert!(
        readme.contains(&format!("Rust {minimum} or later")),
        "README.md should say `Rust {minimum} or later`"
    );
}
