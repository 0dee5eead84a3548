//! sluice: the appliance binary. Parses the command line and the optional TOML config, checks
//! that the data directory and the listen address are usable, then starts the engine and a
//! Kinesis HTTP front end on every core. Holds no business logic.

mod config;
mod http;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use clap::Parser as _;

use crate::config::{Cli, Command, Settings};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("invalid arguments");
                let first = first.strip_prefix("error: ").unwrap_or(first);
                eprintln!("error: {first} (see `sluice serve --help`)");
                std::process::exit(2);
            }
        },
    };
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => Default::default(),
    };
    if let Err(e) = serve(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    // Bind once without SO_REUSEPORT: this fails when anything (another Sluice included, whose
    // sockets all use SO_REUSEPORT) holds the port, and resolves port 0 to a concrete port that
    // every core then binds with SO_REUSEPORT.
    let http_addr: SocketAddr = {
        let probe = std::net::TcpListener::bind(settings.http_addr).with_context(|| {
            format!("cannot listen on {}: is another server using that port?", settings.http_addr)
        })?;
        probe.local_addr().context("cannot read the bound address")?
    };

    let engine_config = settings.engine_config();
    let cores = engine_config.cores;
    let summary = format!(
        "cores={}, durability={}, data-dir={}",
        cores,
        settings.durability_name(),
        engine_config.data_dir.display()
    );
    let bound = Arc::new(AtomicUsize::new(0));
    sluice_io::engine::run(engine_config, move |engine| {
        let bound = bound.clone();
        let summary = summary.clone();
        async move {
            let listener = match glommio::net::TcpListener::bind(http_addr) {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("error: cannot listen on {http_addr} on core {}: {e}", engine.core_id());
                    std::process::exit(1);
                }
            };
            if bound.fetch_add(1, Ordering::SeqCst) + 1 == cores {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "sluice: serving Kinesis on http://{http_addr} ({summary})");
                let _ = stdout.flush();
            }
            http::serve(listener, engine).await;
        }
    })?;
    Ok(())
}
