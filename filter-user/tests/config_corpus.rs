//! The corpus of invalid configuration files: each must be refused with its own error,
//! naming the file, the line and the problem.
//!
//! Every file in `config_corpus/invalid/` starts with `# expect: LINE: TEXT`: the error must
//! name `FILE:LINE:` and contain TEXT, and no two files may expect the same TEXT, so each
//! file tests a problem of its own. Refusing is all-or-nothing by construction: `load`
//! returns either a whole validated `DaemonFile` or an error, and has nothing to apply.

use std::{collections::BTreeMap, fs, path::Path};

use floodwall::config;

/// The issue asks for at least 30 invalid files.
const MIN_CASES: usize = 30;

struct Expectation {
    line: usize,
    text: String,
}

fn expectation(path: &Path) -> Expectation {
    let content =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let first = content.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{} must start with `# expect: LINE: TEXT`", path.display()));
    let (line, text) = rest
        .split_once(": ")
        .unwrap_or_else(|| panic!("{}: expected `# expect: LINE: TEXT`", path.display()));
    Expectation {
        line: line
            .parse()
            .unwrap_or_else(|_| panic!("{}: `{line}` is not a line number", path.display())),
        text: text.to_owned(),
    }
}

#[test]
fn every_invalid_file_is_refused_with_its_own_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config_corpus/invalid");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= MIN_CASES,
        "the corpus must hold at least {MIN_CASES} invalid files, found {}",
        files.len()
    );
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let expected = expectation(path);
        if let Some(other) = seen.insert(expected.text.clone(), name.clone()) {
            failures.push(format!(
                "{name} expects the same text as {other}: `{}`",
                expected.text
            ));
        }
        let message = match config::load(path) {
            Ok(file) => {
                failures.push(format!("{name} was accepted: {file:?}"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        let place = format!("{name}:{}:", expected.line);
        if !message.contains(&place) {
            failures.push(format!("{name}: error should name `{place}`: {message}"));
        }
        if !message.contains(&expected.text) {
            failures.push(format!(
                "{name}: error should contain `{}`: {message}",
                expected.text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
