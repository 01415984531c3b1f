//! floodwall's userspace: the daemon that loads and attaches the XDP program and the CLI
//! that tunes it while it runs.
//!
//! Modules, by concern:
//! - [`limits`]: the limits as the operator states them: their vocabulary, values,
//!   validation and kernel form.
//! - [`config`]: the daemon's TOML configuration file, its checks and its diff.
//! - [`loader`]: load the embedded XDP object, attach it to an interface.
//! - [`maps`]: typed access to the program's maps.
//! - [`metrics`]: the Prometheus endpoint.
//! - [`probe`]: kernel feature probes, with messages that name what is missing.
//! - [`lists`]: the allowlist and denylist: prefixes, list files, their LPM tries.
//! - [`stats`]: counter sums, rates, per-source rate estimates.
//! - [`events`]: block events, the record of blocks, rate-limited logging.
//! - [`control`]: the control socket protocol and its client.
//! - [`daemon`]: `floodwall run`.
//! - [`cli`]: the arguments, the client commands and what they print; man pages and
//!   completions made from the arguments.

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod events;
pub mod limits;
pub mod lists;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod pin;
pub mod probe;
pub mod stats;
