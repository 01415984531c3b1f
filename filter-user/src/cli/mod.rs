//! The command line: the arguments ([`args`]), the client side of the commands that talk to
//! a daemon ([`client`]), what they print ([`output`]), `config check` ([`check`]),
//! `detach`, and the man pages and completions made from the arguments ([`generate`]).
//! `floodwall run` is the daemon ([`crate::daemon`]) with the configuration
//! [`crate::config::CommandLine`] resolves.

use std::path::Path;

use anyhow::bail;

pub mod args;
pub mod check;
pub mod client;
pub mod generate;
pub mod output;

pub use args::{
    BlockedCommand, ChangeArgs, Cli, ClientCommand, Command, ConfigCommand, EventsArgs,
    GenerateCommand, LimitsCommand, ListCommand, ReadArgs, RulesCommand, SynPortsArgs,
    SynProtectCommand, TopArgs, UpstreamCommand,
};

/// `floodwall detach`: removes the program and the pinned state of `iface`, refusing while
/// a daemon protects it.
///
/// # Errors
/// If a daemon runs on the interface, nothing is pinned for it, or a pin cannot be removed.
pub fn detach(run_dir: &Path, pin_root: &Path, iface: &str) -> anyhow::Result<()> {
    let _lock = crate::daemon::lock_interface(run_dir, iface)
        .map_err(|e| anyhow::anyhow!("{e:#}; stop it first (e.g. `systemctl stop floodwall`)"))?;
    let pins = crate::pin::PinDir::new(pin_root, iface);
    if !pins.detach()? {
        bail!(
            "floodwall is not attached to {iface}: nothing is pinned at {}",
            pins.dir().display()
        );
    }
    println!(
        "detached floodwall from {iface} and removed its state ({})",
        pins.dir().display()
    );
    Ok(())
}
