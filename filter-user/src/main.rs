//! The `floodwall` binary: parses arguments and calls into the library.

use anyhow::Context as _;
use clap::Parser as _;

use floodwall::{
    cli::{Cli, Command},
    config::CommandLine,
    daemon,
};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let is_daemon = matches!(cli.command, Command::Run(_));
    if !is_daemon {
        // A CLI whose output goes to `head` should end quietly when `head` does, as other
        // Unix tools do, not panic on the broken pipe (Rust ignores SIGPIPE by default).
        // The daemon keeps ignoring it: a client going away must not end it.
        // SAFETY: restoring a signal's default disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
    let client_run_dir = cli.run_dir();
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => {
                let command_line = CommandLine {
                    args,
                    run_dir: cli.run_dir,
                    pin_root: cli.pin_root,
                };
                let config = command_line.load()?;
                daemon::run(config, command_line.reloader(), shutdown_signal()?).await
            }
            Command::Client(command) => floodwall::cli::client::run(&client_run_dir, command).await,
            Command::Detach { iface } => {
                floodwall::cli::detach(&client_run_dir, &cli.pin_root, &iface)
            }
            Command::Config(command) => floodwall::cli::check::run(&command),
            Command::Generate(what) => floodwall::cli::generate::run(&what),
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
