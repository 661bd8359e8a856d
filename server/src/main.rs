use std::future::IntoFuture;
use std::net::SocketAddr;

use clap::{CommandFactory, FromArgMatches};
use server::cli::{Cli, Command};
use server::config::Config;
use server::{build_state, cli, client, telemetry, web};

fn main() -> std::process::ExitCode {
    // Secrets given as files become their variables before anything
    // reads the environment, and before any thread starts.
    let variable = |name: &str| std::env::var_os(name);
    let args = match server::config::secrets_from_files(std::env::args_os().collect(), variable) {
        Ok((args, values)) => {
            for (name, value) in values {
                // SAFETY: no other thread exists yet to read the environment.
                unsafe { std::env::set_var(name, value) };
            }
            args
        }
        Err(why) => {
            eprintln!("{why}");
            return std::process::ExitCode::from(2);
        }
    };
    let matches = Cli::command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let on_command_line = server::config::secrets_on_command_line(&matches);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(run(cli, on_command_line))
}

async fn run(
    Cli { config, command }: Cli,
    on_command_line: Vec<(&'static str, &'static str)>,
) -> std::process::ExitCode {
    let warn_of_flags = || {
        for (flag, variable) in &on_command_line {
            tracing::warn!(
                "{flag} was given on the command line, where every user of this machine can read it (ps); \
                 give it as {variable}, or in a file ({variable}_FILE or {flag}-file)"
            );
        }
    };
    let outcome = match command {
        Some(Command::Client(command)) => return pipeline_step(command).await,
        Some(Command::Users(command)) => {
            telemetry::init(config.log_format);
            warn_of_flags();
            cli::users(&config, command, std::io::stdin().lock())
                .await
                .map(|report| println!("{report}"))
        }
        None => {
            telemetry::init(config.log_format);
            warn_of_flags();
            keep_to_itself();
            serve(config).await
        }
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A pipeline command: its answer on stdout, the reason on stderr, and an
/// exit code to branch on.
async fn pipeline_step(command: client::ClientCommand) -> std::process::ExitCode {
    match client::run(command, std::env::var("SLIPWAY_TOKEN").ok()).await {
        Ok(shown) => {
            println!("{shown}");
            std::process::ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{}", failure.message);
            std::process::ExitCode::from(failure.exit as u8)
        }
    }
}

/// Model and training code runs as Slipway's children: none may read its
/// memory or `/proc/<pid>/environ` (the credentials it was started with),
/// which a non-dumpable process's `/proc` files refuse to its own user too
/// (children are dumpable again after exec). What Slipway writes is its
/// user's alone.
fn keep_to_itself() {
    if let Err(err) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %err, "could not make Slipway non-dumpable; its children may read its environment");
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

async fn serve(config: Config) -> server::error::Result<()> {
    let state = build_state(&config).await?;
    let services = state.services.clone();
    let leadership = state.leadership.clone();
    let app = web::router(state);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(
        listen = %config.listen,
        mlflow = %config.mlflow_base(),
        "Slipway is serving on http://{}",
        listener.local_addr()?
    );
    let (stopping, mut stopped_background) = tokio::sync::watch::channel(false);
    // On the signal, first what would start processes (the reconciler), then
    // the processes (model servers, those starting too; local trainings),
    // then the lead (another replica takes over at once), then the
    // requests under way.
    let signalled = async move {
        shutdown_signal().await;
        tracing::info!("stopping");
        services.deployments.shutdown().await;
        services.launches.shutdown().await;
        leadership.release().await;
        stopping.send_replace(true);
    };
    // The peer's address counts failed sign-ins per address.
    let serving = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signalled)
    .into_future();
    // A page that follows a launch keeps its connection open: requests get
    // a few seconds to finish, not forever.
    let drained = async {
        let _ = stopped_background.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(DRAIN_TIME).await;
    };
    tokio::select! {
        served = serving => served?,
        () = drained => tracing::warn!("requests still open after {DRAIN_TIME:?}; stopping anyway"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long requests under way may take to finish once Slipway stops.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
}
