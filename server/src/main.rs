use std::net::SocketAddr;

use clap::Parser;
use server::cli::{Cli, Command};
use server::config::Config;
use server::{build_state, cli, http, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Cli { config, command } = Cli::parse();
    telemetry::init(config.log_format);
    let outcome = match command {
        None => serve(config).await,
        Some(Command::Users(command)) => cli::users(&config, command, std::io::stdin().lock())
            .await
            .map(|report| println!("{report}")),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> server::error::Result<()> {
    let state = build_state(&config).await?;
    let slipway = state.slipway.clone();
    let app = http::router(state);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(
        listen = %config.listen,
        mlflow = %config.mlflow_base(),
        "Slipway is serving on http://{}",
        listener.local_addr()?
    );
    // The peer's address counts failed sign-ins per address.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    slipway.reconciler.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
}
