//! Settings: command-line flags over an optional TOML file over the defaults of DESIGN.md.
//! Every setting is a `--flag` and a key of the same name (with `_`) in the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;
use sluice_core::catalog::CatalogConfig;
use sluice_io::engine::EngineConfig;
use sluice_io::log::Durability;

#[derive(Debug, clap::Parser)]
#[command(name = "sluice", version, about = "A Kinesis-compatible streaming appliance")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the Kinesis APIs (the default when no command is given).
    Serve(ServeArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityArg {
    /// Acknowledge a record only after the block holding it is on stable storage (fdatasync).
    Fsync,
    /// Acknowledge once the O_DIRECT write completed (survives a process crash, not power loss).
    Write,
}

#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where streams and records are stored [default: ./sluice-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address for the Kinesis APIs [default: 127.0.0.1:4567].
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Number of shard cores (executors) [default: all CPUs].
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// When a write is acknowledged [default: fsync].
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,
    /// Pin each executor to its own CPU [default: true].
    #[arg(long, value_name = "BOOL")]
    pub pin_cores: Option<bool>,
    /// How long a new stream stays CREATING [default: 500].
    #[arg(long, value_name = "MS")]
    pub create_delay_ms: Option<u64>,
    /// How long a deleted stream stays DELETING [default: 500].
    #[arg(long, value_name = "MS")]
    pub delete_delay_ms: Option<u64>,
    /// How long an updated stream stays UPDATING [default: 500].
    #[arg(long, value_name = "MS")]
    pub update_delay_ms: Option<u64>,
    /// Size of each preallocated segment file, a multiple of 4096 [default: 268435456].
    #[arg(long, value_name = "BYTES")]
    pub segment_bytes: Option<u64>,
    /// glommio I/O memory per core [default: 8388608].
    #[arg(long, value_name = "BYTES")]
    pub io_memory_bytes: Option<usize>,
    /// Microseconds an idle core keeps polling before it sleeps; trades CPU for latency [default: 0].
    #[arg(long, value_name = "US")]
    pub idle_spin_us: Option<u64>,
    /// Region named in ARNs and messages [default: us-east-1].
    #[arg(long)]
    pub region: Option<String>,
    /// 12-digit account id named in ARNs and messages [default: 000000000000].
    #[arg(long)]
    pub account_id: Option<String>,
    /// Account-wide open-shard limit [default: 500].
    #[arg(long, value_name = "N")]
    pub shard_limit: Option<u32>,
}

/// The config file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    http_addr: Option<SocketAddr>,
    cores: Option<usize>,
    durability: Option<DurabilityArg>,
    pin_cores: Option<bool>,
    create_delay_ms: Option<u64>,
    delete_delay_ms: Option<u64>,
    update_delay_ms: Option<u64>,
    segment_bytes: Option<u64>,
    io_memory_bytes: Option<usize>,
    idle_spin_us: Option<u64>,
    region: Option<String>,
    account_id: Option<String>,
    shard_limit: Option<u32>,
}

#[derive(Debug)]
pub struct Settings {
    pub http_addr: SocketAddr,
    engine: EngineConfig,
    durability: DurabilityArg,
}

impl Settings {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file: FileSettings = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?
            }
            None => FileSettings::default(),
        };
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./sluice-data"));
        let http_addr = args
            .http_addr
            .or(file.http_addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4567)));
        let durability = args.durability.or(file.durability).unwrap_or(DurabilityArg::Fsync);
        let mut engine = EngineConfig::new(data_dir);
        if let Some(cores) = args.cores.or(file.cores) {
            anyhow::ensure!(cores >= 1, "--cores must be at least 1");
            engine.cores = cores;
        }
        engine.pin_cores = args.pin_cores.or(file.pin_cores).unwrap_or(true);
        if engine.pin_cores {
            let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            anyhow::ensure!(
                engine.cores <= cpus,
                "--cores {} exceeds the {cpus} CPUs available for pinned executors (use --pin-cores false to oversubscribe)",
                engine.cores
            );
        }
        engine.durability = match durability {
            DurabilityArg::Fsync => Durability::Fsync,
            DurabilityArg::Write => Durability::Write,
        };
        if let Some(bytes) = args.segment_bytes.or(file.segment_bytes) {
            anyhow::ensure!(
                bytes >= 65536 && bytes % 4096 == 0,
                "--segment-bytes must be a multiple of 4096 and at least 65536"
            );
            engine.segment_bytes = bytes;
            engine.commit_bytes_max = engine.commit_bytes_max.min((bytes / 2) as usize);
        }
        if let Some(bytes) = args.io_memory_bytes.or(file.io_memory_bytes) {
            engine.io_memory_bytes = bytes;
        }
        if let Some(us) = args.idle_spin_us.or(file.idle_spin_us) {
            engine.idle_spin_us = us;
        }
        let mut catalog = CatalogConfig::default();
        if let Some(region) = args.region.or(file.region) {
            catalog.region = region;
        }
        if let Some(account_id) = args.account_id.or(file.account_id) {
            anyhow::ensure!(
                account_id.len() == 12 && account_id.bytes().all(|b| b.is_ascii_digit()),
                "--account-id must be 12 digits"
            );
            catalog.account_id = account_id;
        }
        if let Some(limit) = args.shard_limit.or(file.shard_limit) {
            catalog.shard_limit = limit;
        }
        if let Some(ms) = args.create_delay_ms.or(file.create_delay_ms) {
            catalog.create_delay_ms = ms;
        }
        if let Some(ms) = args.delete_delay_ms.or(file.delete_delay_ms) {
            catalog.delete_delay_ms = ms;
        }
        if let Some(ms) = args.update_delay_ms.or(file.update_delay_ms) {
            catalog.update_delay_ms = ms;
        }
        engine.catalog = catalog;
        Ok(Self { http_addr, engine, durability })
    }

    pub fn engine_config(&self) -> EngineConfig {
        self.engine.clone()
    }

    pub fn durability_name(&self) -> &'static str {
        match self.durability {
            DurabilityArg::Fsync => "fsync",
            DurabilityArg::Write => "write",
        }
    }
}
