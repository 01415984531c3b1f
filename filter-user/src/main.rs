//! The `floodwall` binary: parses arguments and calls into the library.

use anyhow::Context as _;
use clap::Parser as _;
use std::sync::Arc;

use floodwall::{
    cli::{Cli, Command, RunArgs},
    daemon::{self, Reloader},
};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let is_daemon = matches!(cli.command, Command::Run(_));
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => {
                let config = floodwall::cli::daemon_config(&cli.run_dir, &cli.pin_root, &args)?;
                let (run_dir, pin_root) = (cli.run_dir.clone(), cli.pin_root.clone());
                // Reloads read the file again with the same flags over it; a fresh start
                // is a start-time choice only.
                let reloader: Arc<Reloader> = Arc::new(move || {
                    let args = RunArgs {
                        fresh_state: false,
                        ..args.clone()
                    };
                    floodwall::cli::daemon_config(&run_dir, &pin_root, &args)
                });
                daemon::run(config, Some(reloader), shutdown_signal()?).await
            }
            Command::Detach { iface } => {
                floodwall::cli::detach(&cli.run_dir, &cli.pin_root, &iface)
            }
            command => floodwall::cli::client(&cli.run_dir, command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if is_daemon {
                log::error!("{e:#}");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Completes on the first SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => log::info!("SIGINT: shutting down"),
            _ = term.recv() => log::info!("SIGTERM: shutting down"),
        }
    })
}
