//! The daemon's configuration: the TOML file, what it holds, how it is read and checked,
//! how two versions of it differ, and how the command line's flags go over it.
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
//! are validated by [`crate::limits::Limits::apply`], the same code that validates `floodwall limits set`.
//!
//! - [`schema`]: the file as written, serde's side.
//! - `build`: from the file as written to a [`DaemonFile`], key by key.
//! - `limits_table`: the `[limits]` table, read by the keys of [`crate::limits::Setting`].
//! - [`report`]: positions and [`ConfigError`].
//! - [`resolve`](mod@resolve): the flags of `floodwall run` over the file: the
//!   [`DaemonConfig`] the daemon runs with.
//! - [`diff`](mod@diff): what changes between two files, for the log of a reload.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use nix::unistd::Gid;
use serde::Deserialize as _;
use toml::de::DeTable;

use crate::{lists::Prefix, loader::AttachMode};

mod build;
pub mod diff;
mod limits_table;
pub mod report;
pub mod resolve;
pub mod schema;
#[cfg(test)]
mod tests;

pub use diff::diff;
pub use report::{ConfigError, Position};
pub use resolve::{CommandLine, DaemonConfig, Reloader, RunArgs, resolve};

/// Where the daemon looks for its configuration unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/floodwall/floodwall.toml";

/// Longest interface name: the kernel's `IFNAMSIZ` (16) less the terminating NUL.
pub const MAX_IFACE_NAME_BYTES: usize = 15;

/// A validated configuration file.
///
/// Lists are sorted and hold each prefix once, so two files that say the same thing compare
/// equal whatever their order.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonFile {
    /// The file it was read from; list file paths in errors are relative to its directory.
    pub path: PathBuf,
    /// Interfaces to protect, in file order, at least one.
    pub interfaces: Vec<InterfaceConfig>,
    /// The limits: [`crate::limits::Limits::default`] with the file's `[limits]` applied.
    pub limits: crate::limits::Limits,
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
    /// `[daemon] syn_protect`, if given.
    pub syn_protect: Option<crate::syn::SynProtect>,
    /// `[daemon] syn_sysctls`, if given.
    pub syn_sysctls: Option<crate::syn::SysctlPolicy>,
    /// `[daemon] signatures`, if given.
    pub signatures: Option<crate::traffic::detect::SignatureMode>,
    /// `[daemon] signature_forbid`, if given: fields signatures must not use.
    pub signature_forbid: Option<Vec<crate::traffic::baseline::Field>>,
    /// `[daemon] signature_monitor`, if given: services whose signatures only count.
    pub signature_monitor: Option<Vec<crate::traffic::baseline::Service>>,
    /// `[daemon] signature_factor` and the other thresholds, those given.
    pub signature_thresholds: crate::traffic::detect::Thresholds,
    /// The allowlist, inline entries and list files together.
    pub allow: Vec<Prefix>,
    /// The denylist, inline entries and list files together.
    pub deny: Vec<Prefix>,
    /// The `[[rules]]`, in file order.
    pub rules: Vec<crate::rules::NewRule>,
    /// `[upstream]`, if any.
    pub upstream: Option<crate::upstream::UpstreamConfig>,
    /// `[fleet]`, if any.
    pub fleet: Option<crate::fleet::FleetConfig>,
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
            .filter(|deny| self.allow.iter().any(|allow| allow.covers(deny)))
            .copied()
            .collect()
    }
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

pub(crate) fn group_by_name(name: &str) -> Result<GroupRef, String> {
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
    let raw = schema::RawFile::deserialize(toml::de::Deserializer::from(document.clone()))
        .map_err(|e| source.schema_error(&e, document.get_ref()))?;
    source.build(raw, document.get_ref())
}

/// The text of a file being read, for the positions of its errors.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}
