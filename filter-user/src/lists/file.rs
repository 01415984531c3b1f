//! List files: one prefix a line, `#` comments, every bad line named as `FILE:LINE`.
//! Plain parsing; adding the prefixes to a list is the caller's business.

use std::{collections::HashSet, path::Path};

use super::prefix::{Prefix, PrefixError};

/// At most this many bad lines are named in one [`ListFileError::Invalid`].
pub const MAX_REPORTED_LINES: usize = 20;

/// One bad line of a list file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub error: PrefixError,
}

/// Why a list file was refused. Every message names the file, and the line where there is
/// one.
#[derive(Debug, thiserror::Error)]
pub enum ListFileError {
    /// The file cannot be read.
    #[error("cannot read {file}: {error}")]
    Read {
        /// The file as named.
        file: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("{file}:{line}: not UTF-8 text")]
    NotUtf8 {
        /// The file as named.
        file: String,
        /// 1-based line of the first invalid byte.
        line: usize,
    },
    /// Lines that are not prefixes.
    #[error("{}", display_invalid(file, errors, *invalid))]
    Invalid {
        /// The file as named.
        file: String,
        /// The first [`MAX_REPORTED_LINES`] bad lines.
        errors: Vec<LineError>,
        /// How many lines are bad in all.
        invalid: usize,
    },
}

fn display_invalid(file: &str, errors: &[LineError], invalid: usize) -> String {
    let mut lines: Vec<String> = errors
        .iter()
        .map(|e| format!("{file}:{}: {}", e.line, e.error))
        .collect();
    if invalid > errors.len() {
        lines.push(format!(
            "{file}: {} more invalid lines not shown ({invalid} in all)",
            invalid - errors.len()
        ));
    }
    lines.join("\n")
}

/// Parses the text of a list file: one prefix a line (as [`Prefix`] parses it), `#` starts
/// a comment (a whole line or the rest of one), blank lines are ignored, surrounding
/// whitespace is trimmed. A prefix listed twice is kept once, at its first line: lists
/// merged from several feeds repeat themselves, and a repeat is harmless. A file with no
/// prefixes gives an empty list.
///
/// `file_name` is only used in errors.
///
/// # Errors
/// [`ListFileError::Invalid`] naming every bad line (up to [`MAX_REPORTED_LINES`]) as
/// `FILE:LINE: problem`.
pub fn parse_list(text: &str, file_name: &str) -> Result<Vec<Prefix>, ListFileError> {
    // Editors on some systems start UTF-8 files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut seen = HashSet::new();
    let mut prefixes = Vec::new();
    let mut errors = Vec::new();
    let mut invalid = 0;
    for (index, line) in text.lines().enumerate() {
        let content = line
            .split_once('#')
            .map_or(line, |(before, _)| before)
            .trim();
        if content.is_empty() {
            continue;
        }
        match content.parse::<Prefix>() {
            Ok(prefix) => {
                if seen.insert(prefix) {
                    prefixes.push(prefix);
                }
            }
            Err(error) => {
                invalid += 1;
                if errors.len() < MAX_REPORTED_LINES {
                    errors.push(LineError {
                        line: index + 1,
                        error,
                    });
                }
            }
        }
    }
    if invalid > 0 {
        return Err(ListFileError::Invalid {
            file: file_name.to_owned(),
            errors,
            invalid,
        });
    }
    Ok(prefixes)
}

/// Reads and parses a list file (see [`parse_list`]).
///
/// # Errors
/// If the file cannot be read or is not UTF-8 (naming the line), or as [`parse_list`].
pub fn parse_list_file(path: &Path) -> Result<Vec<Prefix>, ListFileError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| ListFileError::Read {
        file: file.clone(),
        error,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| ListFileError::NotUtf8 {
        line: bytes[..e.valid_up_to()].split(|&b| b == b'\n').count(),
        file: file.clone(),
    })?;
    parse_list(text, &file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::tests::p;

    #[test]
    fn list_files_take_comments_blanks_and_whitespace() {
        let text = "\u{feff}# feed of 2025-01-01\n\
                    198.18.0.0/24\n\
                    \n\
                    \t 198.18.1.0/24   # trailing comment\r\n\
                    2001:2::/48\n\
                    198.18.0.7\n\
                    198.18.0.0/24   # repeated: kept once\n\
                    #198.18.9.0/24\n";
        let prefixes = parse_list(text, "blocklist.txt").expect("valid file");
        assert_eq!(
            prefixes,
            [
                p("198.18.0.0/24"),
                p("198.18.1.0/24"),
                p("2001:2::/48"),
                p("198.18.0.7/32")
            ]
        );
        assert_eq!(parse_list("# nothing\n\n", "empty.txt").expect("empty"), []);
    }

    #[test]
    fn list_file_errors_name_the_file_line_and_problem() {
        let text = "198.18.0.0/24\n\n198.18.0.1/24\nnot-an-address # comment\n2001:2::/48\n";
        let error = parse_list(text, "blocklist.txt").expect_err("two bad lines");
        assert_eq!(
            error.to_string(),
            "blocklist.txt:3: 198.18.0.1/24 has host bits set; did you mean 198.18.0.0/24 (or \
             198.18.0.1/32 for the one address)?\n\
             blocklist.txt:4: `not-an-address` is not an IP address or prefix (examples: \
             198.18.0.0/24, 2001:2::/48, 198.18.0.7)"
        );
        let ListFileError::Invalid {
            errors, invalid, ..
        } = error
        else {
            panic!("bad lines must give Invalid");
        };
        assert_eq!(invalid, 2);
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn many_bad_lines_are_summed_up() {
        let text = "bad\n".repeat(MAX_REPORTED_LINES + 5);
        let message = parse_list(&text, "f.txt").expect_err("all bad").to_string();
        assert_eq!(message.lines().count(), MAX_REPORTED_LINES + 1);
        assert!(
            message.ends_with("f.txt: 5 more invalid lines not shown (25 in all)"),
            "{message}"
        );
    }

    #[test]
    fn list_file_read_errors_name_the_file_and_line() {
        let dir = std::env::temp_dir().join(format!("floodwall-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let missing = dir.join("missing.txt");
        let message = parse_list_file(&missing).expect_err("missing").to_string();
        assert!(
            message.starts_with(&format!("cannot read {}: ", missing.display())),
            "{message}"
        );
        let binary = dir.join("binary.txt");
        std::fs::write(&binary, b"198.18.0.0/24\n198.18.\xff\n").expect("write");
        let message = parse_list_file(&binary).expect_err("not UTF-8").to_string();
        assert_eq!(message, format!("{}:2: not UTF-8 text", binary.display()));
        let good = dir.join("good.txt");
        std::fs::write(&good, "198.18.0.0/24\n").expect("write");
        assert_eq!(parse_list_file(&good).expect("good"), [p("198.18.0.0/24")]);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
