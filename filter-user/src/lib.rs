//! floodwall's userspace: the daemon that loads and attaches the XDP program and the CLI
//! that tunes it while it runs.
//!
//! Modules, by concern. Plain data, no kernel objects:
//! - [`limits`]: the limits as the operator states them: their vocabulary ([`limits::Setting`]),
//!   values, validation, flags and kernel form.
//! - [`config`]: the daemon's configuration: the TOML file, its checks and its diff, and the
//!   flags of `floodwall run` over it.
//! - [`lists`]: the allowlist and denylist: prefixes, list files, their LPM tries.
//! - [`rules`]: rules by packet shape: their text, the set, its kernel form and maps.
//! - [`stats`]: counter sums, rates, per-source rate estimates.
//! - [`events`]: block events, the record of blocks, rate-limited logging.
//! - [`fleet`]: sharing blocks and signatures with other nodes: keys, values, checks.
//! - [`clock`]: wall-clock time in Unix milliseconds.
//! - [`state_file`]: the daemon's JSON files in its run directory, written atomically.
//!
//! The kernel objects:
//! - [`loader`]: load the embedded XDP object, attach it to an interface.
//! - [`maps`]: typed access to the program's maps.
//! - [`source_table`]: the source table, an array of sets read through a mapping of it.
//! - [`pin`]: the pinned state in bpffs that outlives a daemon, and takeovers.
//! - [`probe`]: kernel feature probes, with messages that name what is missing.
//!
//! The daemon and its clients:
//! - [`daemon`]: `floodwall run`: protect interfaces, reload, background tasks, the control
//!   server.
//! - [`control`]: the control socket: its protocol and views, access, the client side.
//! - [`metrics`]: the Prometheus endpoint.
//! - [`cli`]: the arguments, the client commands and what they print; man pages and
//!   completions made from the arguments.

pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod events;
pub mod fleet;
pub mod limits;
pub mod lists;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod pin;
pub mod probe;
pub mod rules;
pub mod source_table;
pub mod state_file;
pub mod stats;
pub mod syn;
pub mod traffic;
pub mod upstream;
