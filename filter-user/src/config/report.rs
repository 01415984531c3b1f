//! Where a problem is in the file, and [`ConfigError`], which names it.

use std::{fmt, ops::Range, path::PathBuf};

use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::Source;
use crate::lists::ListFileError;

/// A place in the file, 1-based; the column counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a configuration file was refused. Each names the file, and the line, column and key
/// where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read (or is not UTF-8).
    #[error("cannot read {}: {error}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A syntax error, an unknown key, a wrong type or a value out of bounds.
    #[error("{}:{at}: {}{problem}", file.display(), key_prefix(key.as_deref()))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Where.
        at: Position,
        /// The dotted key, e.g. `limits.prefix.v4.len`, when the problem has one.
        key: Option<String>,
        /// What is wrong.
        problem: String,
    },
    /// A list file named by `allow.files` or `deny.files` was refused.
    #[error("{}:{at}: {key}: {error}", file.display())]
    ListFile {
        /// The configuration file.
        file: PathBuf,
        /// Where it names the list file.
        at: Position,
        /// The key naming the list file, e.g. `allow.files[0]`.
        key: String,
        /// The list file's error, naming the list file and its line.
        error: ListFileError,
    },
}

fn key_prefix(key: Option<&str>) -> String {
    key.map(|key| format!("{key}: ")).unwrap_or_default()
}

impl Source<'_> {
    pub(super) fn position(&self, offset: usize) -> Position {
        let before = &self.text[..self.text.floor_char_boundary(offset)];
        let line_text = before.rsplit('\n').next().unwrap_or_default();
        Position {
            line: before.matches('\n').count() + 1,
            column: line_text.chars().count() + 1,
        }
    }

    pub(super) fn error(
        &self,
        span: &Range<usize>,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.path.to_owned(),
            at: self.position(span.start),
            key: Some(key.into()),
            problem: problem.into(),
        }
    }

    pub(super) fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        let mut problem = error.message().trim_end().to_owned();
        // The parser's message does not say which key; its span does.
        if problem == "duplicate key"
            && let Some(key) = self.text.get(span.clone())
        {
            problem = format!("duplicate key `{key}`");
        }
        ConfigError::Invalid {
            file: self.path.to_owned(),
            at: self.position(span.start),
            key: None,
            problem,
        }
    }

    pub(super) fn schema_error(
        &self,
        error: &toml::de::Error,
        document: &DeTable<'_>,
    ) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        ConfigError::Invalid {
            file: self.path.to_owned(),
            at: self.position(span.start),
            key: table_key_at(document, span.start),
            problem: error.message().trim_end().to_owned(),
        }
    }
}

/// The dotted key at byte `offset` of the document, e.g. `limits.prefix.v4.len` or
/// `interface[1].name`, for serde's errors, which carry a span but no key.
fn table_key_at(table: &DeTable<'_>, offset: usize) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        if key.span().contains(&offset) {
            Some(key.get_ref().to_string())
        } else {
            value_key_at(value, offset).map(|rest| format!("{}{rest}", key.get_ref()))
        }
    })
}

/// The rest of the key inside `value` at `offset` (`""` for the value itself).
fn value_key_at(value: &Spanned<DeValue<'_>>, offset: usize) -> Option<String> {
    // Children first: a table's span is its header, which does not cover its keys.
    let inner = match value.get_ref() {
        DeValue::Table(table) => table_key_at(table, offset).map(|key| format!(".{key}")),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            value_key_at(item, offset).map(|rest| format!("[{index}]{rest}"))
        }),
        _ => None,
    };
    inner.or_else(|| value.span().contains(&offset).then(String::new))
}
