//! `floodwall config check`: reads and checks a config file here, with no daemon.

use super::{ConfigCommand, output::ConfigSummary};
use crate::config;

/// Runs `floodwall config ...`.
///
/// # Errors
/// The file's first problem, as [`config::ConfigError`] words it.
pub fn run(command: &ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Check { file } => {
            let config = config::load(file)?;
            print!("{}", ConfigSummary(&config));
        }
    }
    Ok(())
}
