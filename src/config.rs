//! Settings: command-line flags over an optional TOML file over the defaults of DESIGN.md.
//! Every setting is a `--flag` and a key of the same name (with `_`) in the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;
use sluice_core::catalog::CatalogConfig;
use sluice_io::engine::EngineConfig;
use sluice_io::log::Durability;
use sluice_io::service::ServiceRuntime;

#[derive(Debug, clap::Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kinesis-compatible streaming appliance"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at start; boxing would only complicate the match"
)]
pub enum Command {
    /// Serve the Kinesis APIs (the default when no command is given).
    Serve(ServeArgs),
    /// Check every segment of every log offline (stop the server first). Exits 0 when clean
    /// (a torn tail alone is clean: it was never acknowledged), 1 on corruption.
    Verify(VerifyArgs),
    /// Kinesis Data Analytics SQL tools (`sluice sql run APP.sql --input records.jsonl`).
    Sql(crate::sql::SqlArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The data directory to check [default: ./sluice-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Truncate each corrupt log at its damage, dropping every record after it (each one is
    /// listed first), so that the server can start again.
    #[arg(long)]
    pub repair: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceRuntimeArg {
    /// A glommio executor, like the shard cores.
    Glommio,
    /// A current-thread tokio runtime, for services built on the tokio ecosystem.
    Tokio,
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
    /// Shared listen address of the binary protocol, or `off` [default: 127.0.0.1:4568, or an
    /// ephemeral port when --http-addr asks for one (port 0)].
    #[arg(long, value_name = "ADDR|off")]
    pub binary_addr: Option<BinaryAddr>,
    /// Core i of the binary protocol also listens alone on this port + i; 0 picks a free port
    /// per core [default: 0].
    #[arg(long, value_name = "PORT")]
    pub binary_core_port_base: Option<u16>,
    /// PutBatch bytes a binary connection may have in flight (its ingest credit, protocol
    /// version 3); at least 16777216, the largest frame. Raise it when bandwidth times round
    /// trip exceeds it [default: 33554432].
    #[arg(long, value_name = "BYTES")]
    pub binary_ingest_credit_bytes: Option<u32>,
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
    /// Group commits a core's log may have written but not yet synced: with more than one,
    /// the next commit is written while the previous one syncs (1 to 2) [default: 2].
    #[arg(long, value_name = "N")]
    pub commits_in_flight: Option<usize>,
    /// Enforce AWS's provisioned throughput per shard: 1 MiB/s or 1000 records/s written,
    /// 2 MiB/s and 5 GetRecords calls/s read; excess is refused with
    /// ProvisionedThroughputExceededException [default: false].
    #[arg(long, value_name = "BOOL")]
    pub throughput_limits: Option<bool>,
    /// Service cores: executors that own no shards and run services, pinned to spare CPUs
    /// when the machine has them and sharing the CPUs otherwise [default: 1].
    #[arg(long, value_name = "N")]
    pub service_cores: Option<usize>,
    /// The runtime of every service core [default: tokio].
    #[arg(long, value_name = "glommio|tokio")]
    pub service_runtime: Option<ServiceRuntimeArg>,
    /// Request bytes in flight per core at most, HTTP and binary together (a request is charged
    /// about twice its body);
    /// beyond it requests wait with their bodies unread, so TCP slows their clients down
    /// [default: 1/16 of the memory divided by the cores, at most 128 MiB].
    #[arg(long, value_name = "BYTES")]
    pub memory_budget_bytes: Option<u64>,
    /// How long a request may wait for memory budget before it is answered 503 over HTTP or
    /// ServerBusy over the binary protocol (both retried with backoff) [default: 5000].
    #[arg(long, value_name = "MS")]
    pub request_queue_timeout_ms: Option<u64>,
    /// An HTTP connection that moves no byte for this long while none of its requests is being
    /// handled is closed; 0 never closes one [default: 60000].
    #[arg(long, value_name = "MS")]
    pub idle_timeout_ms: Option<u64>,
    /// An HTTP connection that started sending a request but has not completed its headers (or,
    /// between requests, sent bytes that began none) for this long is closed, however slowly
    /// it trickles bytes; 0 never closes one [default: 10000].
    #[arg(long, value_name = "MS")]
    pub header_timeout_ms: Option<u64>,
    /// Open connections per core at most, HTTP and binary together; more are answered 503 (HTTP)
    /// or ServerBusy (binary) and closed [default: 10000].
    #[arg(long, value_name = "N")]
    pub connections_max: Option<u64>,
    /// An access key the HTTP API and the binary protocol accept, as ACCESS_KEY_ID:SECRET
    /// (repeatable). With at least one, every HTTP request's SigV4 signature and every binary
    /// connection's Auth is verified; without any, any signature is accepted on a loopback
    /// address and the server refuses to start on any other.
    #[arg(long = "credentials", value_name = "ID:SECRET")]
    pub credentials: Vec<String>,
    /// Region named in ARNs and messages [default: us-east-1].
    #[arg(long)]
    pub region: Option<String>,
    /// 12-digit account id named in ARNs and messages [default: 000000000000].
    #[arg(long)]
    pub account_id: Option<String>,
    /// Account-wide open-shard limit [default: 500].
    #[arg(long, value_name = "N")]
    pub shard_limit: Option<u32>,
    /// Streams that get their own `stream` label in `GET /metrics` per core; further streams are
    /// counted under `stream="_other"` [default: 1000].
    #[arg(long, value_name = "N")]
    pub metrics_streams_max: Option<usize>,
    /// PEM certificate chain for the HTTP listener; with --tls-key the listener speaks TLS only
    /// (ALPN h2 and http/1.1) [default: no TLS].
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Enforce Kinesis Video Streams' per-stream limits as AWS does (call rates, concurrent
    /// PutMedia and GetMedia connections, bandwidth, fragments a second, the 45-minute PutMedia
    /// connection); `false` turns them all off, for benchmarks [default: true].
    #[arg(long, value_name = "BOOL")]
    pub video_limits: Option<bool>,
    /// Changes one Kinesis Video Streams limit from AWS's value, as KEY=VALUE (repeatable), e.g.
    /// put_media_connection_duration_ms=2000. Keys: put_media_calls_per_second (5),
    /// put_media_connections_max (1), put_media_fragments_per_second (5),
    /// put_media_bytes_per_second (12500000), put_media_connection_duration_ms (2700000),
    /// get_media_calls_per_second (5), get_media_connections_max (3), get_media_bytes_per_second
    /// (25000000), fragment_list_calls_per_second (5), fragment_list_connections_max (5),
    /// fragment_list_bytes_per_second (25000000), list_fragments_calls_per_second (5),
    /// session_url_calls_burst (5), session_url_calls_per_second (1), get_clip_calls_per_second
    /// (1). In the config file: a `[video_limit]` table of these keys.
    #[arg(long = "video-limit", value_name = "KEY=VALUE")]
    pub video_limit: Vec<String>,
    /// hls.js (its `dist/hls.min.js`) for the video player page at `/video/<stream>`, which
    /// serves it at `/video/hls.min.js` [default: none; the page then cannot play].
    #[arg(long, value_name = "FILE")]
    pub hls_js: Option<PathBuf>,
    /// The ffmpeg that decodes frames for Kinesis Video's GetImages [default: `ffmpeg` on PATH].
    #[arg(long, value_name = "FILE")]
    pub ffmpeg: Option<PathBuf>,
    /// The largest S3 object a Kinesis Data Analytics reference data source may load; a larger
    /// one stops its application [default: 1073741824, KDA's 1 GB].
    #[arg(long, value_name = "BYTES")]
    pub analytics_reference_bytes_max: Option<u64>,
    /// Pull an IP camera into a Kinesis video stream (repeatable, one per stream):
    /// STREAM=rtsp://[USER:PASSWORD@]HOST[:PORT]/PATH. Its H.264 video (and AAC audio) is stored
    /// as fragments cut at keyframes, as PutMedia would store them; the video stream must exist
    /// (CreateStream), and the camera is reconnected with backoff when it drops. In the config
    /// file: `rtsp_source = ["STREAM=URL", ...]` [default: none].
    #[arg(long = "rtsp-source", value_name = "STREAM=URL")]
    pub rtsp_source: Vec<String>,
    /// Listen for RTMP publishers (ffmpeg, OBS, encoders) on ADDR, e.g. 127.0.0.1:1935: a push
    /// to rtmp://ADDR/APP/STREAM stores its H.264 video (and AAC audio) in the existing video
    /// stream STREAM as fragments cut at keyframes, as PutMedia would store them; a publish to a
    /// stream that does not exist is refused. Publishers are not authenticated, so keep it on a
    /// trusted network [default: off].
    #[arg(long, value_name = "ADDR")]
    pub rtmp_addr: Option<SocketAddr>,
}

/// The config file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    http_addr: Option<SocketAddr>,
    binary_addr: Option<BinaryAddr>,
    binary_core_port_base: Option<u16>,
    binary_ingest_credit_bytes: Option<u32>,
    cores: Option<usize>,
    durability: Option<DurabilityArg>,
    pin_cores: Option<bool>,
    create_delay_ms: Option<u64>,
    delete_delay_ms: Option<u64>,
    update_delay_ms: Option<u64>,
    segment_bytes: Option<u64>,
    io_memory_bytes: Option<usize>,
    idle_spin_us: Option<u64>,
    commits_in_flight: Option<usize>,
    throughput_limits: Option<bool>,
    service_cores: Option<usize>,
    service_runtime: Option<ServiceRuntimeArg>,
    memory_budget_bytes: Option<u64>,
    request_queue_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    header_timeout_ms: Option<u64>,
    connections_max: Option<u64>,
    #[serde(default)]
    credentials: Vec<FileCredential>,
    region: Option<String>,
    account_id: Option<String>,
    shard_limit: Option<u32>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    video_limits: Option<bool>,
    #[serde(default)]
    video_limit: std::collections::BTreeMap<String, u64>,
    hls_js: Option<PathBuf>,
    ffmpeg: Option<PathBuf>,
    analytics_reference_bytes_max: Option<u64>,
    #[serde(default)]
    rtsp_source: Vec<String>,
    rtmp_addr: Option<SocketAddr>,
    /// `[firehose_s3."NAME"]`: delivery stream NAME's own S3 endpoint, keys or region.
    #[serde(default)]
    firehose_s3: std::collections::BTreeMap<String, sluice_sinks::s3::S3Endpoint>,
}

/// `--binary-addr`: a socket address, or `off` to serve no binary protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryAddr {
    Off,
    Listen(SocketAddr),
}

impl std::str::FromStr for BinaryAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        text.parse()
            .map(Self::Listen)
            .map_err(|_| format!("{text:?} is neither a socket address (IP:PORT) nor `off`"))
    }
}

impl<'de> Deserialize<'de> for BinaryAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where the binary protocol listens.
#[derive(Clone, Copy, Debug)]
pub struct BinarySettings {
    /// The shared port every core accepts on (SO_REUSEPORT).
    pub addr: SocketAddr,
    /// Core i's own port is `core_port_base + i`; 0 means each core picks a free port.
    pub core_port_base: u16,
    /// The ingest credit each connection of version 3 or later is granted.
    pub ingest_credit_bytes: u32,
}

/// The front ends' admission control, per core and shared by HTTP and the binary protocol.
#[derive(Clone, Copy, Debug)]
pub struct AdmissionSettings {
    pub memory_budget_bytes: u64,
    pub request_queue_timeout_ms: u64,
    /// 0: never.
    pub idle_timeout_ms: u64,
    /// 0: never.
    pub header_timeout_ms: u64,
    pub connections_max: u64,
}

/// The default memory budget of one core: a sixteenth of the machine's memory shared by the
/// cores, between 16 MiB and 128 MiB. 128 MiB keeps a 5,000-connection storm on one core under
/// 1 GiB of RSS (docs/PERFORMANCE.md, overload) without lowering its throughput.
fn default_memory_budget_bytes(cores: usize) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(2048 * MIB, |kib| kib * 1024);
    (memory / 16 / cores.max(1) as u64).clamp(16 * MIB, 128 * MIB)
}

/// One `[[credentials]]` table of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCredential {
    access_key_id: String,
    secret_access_key: String,
}

/// The PEM files the HTTP listener's TLS identity is read from.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug)]
pub struct Settings {
    /// `Some` when the HTTP listener speaks TLS.
    pub tls: Option<TlsFiles>,
    /// (access key id, secret) pairs both wires verify signatures against.
    pub credentials: Vec<(String, String)>,
    pub http_addr: SocketAddr,
    /// Kinesis Video Streams' per-stream limits.
    pub video_limits: sluice_video::limits::VideoLimits,
    /// hls.js for the video player page.
    pub hls_js: Option<PathBuf>,
    /// The ffmpeg GetImages runs.
    pub ffmpeg: Option<PathBuf>,
    /// `None`: the analytics default.
    pub analytics_reference_bytes_max: Option<u64>,
    /// The cameras RTSP ingest pulls, at most one per video stream.
    pub rtsp_sources: Vec<sluice_video::rtsp::RtspSource>,
    /// Where RTMP ingest listens; `None` when it is off.
    pub rtmp_addr: Option<SocketAddr>,
    /// Delivery streams whose S3 settings the config file overrides, by name.
    pub firehose_s3: std::collections::BTreeMap<String, sluice_sinks::s3::S3Endpoint>,
    /// `None` when the binary protocol is off.
    pub binary: Option<BinarySettings>,
    pub admission: AdmissionSettings,
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
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./sluice-data"));
        // Shown absolute in the ready line and logs, so an operator sees where the data is
        // whatever the working directory (the log layer also makes its own paths absolute,
        // because glommio cannot open relative ones).
        let data_dir = std::path::absolute(&data_dir)
            .with_context(|| format!("cannot resolve the data directory {}", data_dir.display()))?;
        let http_addr = args
            .http_addr
            .or(file.http_addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4567)));
        // A caller asking for an ephemeral HTTP port (every test harness) must not collide on
        // the fixed binary port either, so the binary default follows it.
        let binary_default_port = if http_addr.port() == 0 { 0 } else { 4568 };
        let binary = match args.binary_addr.or(file.binary_addr) {
            Some(BinaryAddr::Off) => None,
            Some(BinaryAddr::Listen(addr)) => Some(addr),
            None => Some(SocketAddr::from(([127, 0, 0, 1], binary_default_port))),
        };
        let core_port_base = args
            .binary_core_port_base
            .or(file.binary_core_port_base)
            .unwrap_or(0);
        let ingest_credit_bytes = args
            .binary_ingest_credit_bytes
            .or(file.binary_ingest_credit_bytes)
            .unwrap_or(sluice_protocols::binary::limits::INGEST_CREDIT_BYTES);
        anyhow::ensure!(
            ingest_credit_bytes as usize >= sluice_protocols::binary::limits::FRAME_BYTES_MAX,
            "--binary-ingest-credit-bytes must be at least {} (the largest frame)",
            sluice_protocols::binary::limits::FRAME_BYTES_MAX
        );
        let binary = binary.map(|addr| BinarySettings {
            addr,
            core_port_base,
            ingest_credit_bytes,
        });
        let durability = args
            .durability
            .or(file.durability)
            .unwrap_or(DurabilityArg::Fsync);
        let mut engine = EngineConfig::new(data_dir);
        if let Some(cores) = args.cores.or(file.cores) {
            anyhow::ensure!(cores >= 1, "--cores must be at least 1");
            engine.cores = cores;
        }
        engine.pin_cores = args.pin_cores.or(file.pin_cores).unwrap_or(true);
        if engine.pin_cores {
            let cpus = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
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
        if let Some(n) = args.commits_in_flight.or(file.commits_in_flight) {
            let max = sluice_io::log::COMMITS_IN_FLIGHT_MAX;
            anyhow::ensure!(
                (1..=max).contains(&n),
                "--commits-in-flight must be 1 to {max}"
            );
            engine.commits_in_flight = n;
        }
        if let Some(on) = args.throughput_limits.or(file.throughput_limits) {
            engine.throughput_limits = on;
        }
        if let Some(n) = args.service_cores.or(file.service_cores) {
            anyhow::ensure!(n <= 64, "--service-cores must be at most 64");
            engine.service_cores = n;
        }
        if let Some(runtime) = args.service_runtime.or(file.service_runtime) {
            engine.service_runtime = match runtime {
                ServiceRuntimeArg::Glommio => ServiceRuntime::Glommio,
                ServiceRuntimeArg::Tokio => ServiceRuntime::Tokio,
            };
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
        if let Some(binary) = &binary
            && binary.core_port_base != 0
        {
            let last = usize::from(binary.core_port_base) + engine.cores - 1;
            anyhow::ensure!(
                last <= usize::from(u16::MAX),
                "--binary-core-port-base {} leaves no port for core {} (the last port would be {last})",
                binary.core_port_base,
                engine.cores - 1
            );
        }
        let mut credentials = Vec::new();
        for text in &args.credentials {
            let (id, secret) = text
                .split_once(':')
                .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
                .ok_or_else(|| anyhow::anyhow!("--credentials takes ACCESS_KEY_ID:SECRET"))?;
            credentials.push((id.to_owned(), secret.to_owned()));
        }
        if args.credentials.is_empty() {
            credentials.extend(
                file.credentials
                    .into_iter()
                    .map(|c| (c.access_key_id, c.secret_access_key)),
            );
        }
        // Half a TLS setting is a mistake, not a request for plain HTTP: serving cleartext to
        // someone who meant to configure TLS would be the worse surprise.
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                anyhow::bail!("--tls-cert needs --tls-key (the private key of that certificate)")
            }
            (None, Some(_)) => {
                anyhow::bail!("--tls-key needs --tls-cert (the certificate of that key)")
            }
        };
        // Flags replace the file's list, as for credentials.
        let rtsp_texts = if args.rtsp_source.is_empty() {
            file.rtsp_source
        } else {
            args.rtsp_source
        };
        let mut rtsp_sources: Vec<sluice_video::rtsp::RtspSource> = Vec::new();
        for text in &rtsp_texts {
            let source: sluice_video::rtsp::RtspSource = text
                .parse()
                .map_err(|e| anyhow::anyhow!("--rtsp-source: {e}"))?;
            // Two cameras in one stream would interleave unrelated fragments.
            anyhow::ensure!(
                !rtsp_sources
                    .iter()
                    .any(|s| s.stream_name == source.stream_name),
                "--rtsp-source: stream {} is given twice (one camera per video stream)",
                source.stream_name
            );
            rtsp_sources.push(source);
        }
        let admission = AdmissionSettings {
            memory_budget_bytes: match args.memory_budget_bytes.or(file.memory_budget_bytes) {
                Some(bytes) => {
                    anyhow::ensure!(
                        bytes >= 1024 * 1024,
                        "--memory-budget-bytes must be at least 1048576"
                    );
                    bytes
                }
                None => default_memory_budget_bytes(engine.cores),
            },
            request_queue_timeout_ms: args
                .request_queue_timeout_ms
                .or(file.request_queue_timeout_ms)
                .unwrap_or(5000),
            idle_timeout_ms: args
                .idle_timeout_ms
                .or(file.idle_timeout_ms)
                .unwrap_or(60_000),
            header_timeout_ms: args
                .header_timeout_ms
                .or(file.header_timeout_ms)
                .unwrap_or(10_000),
            connections_max: match args.connections_max.or(file.connections_max) {
                Some(0) => anyhow::bail!("--connections-max must be at least 1"),
                Some(n) => n,
                None => 10_000,
            },
        };
        let mut video_limits = sluice_video::limits::VideoLimits {
            enabled: args.video_limits.or(file.video_limits).unwrap_or(true),
            ..Default::default()
        };
        // The file's table first, so that a flag overrides the same key.
        for (key, value) in &file.video_limit {
            video_limits
                .set(key, *value)
                .map_err(|e| anyhow::anyhow!("video_limit in the config file: {e}"))?;
        }
        for text in &args.video_limit {
            let (key, value) = text
                .split_once('=')
                .and_then(|(key, value)| Some((key.trim(), value.trim().parse::<u64>().ok()?)))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--video-limit takes KEY=VALUE with a whole number, not {text:?}"
                    )
                })?;
            video_limits
                .set(key, value)
                .map_err(|e| anyhow::anyhow!("--video-limit: {e}"))?;
        }
        for (name, endpoint) in &file.firehose_s3 {
            // A delivery stream name as Firehose accepts it: 1–64 of [a-zA-Z0-9_.-].
            let valid_name = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !valid_name {
                anyhow::bail!(
                    "firehose_s3 in the config file: {name:?} is not a delivery stream name (1 to 64 letters, digits, '_', '.' or '-')"
                );
            }
            endpoint
                .check()
                .map_err(|e| anyhow::anyhow!("firehose_s3.{name:?} in the config file: {e}"))?;
        }
        Ok(Self {
            tls,
            credentials,
            http_addr,
            video_limits,
            hls_js: args.hls_js.or(file.hls_js),
            ffmpeg: args.ffmpeg.or(file.ffmpeg),
            analytics_reference_bytes_max: args
                .analytics_reference_bytes_max
                .or(file.analytics_reference_bytes_max),
            rtsp_sources,
            rtmp_addr: args.rtmp_addr.or(file.rtmp_addr),
            firehose_s3: file.firehose_s3,
            binary,
            admission,
            engine,
            durability,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_names(settings: &Settings) -> Vec<&str> {
        settings
            .rtsp_sources
            .iter()
            .map(|source| source.stream_name.as_str())
            .collect()
    }

    #[test]
    fn rtsp_sources_come_from_the_flags_over_the_file_and_a_stream_takes_one_camera() {
        let dir = std::env::temp_dir().join(format!("sluice-config-rtsp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("sluice.toml");
        std::fs::write(&file, "rtsp_source = [\"door=rtsp://cam.local/1\"]\n").expect("written");
        let from_file = Settings::resolve(ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(stream_names(&from_file), ["door"]);
        let from_flags = Settings::resolve(ServeArgs {
            config: Some(file),
            rtsp_source: vec!["yard=rtsp://cam.local/2".into()],
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(stream_names(&from_flags), ["yard"]);
        let _ = std::fs::remove_dir_all(&dir);

        let twice = Settings::resolve(ServeArgs {
            rtsp_source: vec!["a=rtsp://x/1".into(), "a=rtsp://y/2".into()],
            ..Default::default()
        });
        assert!(twice.is_err_and(|e| e.to_string().contains("given twice")));
        let not_rtsp = Settings::resolve(ServeArgs {
            rtsp_source: vec!["a=http://x/1".into()],
            ..Default::default()
        });
        assert!(not_rtsp.is_err_and(|e| e.to_string().starts_with("--rtsp-source:")));
    }

    #[test]
    fn rtmp_ingest_is_off_unless_an_address_is_given_and_the_flag_beats_the_file() {
        assert_eq!(
            Settings::resolve(ServeArgs::default())
                .expect("valid")
                .rtmp_addr,
            None
        );
        let dir = std::env::temp_dir().join(format!("sluice-config-rtmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("sluice.toml");
        std::fs::write(&file, "rtmp_addr = \"127.0.0.1:1935\"\n").expect("written");
        let from_file = Settings::resolve(ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(
            from_file.rtmp_addr,
            Some(SocketAddr::from(([127, 0, 0, 1], 1935)))
        );
        let from_flag = Settings::resolve(ServeArgs {
            config: Some(file),
            rtmp_addr: Some(SocketAddr::from(([0, 0, 0, 0], 1936))),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(
            from_flag.rtmp_addr,
            Some(SocketAddr::from(([0, 0, 0, 0], 1936)))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_delivery_stream_s3_override_is_read_from_the_file_and_checked() {
        let dir = std::env::temp_dir().join(format!("sluice-config-fh-s3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("sluice.toml");
        let resolve = |text: &str| {
            std::fs::write(&file, text).expect("written");
            Settings::resolve(ServeArgs {
                config: Some(file.clone()),
                ..Default::default()
            })
        };
        let settings = resolve(
            "[firehose_s3.\"orders.v2\"]\nendpoint_url = \"http://127.0.0.1:9000\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\nregion = \"eu-west-1\"\n",
        )
        .expect("valid");
        let endpoint = &settings.firehose_s3["orders.v2"];
        assert_eq!(
            endpoint.endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(endpoint.access_key_id.as_deref(), Some("k"));
        assert_eq!(endpoint.region.as_deref(), Some("eu-west-1"));
        let refused = |text: &str, wanted: &str| {
            let error = resolve(text).expect_err(text).to_string();
            assert!(
                error.contains(wanted),
                "{error:?} should contain {wanted:?}"
            );
        };
        refused(
            "[firehose_s3.a]\naccess_key_id = \"k\"\n",
            "must be given together",
        );
        refused(
            "[firehose_s3.a]\nendpoint_url = \"127.0.0.1:9000\"\n",
            "not an http",
        );
        refused(
            "[firehose_s3.\"a b\"]\nregion = \"x\"\n",
            "not a delivery stream name",
        );
        refused("[firehose_s3.a]\nbucket = \"x\"\n", "unknown field");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
