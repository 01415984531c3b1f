//! The `floodwall` binary: parses arguments and calls into the library.

use anyhow::Context as _;
use clap::Parser as _;
use floodwall::{
    cli::{Cli, Command},
    config::Limits,
    daemon::{self, DaemonConfig},
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
                let limits = Limits::default().apply(&args.limits.change()?)?;
                let config = DaemonConfig {
                    iface: args.iface,
                    attach_mode: args.xdp_mode,
                    limits,
                    max_sources: args.max_sources,
                    list_capacity: args.list_capacity,
                    metrics_addr: args.metrics_addr,
                    run_dir: cli.run_dir,
                };
                daemon::run(config, shutdown_signal()?).await
            }
            Command::Config(command) => floodwall::cli::config(&command),
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
