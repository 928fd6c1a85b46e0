//! The `keymesh` binary: configuration, logging, the CLI and the server's lifecycle.

use std::future::IntoFuture;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use keymesh::cli::{Cli, Command};
use keymesh::{AppState, Clock, Config};
use tracing_subscriber::EnvFilter;

/// How long requests still in progress after the drain may take before the process exits regardless.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The server logs its lifecycle; CLI commands keep stderr quiet unless RUST_LOG asks for more.
    let default_level = if matches!(cli.command, Command::Serve) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();

    let config = Config::load(cli.config.as_deref()).context("cannot load configuration")?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Client(command) => {
            let mut stdout = std::io::stdout().lock();
            keymesh::cli::run_client(&config, command, &Clock::system(), &mut stdout).await?;
            Ok(())
        }
        Command::ApiKey(command) => {
            let mut stdout = std::io::stdout().lock();
            keymesh::cli::run_apikey(&config, command, &Clock::system(), &mut stdout).await?;
            Ok(())
        }
        Command::Key(command) => {
            let mut stdout = std::io::stdout().lock();
            keymesh::cli::run_key(&config, command, &Clock::system(), &mut stdout).await?;
            Ok(())
        }
        Command::Issuer(command) => {
            let mut stdout = std::io::stdout().lock();
            keymesh::cli::run_issuer(&config, command, &Clock::system(), &mut stdout).await?;
            Ok(())
        }
        Command::Health(args) => {
            let mut stdout = std::io::stdout().lock();
            keymesh::cli::run_health(&config, &args, &mut stdout)?;
            Ok(())
        }
        Command::User(command) => {
            let mut stdin = std::io::stdin().lock();
            let mut stdout = std::io::stdout().lock();
            keymesh::cli::run_user(&config, command, &Clock::system(), &mut stdin, &mut stdout)
                .await?;
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let state = AppState::start(config.clone(), Clock::system())?;
    // Key rotation and issuer refresh run for as long as the server does.
    let _background = keymesh::spawn_background(&state)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        issuer = %config.issuer,
        redis = %keymesh::support::redact::redact_url(&config.redis_url),
        redis_cluster = config.redis_cluster,
        key_prefix = %config.key_prefix,
        token_ttl_secs = config.token_ttl_secs,
        admin_api = if config.admin_token.is_some() { "enabled" } else { "disabled" },
        key_algorithm = %config.signing.algorithm,
        key_rotation_interval_secs = config.signing.rotation_interval_secs,
        "keymesh sidecar listening"
    );
    if config
        .admin_token
        .as_ref()
        .is_some_and(|token| token.is_weak())
    {
        tracing::warn!("the admin token is shorter than 32 characters: use a long random one");
    }
    let stopping = state.clone();
    // Small responses (a long poll answered with a one-key delta) must leave at once: without TCP_NODELAY, Nagle's
    // algorithm meets the peer's delayed ACK and adds ~40 ms to every change reaching a proxy.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY on a connection: {e}");
        }
    });
    let drain = Duration::from_secs(config.shutdown_drain_secs);
    let (drained, drained_rx) = tokio::sync::oneshot::channel::<()>();
    // The peer address is the source failed authentications are counted under (or the proxy vouching for one),
    // and what registration is rate-limited by.
    let app = keymesh::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Readiness fails and held long polls are answered (304, `Connection: close`) at once; the server
            // keeps answering while the orchestrator withdraws the endpoint, then stops accepting connections.
            stopping.begin_shutdown();
            tracing::info!(drain_secs = drain.as_secs(), "draining");
            tokio::time::sleep(drain).await;
            let _ = drained.send(());
        })
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => served?,
        () = async {
            if drained_rx.await.is_ok() {
                tokio::time::sleep(CLOSE_TIMEOUT).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => tracing::warn!(
            "connections still open {}s after draining: exiting anyway",
            CLOSE_TIMEOUT.as_secs()
        ),
    }
    tracing::info!("shut down");
    Ok(())
}

/// Completes on SIGTERM (how orchestrators stop containers) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
