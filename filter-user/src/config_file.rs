//! The daemon's TOML configuration file: what it holds, how it is read and checked, and how
//! two versions of it differ.
//!
//! Reading a file changes nothing: [`load`] and [`parse`] read the file and its list files
//! (and look up group names) and return either a complete, validated [`DaemonFile`] or the
//! first [`ConfigError`]. The daemon applies a file only once it parsed whole, so a bad
//! file, at start or on reload, leaves the running filter exactly as it was.
//!
//! The schema is documented in `packaging/floodwall.toml`, the commented sample that ships
//! with floodwall; a test keeps that sample valid and its values equal to the defaults.
//!
//! Errors read `FILE:LINE:COLUMN: KEY: PROBLEM`. The text is parsed into `toml`'s spanned
//! document tree and deserialized from it with `deny_unknown_fields` on every table, so a
//! misspelt key is an error instead of a setting silently ignored. Values keep their byte
//! spans, so the checks after deserialization point at the value they refuse too. Limits
//! are validated by [`Limits::apply`], the same code that validates `floodwall limits set`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
};

use clap::ValueEnum;
use filter_common::{DEFAULT_LIST_CAPACITY, DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES};
use nix::unistd::Gid;
use serde::{Deserialize, de};
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use crate::{
    config::{
        Burst, ClassName, FilterMode, Kind, Limits, LimitsChange, Rate, Setting, Value,
        parse_burst, parse_duration_ms, parse_rate,
    },
    lists::{Family, ListFileError, Prefix, parse_list_file},
    loader::AttachMode,
};

/// Where the daemon looks for its configuration unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/floodwall/floodwall.toml";

/// Longest interface name: the kernel's `IFNAMSIZ` (16) less the terminating NUL.
pub const MAX_IFACE_NAME_BYTES: usize = 15;

/// A validated configuration file.
///
/// Lists are sorted and hold each prefix once, so two files that say the same thing compare
/// equal whatever their order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonFile {
    /// The file it was read from; list file paths in errors are relative to its directory.
    pub path: PathBuf,
    /// Interfaces to protect, in file order, at least one.
    pub interfaces: Vec<InterfaceConfig>,
    /// The limits: [`Limits::default`] with the file's `[limits]` applied.
    pub limits: Limits,
    /// Capacity of the per-source table.
    pub max_sources: u32,
    /// Capacity of each list trie (allow and deny, IPv4 and IPv6 each).
    pub list_capacity: u32,
    /// Capacity of the prefix table.
    pub max_prefixes: u32,
    /// Where to serve Prometheus metrics; `None`: no metrics endpoint.
    pub metrics_addr: Option<SocketAddr>,
    /// Members may change the running daemon (root always may).
    pub admin_group: Option<GroupRef>,
    /// Members may run the read-only commands.
    pub read_group: Option<GroupRef>,
    /// Directory of the control sockets; `None`: the default (or the command line's).
    pub run_dir: Option<PathBuf>,
    /// The allowlist, inline entries and list files together.
    pub allow: Vec<Prefix>,
    /// The denylist, inline entries and list files together.
    pub deny: Vec<Prefix>,
}

/// One `[[interface]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// The interface name, e.g. `eth0`. Whether it exists is the daemon's to check.
    pub name: String,
    /// Its XDP mode: its own `xdp_mode`, else `[daemon] xdp_mode`, else `auto`.
    pub xdp_mode: AttachMode,
}

/// A group as the file names it: by name (resolved when the file was read) or by number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRef {
    /// The name, if the file gave one.
    pub name: Option<String>,
    /// The group id.
    pub gid: Gid,
}

impl fmt::Display for GroupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} (gid {})", self.gid),
            None => write!(f, "gid {}", self.gid),
        }
    }
}

impl DaemonFile {
    /// Denylist entries that an allowlist entry covers (the same prefix or a longer one
    /// inside it): the allowlist wins in the data path, so these never drop anything.
    /// Allowed, because feeds overlap, but worth telling the operator.
    #[must_use]
    pub fn shadowed_deny_entries(&self) -> Vec<Prefix> {
        self.deny
            .iter()
            .filter(|deny| self.allow.iter().any(|allow| covers(allow, deny)))
            .copied()
            .collect()
    }
}

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

/// A group as `--admin-group`/`--read-group` give it: a numeric gid, or the name of a group
/// that exists.
///
/// # Errors
/// If the name names no group.
pub fn parse_group(text: &str) -> Result<GroupRef, String> {
    match text.parse::<u32>() {
        Ok(gid) => Ok(GroupRef {
            name: None,
            gid: Gid::from_raw(gid),
        }),
        Err(_) => group_by_name(text),
    }
}

fn group_by_name(name: &str) -> Result<GroupRef, String> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(GroupRef {
            name: Some(name.to_owned()),
            gid: group.gid,
        }),
        Ok(None) => Err(format!("no group named `{name}` on this system")),
        Err(e) => Err(format!("cannot look up group `{name}`: {e}")),
    }
}

/// Reads and validates the configuration file at `path` and the list files it names.
///
/// # Errors
/// A [`ConfigError`] if the file cannot be read or is not valid (see [`parse`]).
pub fn load(path: &Path) -> Result<DaemonFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        file: path.to_owned(),
        error,
    })?;
    parse(path, &text)
}

/// Validates `text` as the configuration file at `path`. Relative list files are read from
/// `path`'s directory and group names are looked up in the system's group database;
/// nothing else is read and nothing is changed.
///
/// # Errors
/// The first problem found, as a [`ConfigError`] naming the line, column and key.
pub fn parse(path: &Path, text: &str) -> Result<DaemonFile, ConfigError> {
    let source = Source { path, text };
    let document = DeTable::parse(text).map_err(|e| source.syntax_error(&e))?;
    if document.get_ref().is_empty() {
        // Likely the wrong file, or one emptied by mistake: say so rather than name the
        // first missing key.
        return Err(ConfigError::Invalid {
            file: path.to_owned(),
            at: Position { line: 1, column: 1 },
            key: None,
            problem: "the file sets nothing (only comments or blank lines); it needs at least \
                      one [[interface]]"
                .into(),
        });
    }
    let raw = RawFile::deserialize(toml::de::Deserializer::from(document.clone()))
        .map_err(|e| source.schema_error(&e, document.get_ref()))?;
    source.build(raw, document.get_ref())
}

// ---------------------------------------------------------------------------------------
// The file as written: serde's side. Every value keeps its span for the checks that follow.
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    daemon: Option<RawDaemon>,
    interface: Option<Spanned<Vec<Spanned<RawInterface>>>>,
    /// Read from the document by [`Setting`]'s keys, see `Source::limits`.
    #[expect(dead_code, reason = "only checked to be present")]
    limits: Option<de::IgnoredAny>,
    allow: Option<Spanned<RawList>>,
    deny: Option<Spanned<RawList>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    xdp_mode: Option<Spanned<String>>,
    metrics_addr: Option<Spanned<String>>,
    max_sources: Option<Spanned<u32>>,
    list_capacity: Option<Spanned<u32>>,
    max_prefixes: Option<Spanned<u32>>,
    admin_group: Option<Spanned<Scalar>>,
    read_group: Option<Spanned<Scalar>>,
    run_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Spanned<String>,
    xdp_mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    prefixes: Option<Vec<Spanned<String>>>,
    files: Option<Vec<Spanned<String>>>,
}

/// A value written either as a TOML integer or as a string: rates (`10000` or `"10k"`),
/// bursts, durations and groups. Which forms a key takes is checked where it is used, so
/// the error can say what that key expects.
enum Scalar {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl de::Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(value))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Scalar, E> {
                i64::try_from(value)
                    .map(Scalar::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(value.to_owned()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

// ---------------------------------------------------------------------------------------
// From the file as written to a DaemonFile
// ---------------------------------------------------------------------------------------

struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn position(&self, offset: usize) -> Position {
        let before = &self.text[..self.text.floor_char_boundary(offset)];
        let line_text = before.rsplit('\n').next().unwrap_or_default();
        Position {
            line: before.matches('\n').count() + 1,
            column: line_text.chars().count() + 1,
        }
    }

    fn error(
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

    fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
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

    fn schema_error(&self, error: &toml::de::Error, document: &DeTable<'_>) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        ConfigError::Invalid {
            file: self.path.to_owned(),
            at: self.position(span.start),
            key: table_key_at(document, span.start),
            problem: error.message().trim_end().to_owned(),
        }
    }

    fn build(&self, raw: RawFile, document: &DeTable<'_>) -> Result<DaemonFile, ConfigError> {
        let daemon = raw.daemon.unwrap_or_default();
        let default_mode = match &daemon.xdp_mode {
            Some(mode) => self.choice::<AttachMode>(mode, "daemon.xdp_mode", "an XDP mode")?,
            None => AttachMode::default(),
        };
        let max_sources = self.capacity(
            daemon.max_sources.as_ref(),
            "daemon.max_sources",
            DEFAULT_MAX_SOURCES,
        )?;
        let list_capacity = self.capacity(
            daemon.list_capacity.as_ref(),
            "daemon.list_capacity",
            DEFAULT_LIST_CAPACITY,
        )?;
        let max_prefixes = self.capacity(
            daemon.max_prefixes.as_ref(),
            "daemon.max_prefixes",
            DEFAULT_MAX_PREFIXES,
        )?;
        let metrics_addr = daemon
            .metrics_addr
            .as_ref()
            .map(|addr| {
                addr.get_ref().parse::<SocketAddr>().map_err(|_| {
                    self.error(
                        &addr.span(),
                        "daemon.metrics_addr",
                        format!(
                            "`{}` is not an address and port (e.g. 127.0.0.1:9477 or [::1]:9477)",
                            addr.get_ref()
                        ),
                    )
                })
            })
            .transpose()?;
        let admin_group = daemon
            .admin_group
            .as_ref()
            .map(|group| self.group(group, "daemon.admin_group"))
            .transpose()?;
        let read_group = daemon
            .read_group
            .as_ref()
            .map(|group| self.group(group, "daemon.read_group"))
            .transpose()?;
        let run_dir = daemon
            .run_dir
            .as_ref()
            .map(|dir| {
                let path = PathBuf::from(dir.get_ref());
                if path.is_absolute() {
                    Ok(path)
                } else {
                    Err(self.error(
                        &dir.span(),
                        "daemon.run_dir",
                        format!("`{}` is not an absolute path", dir.get_ref()),
                    ))
                }
            })
            .transpose()?;
        let interfaces = self.interfaces(raw.interface, default_mode)?;
        let limits = self.limits(document)?;
        let allow = self.list(raw.allow, "allow", list_capacity)?;
        let deny = self.list(raw.deny, "deny", list_capacity)?;
        Ok(DaemonFile {
            path: self.path.to_owned(),
            interfaces,
            limits,
            max_sources,
            list_capacity,
            max_prefixes,
            metrics_addr,
            admin_group,
            read_group,
            run_dir,
            allow,
            deny,
        })
    }

    /// A value of a [`ValueEnum`] (modes), named exactly as the CLI names it.
    fn choice<T: ValueEnum>(
        &self,
        value: &Spanned<String>,
        key: &str,
        what: &str,
    ) -> Result<T, ConfigError> {
        T::from_str(value.get_ref(), false).map_err(|_| {
            let names: Vec<String> = T::value_variants()
                .iter()
                .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
                .collect();
            self.error(
                &value.span(),
                key,
                format!("`{}` is not {what} ({})", value.get_ref(), names.join(", ")),
            )
        })
    }

    fn capacity(
        &self,
        value: Option<&Spanned<u32>>,
        key: &str,
        default: u32,
    ) -> Result<u32, ConfigError> {
        match value {
            None => Ok(default),
            Some(value) if *value.get_ref() == 0 => {
                Err(self.error(&value.span(), key, "must be at least 1"))
            }
            Some(value) => Ok(*value.get_ref()),
        }
    }

    fn group(&self, value: &Spanned<Scalar>, key: &str) -> Result<GroupRef, ConfigError> {
        match value.get_ref() {
            Scalar::Int(gid) => u32::try_from(*gid)
                .map(|gid| GroupRef {
                    name: None,
                    gid: Gid::from_raw(gid),
                })
                .map_err(|_| self.error(&value.span(), key, format!("gid {gid} is out of range"))),
            Scalar::Text(name) => {
                group_by_name(name).map_err(|problem| self.error(&value.span(), key, problem))
            }
        }
    }

    fn interfaces(
        &self,
        raw: Option<Spanned<Vec<Spanned<RawInterface>>>>,
        default_mode: AttachMode,
    ) -> Result<Vec<InterfaceConfig>, ConfigError> {
        let Some(raw) = raw.filter(|list| !list.get_ref().is_empty()) else {
            return Err(self.error(
                &(0..0),
                "interface",
                "no interface: add at least one [[interface]] with a name",
            ));
        };
        let mut interfaces: Vec<InterfaceConfig> = Vec::new();
        for (index, entry) in raw.get_ref().iter().enumerate() {
            let entry = entry.get_ref();
            let key = format!("interface[{index}].name");
            let name = entry.name.get_ref();
            if let Some(problem) = iface_name_problem(name) {
                return Err(self.error(&entry.name.span(), key, problem));
            }
            if interfaces.iter().any(|i| i.name == *name) {
                return Err(self.error(
                    &entry.name.span(),
                    key,
                    format!("interface `{name}` is listed twice"),
                ));
            }
            let xdp_mode = match &entry.xdp_mode {
                Some(mode) => self.choice::<AttachMode>(
                    mode,
                    &format!("interface[{index}].xdp_mode"),
                    "an XDP mode",
                )?,
                None => default_mode,
            };
            interfaces.push(InterfaceConfig {
                name: name.clone(),
                xdp_mode,
            });
        }
        Ok(interfaces)
    }

    /// The `[limits]` table. Its keys are [`Setting::key`]s, each read as its setting's
    /// [`Kind`], so the table knows every setting there is and nothing else.
    fn limits(&self, document: &DeTable<'_>) -> Result<Limits, ConfigError> {
        let Some((_, table)) = document.iter().find(|(key, _)| key.get_ref() == "limits") else {
            return Ok(Limits::default());
        };
        let mut found = Vec::new();
        self.limit_table(table, "", document, &mut found)?;
        let mut change = LimitsChange::default();
        for &(setting, value, _) in &found {
            change.set(setting, value);
        }
        Limits::default().apply(&change).map_err(|error| {
            // The setting refused, else (a burst that does not fit its rate) its rate.
            let own = found.iter().find(|(s, ..)| *s == error.setting);
            let rate = || {
                let rate = error.setting.rate_of_burst()?;
                found.iter().find(|(s, ..)| *s == rate)
            };
            match (own, rate()) {
                (Some((setting, _, span)), _) => {
                    self.error(span, format!("limits.{}", setting.key()), error.problem())
                }
                (None, Some((setting, _, span))) => {
                    self.error(span, format!("limits.{}", setting.key()), error.to_string())
                }
                (None, None) => self.error(&table.span(), "limits", error.to_string()),
            }
        })
    }

    /// Reads the settings of one table of `[limits]` (`path` is its dotted key inside
    /// `[limits]`, empty for `[limits]` itself) into `found`.
    fn limit_table(
        &self,
        table: &Spanned<DeValue<'_>>,
        path: &str,
        document: &DeTable<'_>,
        found: &mut Vec<(Setting, Value, Range<usize>)>,
    ) -> Result<(), ConfigError> {
        let full_key = |path: &str| {
            if path.is_empty() {
                "limits".to_owned()
            } else {
                format!("limits.{path}")
            }
        };
        let DeValue::Table(entries) = table.get_ref() else {
            return Err(self.error(
                &table.span(),
                full_key(path),
                format!(
                    "invalid type: {}, expected a table",
                    table.get_ref().type_str()
                ),
            ));
        };
        for (key, value) in entries {
            let key_path = if path.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{path}.{}", key.get_ref())
            };
            if let Some(setting) = Setting::all().find(|s| s.key() == key_path) {
                let span = value.span();
                found.push((setting, self.limit_value(setting, value, document)?, span));
            } else if Setting::all().any(|s| s.key().starts_with(&format!("{key_path}."))) {
                self.limit_table(value, &key_path, document, found)?;
            } else {
                return Err(self.error(
                    &key.span(),
                    full_key(&key_path),
                    format!("unknown field `{}`, {}", key.get_ref(), expected_keys(path)),
                ));
            }
        }
        Ok(())
    }

    /// The value of `setting`, read as its kind.
    fn limit_value(
        &self,
        setting: Setting,
        value: &Spanned<DeValue<'_>>,
        document: &DeTable<'_>,
    ) -> Result<Value, ConfigError> {
        let key = format!("limits.{}", setting.key());
        let span = value.span();
        let error = |problem: String| self.error(&span, &key, problem);
        Ok(match setting.kind() {
            Kind::Rate => match self.typed::<Scalar>(value, document)? {
                Scalar::Int(n) => {
                    Value::Rate(u64::try_from(n).map(Rate::PerSecond).map_err(|_| {
                        error(format!(
                            "{n} is negative; a rate is a count per second or \"unlimited\""
                        ))
                    })?)
                }
                Scalar::Text(text) => Value::Rate(
                    parse_rate(&text)
                        .map_err(|e| error(format!("invalid rate \"{text}\": {e}")))?,
                ),
            },
            Kind::Burst => match self.typed::<Scalar>(value, document)? {
                Scalar::Int(n) => {
                    Value::Burst(u64::try_from(n).map(Burst::Exactly).map_err(|_| {
                        error(format!("{n} is negative; a burst is a count or \"auto\""))
                    })?)
                }
                Scalar::Text(text) => Value::Burst(
                    parse_burst(&text)
                        .map_err(|e| error(format!("invalid burst \"{text}\": {e}")))?,
                ),
            },
            Kind::Duration => match self.typed::<Scalar>(value, document)? {
                // A bare number could mean seconds or milliseconds; make the operator say.
                Scalar::Int(n) => {
                    return Err(error(format!(
                        "{n} has no unit; write a duration such as \"{n}s\" or \"10m\""
                    )));
                }
                Scalar::Text(text) => Value::Duration(
                    parse_duration_ms(&text)
                        .map_err(|e| error(format!("invalid duration \"{text}\": {e}")))?,
                ),
            },
            Kind::Mode => {
                let text = self.typed::<Spanned<String>>(value, document)?;
                Value::Mode(self.choice::<FilterMode>(&text, &key, "a mode")?)
            }
            Kind::Count => Value::Count(self.typed::<u32>(value, document)?),
            Kind::Classes => {
                // The file states the whole set: a class not listed is not in it.
                let names = self.typed::<Vec<Spanned<String>>>(value, document)?;
                let mut set = [false; filter_common::CLASSES];
                for (index, name) in names.iter().enumerate() {
                    let key = format!("{key}[{index}]");
                    let class = self.choice::<ClassName>(name, &key, "a class")?;
                    if std::mem::replace(&mut set[class.index()], true) {
                        return Err(self.error(
                            &name.span(),
                            key,
                            format!("class {class} is listed twice"),
                        ));
                    }
                }
                Value::Classes(set)
            }
        })
    }

    /// `value` deserialized as a `T`, with serde's words for a value of the wrong type.
    fn typed<T: de::DeserializeOwned>(
        &self,
        value: &Spanned<DeValue<'_>>,
        document: &DeTable<'_>,
    ) -> Result<T, ConfigError> {
        T::deserialize(toml::de::ValueDeserializer::from(value.clone()))
            .map_err(|e| self.schema_error(&e, document))
    }

    fn list(
        &self,
        raw: Option<Spanned<RawList>>,
        name: &str,
        capacity: u32,
    ) -> Result<Vec<Prefix>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        let span = raw.span();
        let raw = raw.into_inner();
        let mut prefixes = Vec::new();
        for (index, text) in raw.prefixes.iter().flatten().enumerate() {
            let prefix = text.get_ref().parse::<Prefix>().map_err(|e| {
                self.error(
                    &text.span(),
                    format!("{name}.prefixes[{index}]"),
                    e.to_string(),
                )
            })?;
            prefixes.push(prefix);
        }
        for (index, file) in raw.files.iter().flatten().enumerate() {
            let listed = parse_list_file(&self.resolve(file.get_ref())).map_err(|error| {
                ConfigError::ListFile {
                    file: self.path.to_owned(),
                    at: self.position(file.span().start),
                    key: format!("{name}.files[{index}]"),
                    error,
                }
            })?;
            prefixes.extend(listed);
        }
        prefixes.sort_unstable();
        prefixes.dedup();
        // The daemon would fail to fill a trie past its capacity; say so now, not at start.
        for family in [Family::V4, Family::V6] {
            let count = prefixes.iter().filter(|p| p.family() == family).count();
            if count > capacity as usize {
                return Err(self.error(
                    &span,
                    name,
                    format!("{count} {family} prefixes do not fit daemon.list_capacity {capacity}"),
                ));
            }
        }
        Ok(prefixes)
    }

    /// A list file's path: relative ones are relative to the configuration file's
    /// directory, so the file means the same whatever the daemon's working directory.
    fn resolve(&self, file: &str) -> PathBuf {
        let file = Path::new(file);
        match self.path.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file.to_owned(),
        }
    }
}

/// Why `name` cannot be an interface name, by the kernel's own rule (`dev_valid_name` in
/// net/core/dev.c): not empty, shorter than `IFNAMSIZ`, not `.` or `..`, no `/`, `:` or
/// whitespace. NUL and other control characters cannot cross the C API either.
fn iface_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the interface name is empty".into());
    }
    if name.len() > MAX_IFACE_NAME_BYTES {
        return Some(format!(
            "interface name `{name}` is {} bytes long; the kernel allows at most {MAX_IFACE_NAME_BYTES}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` is not an interface name"));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Some(format!(
            "interface name `{}` contains {bad:?}, which the kernel does not allow",
            name.escape_debug()
        ));
    }
    None
}

/// Whether `wide` holds every address of `narrow`.
fn covers(wide: &Prefix, narrow: &Prefix) -> bool {
    fn network(bits: u128, width: u8, len: u8) -> u128 {
        // Shift the host bits out and back; a shift by the full width leaves nothing.
        let host_bits = u32::from(width - len);
        bits.checked_shr(host_bits)
            .and_then(|n| n.checked_shl(host_bits))
            .unwrap_or(0)
    }
    if wide.prefix_len() > narrow.prefix_len() {
        return false;
    }
    let (wide_bits, narrow_bits, width) = match (wide.addr(), narrow.addr()) {
        (IpAddr::V4(w), IpAddr::V4(n)) => (u128::from(w.to_bits()), u128::from(n.to_bits()), 32),
        (IpAddr::V6(w), IpAddr::V6(n)) => (w.to_bits(), n.to_bits(), 128),
        _ => return false,
    };
    network(narrow_bits, width, wide.prefix_len()) == wide_bits
}

/// serde's words for the keys one table of `[limits]` (at `path`) takes.
fn expected_keys(path: &str) -> String {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    };
    let mut names: Vec<String> = Vec::new();
    for setting in Setting::all() {
        if let Some(rest) = setting.key().strip_prefix(&prefix) {
            let name = rest.split('.').next().unwrap_or(rest).to_owned();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        _ => format!("expected one of {}", quoted.join(", ")),
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

// ---------------------------------------------------------------------------------------
// Differences between two files, for the log of a reload
// ---------------------------------------------------------------------------------------

/// What changes from `old` to `new`, one line per value, e.g. `limits.pps: 10000/s ->
/// 20000/s`, `allow: + 198.18.7.0/24`, `interface: - eth1`. Empty when they are equal.
#[must_use]
pub fn diff(old: &DaemonFile, new: &DaemonFile) -> Vec<String> {
    let mut lines = Vec::new();
    let mut changed = |key: &str, from: String, to: String| {
        if from != to {
            lines.push(format!("{key}: {from} -> {to}"));
        }
    };
    changed(
        "path",
        old.path.display().to_string(),
        new.path.display().to_string(),
    );
    for (key, from, to) in [
        ("daemon.max_sources", old.max_sources, new.max_sources),
        ("daemon.list_capacity", old.list_capacity, new.list_capacity),
        ("daemon.max_prefixes", old.max_prefixes, new.max_prefixes),
    ] {
        changed(key, from.to_string(), to.to_string());
    }
    let addr = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    changed(
        "daemon.metrics_addr",
        addr(old.metrics_addr),
        addr(new.metrics_addr),
    );
    let group = |g: &Option<GroupRef>| {
        g.as_ref()
            .map_or_else(|| "none".into(), GroupRef::to_string)
    };
    changed(
        "daemon.admin_group",
        group(&old.admin_group),
        group(&new.admin_group),
    );
    changed(
        "daemon.read_group",
        group(&old.read_group),
        group(&new.read_group),
    );
    let dir = |d: &Option<PathBuf>| {
        d.as_ref()
            .map_or_else(|| "default".into(), |d| d.display().to_string())
    };
    changed("daemon.run_dir", dir(&old.run_dir), dir(&new.run_dir));
    diff_interfaces(&mut lines, &old.interfaces, &new.interfaces);
    diff_limits(&mut lines, &old.limits, &new.limits);
    for (name, from, to) in [
        ("allow", &old.allow, &new.allow),
        ("deny", &old.deny, &new.deny),
    ] {
        let from: BTreeSet<_> = from.iter().collect();
        let to: BTreeSet<_> = to.iter().collect();
        lines.extend(to.difference(&from).map(|p| format!("{name}: + {p}")));
        lines.extend(from.difference(&to).map(|p| format!("{name}: - {p}")));
    }
    lines
}

fn diff_interfaces(lines: &mut Vec<String>, old: &[InterfaceConfig], new: &[InterfaceConfig]) {
    let modes = |list: &[InterfaceConfig]| -> BTreeMap<String, AttachMode> {
        list.iter().map(|i| (i.name.clone(), i.xdp_mode)).collect()
    };
    let (old, new) = (modes(old), modes(new));
    for (name, mode) in &new {
        match old.get(name) {
            None => lines.push(format!("interface: + {name} (xdp_mode {mode})")),
            Some(was) if was != mode => {
                lines.push(format!("interface {name}: xdp_mode: {was} -> {mode}"));
            }
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|name| !new.contains_key(*name)) {
        lines.push(format!("interface: - {name}"));
    }
}

fn diff_limits(lines: &mut Vec<String>, old: &Limits, new: &Limits) {
    for (setting, from, to) in old.differences(new) {
        lines.push(format!("limits.{}: {from} -> {to}", setting.key()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with list files; configuration texts are parsed as if they were there.
    fn corpus_path(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/config_corpus")
            .join(file)
    }

    fn parse_ok(text: &str) -> DaemonFile {
        parse(&corpus_path("test.toml"), text)
            .unwrap_or_else(|e| panic!("expected a valid file, got: {e}\n{text}"))
    }

    fn parse_err(text: &str) -> String {
        match parse(&corpus_path("test.toml"), text) {
            Ok(file) => panic!("expected an error, got {file:?}\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    fn prefixes(list: &[&str]) -> Vec<Prefix> {
        list.iter()
            .map(|p| p.parse().expect("test prefixes are valid"))
            .collect()
    }

    const MINIMAL: &str = "[[interface]]\nname = \"eth0\"\n";

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one file with every key, and one assertion per key"
    )]
    fn every_key_reaches_the_result() {
        let file = parse_ok(
            r#"
[daemon]
xdp_mode = "skb"
metrics_addr = "[::1]:9477"
max_sources = 4096
list_capacity = 1024
max_prefixes = 2048
admin_group = "root"
read_group = 4
run_dir = "/run/fw-test"

[[interface]]
name = "eth0"
[[interface]]
name = "veth-fw1"
xdp_mode = "driver"

[limits]
pps = "20k"
burst_packets = 40000
bps = "1G"
burst_bytes = "10M"
block_for = "90s"
mode = "monitor"
admit_after = 2
admit_rate = "unlimited"
deny_mode = "monitor"
monitor_classes = ["udp", "icmp"]
[limits.class_pps]
syn = "50"
tcp = 1000
udp = "2k"
icmp = 10
fragment = "5"
other = "unlimited"
[limits.ceiling]
syn = "20k"
tcp = "unlimited"
udp = 30000
icmp = "1k"
fragment = "2k"
other = "3k"
[limits.prefix.v4]
len = 22
pps = "30k"
bps = "100M"
class_pps = { syn = "2k" }
[limits.prefix.v6]
len = 56
pps = 40000
[limits.prefix.v6-wide]
len = 40
bps = "1G"
class_pps = { udp = "5k", other = 100 }

[allow]
prefixes = ["198.18.0.0/16"]
files = ["lists/good-allow.txt"]
[deny]
prefixes = ["2001:2::/48", "198.18.99.7"]
"#,
        );
        let gid = |n| Gid::from_raw(n);
        assert_eq!(
            file.interfaces,
            [
                InterfaceConfig {
                    name: "eth0".into(),
                    xdp_mode: AttachMode::Skb,
                },
                InterfaceConfig {
                    name: "veth-fw1".into(),
                    xdp_mode: AttachMode::Driver,
                },
            ],
            "an interface without xdp_mode takes [daemon] xdp_mode"
        );
        assert_eq!(file.metrics_addr, Some("[::1]:9477".parse().expect("addr")));
        assert_eq!(
            (file.max_sources, file.list_capacity, file.max_prefixes),
            (4096, 1024, 2048)
        );
        assert_eq!(
            file.admin_group,
            Some(GroupRef {
                name: Some("root".into()),
                gid: gid(0),
            })
        );
        assert_eq!(
            file.read_group,
            Some(GroupRef {
                name: None,
                gid: gid(4),
            })
        );
        assert_eq!(file.run_dir, Some(PathBuf::from("/run/fw-test")));
        assert_eq!(
            file.allow,
            prefixes(&["198.18.0.0/16", "198.18.7.0/24", "2001:2:0:9::/64"]),
            "inline and file entries together, sorted, each once"
        );
        assert_eq!(file.deny, prefixes(&["198.18.99.7/32", "2001:2::/48"]));

        let per_second = Rate::PerSecond;
        let l = file.limits;
        assert_eq!(l.pps, per_second(20_000));
        assert_eq!(l.burst_packets, Burst::Exactly(40_000));
        assert_eq!(l.bps, per_second(1_000_000_000));
        assert_eq!(l.burst_bytes, Burst::Exactly(10_000_000));
        assert_eq!(l.block_for_ms, 90_000);
        assert_eq!(l.mode, FilterMode::Monitor);
        assert_eq!(l.admit_packets, 2);
        assert_eq!(l.admit_rate, Rate::Unlimited);
        assert_eq!(l.deny_mode, FilterMode::Monitor);
        assert_eq!(
            l.monitor_classes,
            [false, false, true, true, false, false],
            "udp and icmp, in class index order"
        );
        assert_eq!(
            l.class_pps,
            [
                per_second(50),
                per_second(1_000),
                per_second(2_000),
                per_second(10),
                per_second(5),
                Rate::Unlimited
            ]
        );
        assert_eq!(
            l.ceiling_pps,
            [
                per_second(20_000),
                Rate::Unlimited,
                per_second(30_000),
                per_second(1_000),
                per_second(2_000),
                per_second(3_000)
            ]
        );
        assert_eq!(l.prefix_len, [22, 56, 40]);
        assert_eq!(
            l.prefix_pps,
            [per_second(30_000), per_second(40_000), Rate::Unlimited]
        );
        assert_eq!(
            l.prefix_bps,
            [
                per_second(100_000_000),
                Rate::Unlimited,
                per_second(1_000_000_000)
            ]
        );
        let unlimited = [Rate::Unlimited; filter_common::CLASSES];
        let mut v4_classes = unlimited;
        v4_classes[ClassName::Syn.index()] = per_second(2_000);
        let mut wide_classes = unlimited;
        wide_classes[ClassName::Udp.index()] = per_second(5_000);
        wide_classes[ClassName::Other.index()] = per_second(100);
        assert_eq!(l.prefix_class_pps, [v4_classes, unlimited, wide_classes]);
    }

    #[test]
    fn a_minimal_file_gives_the_defaults() {
        let file = parse_ok(MINIMAL);
        assert_eq!(file.limits, Limits::default());
        assert_eq!(
            (file.max_sources, file.list_capacity, file.max_prefixes),
            (
                DEFAULT_MAX_SOURCES,
                DEFAULT_LIST_CAPACITY,
                DEFAULT_MAX_PREFIXES
            )
        );
        assert_eq!(file.interfaces[0].xdp_mode, AttachMode::Auto);
        assert_eq!(
            (file.metrics_addr, &file.admin_group, &file.run_dir),
            (None, &None, &None)
        );
        assert!(file.allow.is_empty() && file.deny.is_empty());
    }

    #[test]
    fn rates_and_bursts_may_be_integers_or_strings() {
        let as_integers = parse_ok(&format!(
            "{MINIMAL}[limits]\npps = 20000\nburst_packets = 30000\nbps = 100000000\n\
             admit_rate = 7000\n[limits.ceiling]\nsyn = 1500\n"
        ));
        let as_strings = parse_ok(&format!(
            "{MINIMAL}[limits]\npps = \"20k\"\nburst_packets = \"30k\"\nbps = \"100M\"\n\
             admit_rate = \"7k\"\n[limits.ceiling]\nsyn = \"1.5k\"\n"
        ));
        assert_eq!(as_integers.limits, as_strings.limits);
        assert_eq!(as_integers.limits.pps, Rate::PerSecond(20_000));
        assert_eq!(
            as_integers.limits.ceiling_pps[ClassName::Syn.index()],
            Rate::PerSecond(1_500)
        );
        let err = parse_err(&format!("{MINIMAL}[limits]\npps = 0\n"));
        assert!(
            err.contains("test.toml:4:7: limits.pps: must be at least 1 (use `unlimited`"),
            "an integer zero is refused like \"0\": {err}"
        );
        let err = parse_err(&format!("{MINIMAL}[limits]\npps = 1.5\n"));
        assert!(
            err.contains(
                "limits.pps: invalid type: floating point `1.5`, expected an integer or a string"
            ),
            "{err}"
        );
    }

    #[test]
    fn list_files_are_relative_to_the_config_file() {
        let text = "[[interface]]\nname = \"eth0\"\n[allow]\nfiles = [\"lists/good-allow.txt\"]\n";
        let file = parse(&corpus_path("elsewhere.toml"), text).expect("relative to the corpus");
        assert_eq!(file.allow, prefixes(&["198.18.7.0/24", "2001:2:0:9::/64"]));
        let err = parse(Path::new("/nonexistent-dir/floodwall.toml"), text)
            .expect_err("no list file there")
            .to_string();
        assert!(
            err.contains("/nonexistent-dir/lists/good-allow.txt"),
            "the list file is looked up next to the config file: {err}"
        );
        let absolute = corpus_path("lists/good-allow.txt");
        let text = format!("{MINIMAL}[deny]\nfiles = [\"{}\"]\n", absolute.display());
        let file = parse(Path::new("/nonexistent-dir/floodwall.toml"), &text)
            .expect("absolute paths are taken as they are");
        assert_eq!(file.deny.len(), 2);
    }

    #[test]
    fn list_entries_are_kept_once_and_sorted_and_overlaps_are_reported() {
        let file = parse_ok(&format!(
            "{MINIMAL}[allow]\nprefixes = [\"2001:2:0:9::/64\", \"198.18.7.0/24\", \"198.18.7.0/24\"]\n\
             files = [\"lists/good-allow.txt\", \"lists/good-allow.txt\"]\n\
             [deny]\nprefixes = [\"198.18.7.0/24\", \"198.18.7.128/25\", \"198.18.8.0/24\", \"2001:2::/48\"]\n"
        ));
        assert_eq!(file.allow, prefixes(&["198.18.7.0/24", "2001:2:0:9::/64"]));
        assert_eq!(
            file.shadowed_deny_entries(),
            prefixes(&["198.18.7.0/24", "198.18.7.128/25"]),
            "the same prefix and one inside an allowed one are shadowed; a wider one is not"
        );
    }

    #[test]
    fn lists_beyond_their_capacity_are_refused() {
        let err = parse_err(&format!(
            "[daemon]\nlist_capacity = 1\n{MINIMAL}[deny]\nprefixes = [\"198.18.1.0/24\", \"198.18.2.0/24\", \"2001:2::/48\"]\n"
        ));
        assert!(
            err.contains("test.toml:5:1: deny: 2 IPv4 prefixes do not fit daemon.list_capacity 1"),
            "{err}"
        );
    }

    #[test]
    fn cross_field_limit_errors_point_at_the_key_that_causes_them() {
        let err = parse_err(&format!(
            "{MINIMAL}[limits]\npps = 1000\nburst_packets = 10\n"
        ));
        assert!(
            err.contains(
                "test.toml:5:17: limits.burst_packets: 10 lasts less than 30 ms at the rate of 1000"
            ),
            "neither alone is wrong; the burst is named: {err}"
        );
        let err = parse_err(&format!(
            "{MINIMAL}[limits]\nburst_packets = 20000\npps = 1000\n[limits.prefix.v6]\nlen = 129\n"
        ));
        assert!(
            err.contains("test.toml:7:7: limits.prefix.v6.len: 129 is out of range: it must be between 1 and 128"),
            "{err}"
        );
    }

    #[test]
    fn positions_count_characters_and_errors_never_panic() {
        let err = parse_err("# é€\n[[interface]]\nname = \"eth0\"\n[limits]\nmode = \"düster\"\n");
        assert!(
            err.contains("test.toml:5:8: limits.mode: `düster` is not a mode (enforce, monitor)"),
            "{err}"
        );
        // Every prefix of a valid file is valid or an error, never a panic.
        let sample = include_str!("../../packaging/floodwall.toml");
        for (end, _) in sample.char_indices() {
            let _ = parse(&corpus_path("cut.toml"), &sample[..end]);
        }
    }

    #[test]
    fn limits_take_exactly_the_settings_keys() {
        let err = parse_err(&format!("{MINIMAL}[limits]\nburst = 5\n"));
        assert!(
            err.contains(
                "test.toml:4:1: limits.burst: unknown field `burst`, expected one of `pps`, \
                 `burst_packets`, `bps`"
            ),
            "{err}"
        );
        let err = parse_err(&format!("{MINIMAL}[limits.prefix.v4]\nlength = 22\n"));
        assert!(
            err.contains(
                "limits.prefix.v4.length: unknown field `length`, expected one of `len`, `pps`, \
                 `bps`, `class_pps`"
            ),
            "{err}"
        );
        let err = parse_err(&format!("{MINIMAL}[limits]\nclass_pps = 5\n"));
        assert!(
            err.contains(
                "test.toml:4:13: limits.class_pps: invalid type: integer, expected a table"
            ),
            "{err}"
        );
        let err = parse_err(&format!("limits = \"fast\"\n{MINIMAL}"));
        assert!(
            err.contains("limits: invalid type: string, expected a table"),
            "{err}"
        );
        let err = parse_err(&format!("{MINIMAL}[limits]\nadmit_after = \"4\"\n"));
        assert!(
            err.contains("limits.admit_after: invalid type: string \"4\", expected u32"),
            "{err}"
        );
        let file = parse_ok(&format!(
            "{MINIMAL}[limits.class_pps]\n[limits.prefix.v4]\nclass_pps = {{}}\n"
        ));
        assert_eq!(file.limits, Limits::default(), "empty tables set nothing");
    }

    #[test]
    fn the_sample_parses_and_holds_the_defaults() {
        let sample = include_str!("../../packaging/floodwall.toml");
        let path = Path::new("/etc/floodwall/floodwall.toml");
        let shipped = parse(path, sample).unwrap_or_else(|e| panic!("the sample must parse: {e}"));
        let defaults = DaemonFile {
            path: path.to_owned(),
            interfaces: vec![InterfaceConfig {
                name: "eth0".into(),
                xdp_mode: AttachMode::Auto,
            }],
            limits: Limits::default(),
            max_sources: DEFAULT_MAX_SOURCES,
            list_capacity: DEFAULT_LIST_CAPACITY,
            max_prefixes: DEFAULT_MAX_PREFIXES,
            metrics_addr: None,
            admin_group: None,
            read_group: None,
            run_dir: None,
            allow: Vec::new(),
            deny: Vec::new(),
        };
        assert_eq!(
            shipped, defaults,
            "the sample's active values are the defaults"
        );

        // Each `#key = value` line shows the key's default: uncommented, they change nothing
        // (run_dir then names the default directory instead of leaving it unset).
        let uncommented: String = sample
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
                _ => line,
            })
            .flat_map(|line| [line, "\n"])
            .collect();
        assert!(
            uncommented.len() < sample.len(),
            "some lines were uncommented"
        );
        let all_keys = parse(path, &uncommented).unwrap_or_else(|e| {
            panic!("the sample with every default uncommented must parse: {e}")
        });
        assert_eq!(
            all_keys,
            DaemonFile {
                run_dir: Some(PathBuf::from(crate::control::DEFAULT_RUN_DIR)),
                ..defaults
            }
        );
    }

    #[test]
    fn diff_names_each_changed_value() {
        let old = parse_ok(&format!(
            "{MINIMAL}[limits]\npps = \"10k\"\n[allow]\nprefixes = [\"198.18.1.0/24\"]\n\
             [deny]\nprefixes = [\"2001:2::/64\"]\n"
        ));
        assert_eq!(
            diff(&old, &old),
            Vec::<String>::new(),
            "no change, no lines"
        );
        let new = parse_ok(
            "[daemon]\nmetrics_addr = \"127.0.0.1:9477\"\nmax_sources = 4096\nread_group = 4\n\
             [[interface]]\nname = \"eth0\"\nxdp_mode = \"driver\"\n[[interface]]\nname = \"eth1\"\n\
             [limits]\npps = \"20k\"\nblock_for = \"10m\"\nmonitor_classes = [\"udp\"]\n\
             [limits.class_pps]\nsyn = 50\n[limits.prefix.v6-wide]\nlen = 40\n\
             [allow]\nprefixes = [\"198.18.1.0/24\", \"198.18.7.0/24\"]\n",
        );
        assert_eq!(
            diff(&old, &new),
            [
                "daemon.max_sources: 1048576 -> 4096",
                "daemon.metrics_addr: off -> 127.0.0.1:9477",
                "daemon.read_group: none -> gid 4",
                "interface eth0: xdp_mode: auto -> driver",
                "interface: + eth1 (xdp_mode auto)",
                "limits.pps: 10000/s -> 20000/s",
                "limits.block_for: 1m -> 10m",
                "limits.monitor_classes: [] -> [udp]",
                "limits.class_pps.syn: unlimited -> 50/s",
                "limits.prefix.v6-wide.len: 48 -> 40",
                "allow: + 198.18.7.0/24",
                "deny: - 2001:2::/64",
            ]
        );
        let back = diff(&new, &old);
        assert!(back.contains(&"interface: - eth1".to_owned()), "{back:?}");
        assert!(back.contains(&"deny: + 2001:2::/64".to_owned()), "{back:?}");
    }
}
