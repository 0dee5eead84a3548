//! sluice: the appliance binary. Parses the command line and the optional TOML config, checks
//! that the data directory and the listen addresses are usable, then starts the engine and, on
//! every core, a Kinesis HTTP front end and a binary-protocol front end. Holds no business logic.

mod binary;
mod config;
mod http;
mod peers;
mod sql;
mod verify;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use clap::Parser as _;

use sluice_protocols::admission::{Admission, FrontEndStats, MemoryBudget};

#[cfg(feature = "alloc-jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options: a background thread returns freed pages to the kernel after about a
/// second (dirty, then muzzy), so memory used in a storm is given back once it is over.
#[cfg(feature = "alloc-jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0";

#[cfg(all(feature = "alloc-mimalloc", not(feature = "alloc-jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Some(Command::Verify(args)) => std::process::exit(verify::run(&args)),
        Some(Command::Sql(args)) => std::process::exit(sql::run(&args)),
        None => Default::default(),
    };
    // With a config file and no flag the data dir is in the file; the hint then says DIR.
    let data_dir = args.data_dir.clone().or_else(|| {
        args.config
            .is_none()
            .then(|| verify::DATA_DIR_DEFAULT.into())
    });
    if let Err(e) = serve(args) {
        eprintln!("error: {e:#}{}", verify::hint(&e, data_dir.as_deref()));
        std::process::exit(1);
    }
}

fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    if let Some(max) = args.metrics_streams_max {
        sluice_io::metrics::set_stream_labels_max(max);
    }
    let settings = Settings::resolve(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    // Probe once without SO_REUSEPORT: this fails when anything (another Sluice included, whose
    // sockets all use SO_REUSEPORT) listens on the port, and resolves port 0 to a concrete port
    // that every core then binds with SO_REUSEPORT.
    let http_addr: SocketAddr = probe_port(settings.http_addr, "HTTP")?;

    // The binary protocol's shared port is probed like the HTTP port. Fixed per-core ports are
    // probed too, so a clash is one clear error instead of a core failing after startup.
    let binary = match settings.binary {
        None => None,
        Some(binary) => {
            let addr = probe_port(binary.addr, "binary protocol")?;
            if binary.core_port_base != 0 {
                for core_id in 0..settings.engine_config().cores {
                    let core_addr = binary::core_addr(addr, binary.core_port_base, core_id);
                    probe_port(core_addr, &format!("binary protocol, core {core_id}"))?;
                }
            }
            Some((addr, binary.core_port_base, binary.ingest_credit_bytes))
        }
    };

    let engine_config = settings.engine_config();
    let cores = engine_config.cores;
    let summary = format!(
        "cores={}, durability={}, data-dir={}",
        cores,
        settings.durability_name(),
        engine_config.data_dir.display()
    );
    // SigV4: verify against the configured keys; with none, accept any signature on loopback and
    // refuse to serve any other address.
    let admission = settings.admission;
    let auth = Arc::new(sluice_protocols::sigv4::AuthConfig::for_listener(
        http_addr,
        settings.credentials.clone(),
    )?);
    // The binary listener follows the same rule with the same keys.
    let binary_auth = match binary {
        Some((addr, _, _)) => Arc::new(
            sluice_protocols::auth::AuthConfig::for_listener(addr, settings.credentials.clone())
                .context("binary protocol (--binary-addr)")?,
        ),
        None => auth.clone(),
    };
    // The TLS identity is read before any core starts, so a bad file is one `error:` line and
    // no listener ever serves half-configured.
    let tls = match &settings.tls {
        Some(files) => Some(http::tls_acceptor(&files.cert, &files.key)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let bound = Arc::new(AtomicUsize::new(0));
    let core_ports = Arc::new(binary::CorePorts::new(cores));
    // One table of SubscribeToShard leases for the whole server, shared by every core.
    let subscription_leases = sluice_protocols::kinesis::efo::SubscriptionLeases::default();
    // Kinesis Data Analytics: its API on every core's HTTP port, its applications on service
    // core 0 (which needs the tokio runtime, the default).
    let analytics = sluice_analytics::api::AnalyticsService::new(
        sluice_analytics::api::catalog::Catalog::open(&engine_config.data_dir)
            .context("cannot open the analytics application catalog")?,
        engine_config.catalog.region.clone(),
        engine_config.catalog.account_id.clone(),
    );
    if let Some(bytes) = settings.analytics_reference_bytes_max {
        analytics.set_reference_bytes_max(bytes);
    }
    // Firehose: delivery stream definitions load from the data dir before any core starts; the
    // shard cores answer its API, service core 0 delivers.
    let firehose = Arc::new(
        sluice_sinks::Registry::open(&engine_config.data_dir)
            .context("cannot load the Firehose delivery streams")?,
    );
    analytics.attach_delivery_streams(Arc::new(peers::FirehoseDeliveryStreams(firehose.clone())));
    let services = service_core_tasks(
        analytics.clone(),
        firehose.clone(),
        settings.firehose_s3.clone(),
        engine_config.service_cores,
    );
    // Kinesis Video Streams: stream definitions load before any core starts; every core's HTTP
    // port serves the API, ingest and playback, sharing fragment indexes and sessions.
    let video_registry = Arc::new(
        sluice_video::registry::Registry::open_in(
            &engine_config.data_dir,
            sluice_video::registry::ArnScope {
                region: engine_config.catalog.region.clone(),
                account_id: engine_config.catalog.account_id.clone(),
            },
        )
        .context("cannot load the Kinesis Video streams")?,
    );
    let hls_js = match &settings.hls_js {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("cannot read hls.js (--hls-js) {}", path.display()))?,
        ),
        None => None,
    };
    let mut video = sluice_video::service::VideoShared::new(
        video_registry,
        &format!("{scheme}://{http_addr}"),
        hls_js,
    )
    .with_limits(settings.video_limits.clone());
    if let Some(ffmpeg) = &settings.ffmpeg {
        video = video.with_ffmpeg(ffmpeg.clone());
    }
    // RTSP ingest: its own thread pulls the cameras once core 0 is up (it needs a storage
    // handle, and core 0 answers its stream-status requests with the Kinesis API).
    let rtsp = sluice_video::rtsp::RtspIngest::new(
        settings.rtsp_sources.clone(),
        &video,
        Arc::new(wall_clock_ms),
    );
    // RTMP ingest: its own thread listens for publishers once core 0 is up (the same needs).
    let rtmp =
        sluice_video::rtmp::RtmpIngest::new(settings.rtmp_addr, &video, Arc::new(wall_clock_ms));
    let per_core = move |engine: sluice_io::engine::Engine| {
        let firehose = firehose.clone();
        let video = video.clone();
        let bound = bound.clone();
        let subscription_leases = subscription_leases.clone();
        let summary = summary.clone();
        let core_ports = core_ports.clone();
        let auth = auth.clone();
        let binary_auth = binary_auth.clone();
        let tls = tls.clone();
        let analytics = analytics.clone();
        let rtsp = rtsp.clone();
        let rtmp = rtmp.clone();
        async move {
            let core_id = engine.core_id();
            if core_id == 0 && !rtsp.is_empty() {
                if let Err(e) = rtsp.start(engine.storage()) {
                    eprintln!("error: cannot start the RTSP ingest thread: {e}");
                    std::process::exit(1);
                }
                glommio::spawn_local(rtsp.clone().answer_status_requests(engine.clone())).detach();
            }
            if core_id == 0 && rtmp.is_enabled() {
                if let Err(e) = rtmp.start(engine.storage()) {
                    eprintln!("error: cannot start RTMP ingest (--rtmp-addr): {e}");
                    std::process::exit(1);
                }
                glommio::spawn_local(rtmp.clone().answer_status_requests(engine.clone())).detach();
            }
            let listener = match glommio::net::TcpListener::bind(http_addr) {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("error: cannot listen on {http_addr} on core {core_id}: {e}");
                    std::process::exit(1);
                }
            };
            let binary_listeners = binary.map(|(addr, core_port_base, ingest_credit_bytes)| {
                let bind = |addr: SocketAddr| match glommio::net::TcpListener::bind(addr) {
                    Ok(listener) => listener,
                    Err(e) => {
                        eprintln!("error: cannot listen on {addr} (binary protocol) on core {core_id}: {e}");
                        std::process::exit(1);
                    }
                };
                let shared = bind(addr);
                let own = bind(binary::core_addr(addr, core_port_base, core_id));
                let own_port = own.local_addr().map(|a| a.port()).unwrap_or(0);
                core_ports.set(core_id, own_port);
                (shared, own, ingest_credit_bytes)
            });
            if bound.fetch_add(1, Ordering::SeqCst) + 1 == cores {
                let binary_summary = match binary {
                    Some((addr, _, _)) => {
                        let ports: Vec<String> =
                            core_ports.get().iter().map(u16::to_string).collect();
                        format!(", binary on {addr}, binary core ports {}", ports.join(" "))
                    }
                    None => ", binary off".to_owned(),
                };
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(
                    stdout,
                    "sluice: serving Kinesis on {scheme}://{http_addr} ({summary}{binary_summary})"
                );
                let _ = stdout.flush();
            }
            // One budget, one connection count and one set of `frontend_*` counters per core,
            // shared by its HTTP and binary listeners.
            let core_admission = Admission {
                budget: MemoryBudget::new(
                    admission.memory_budget_bytes,
                    FrontEndStats::register(core_id),
                ),
                queue_timeout: std::time::Duration::from_millis(admission.request_queue_timeout_ms),
                connections_max: admission.connections_max,
            };
            if let Some((shared, own, ingest_credit_bytes)) = binary_listeners {
                let served = binary::serve(
                    Some(shared),
                    own,
                    engine.clone(),
                    core_ports,
                    binary::Limits {
                        auth: binary_auth,
                        admission: Some(core_admission.clone()),
                        ingest_credit_bytes,
                    },
                );
                glommio::spawn_local(served).detach();
            }
            let metrics_engine = engine.clone();
            let metrics_firehose = firehose.clone();
            let metrics_rtsp = rtsp.clone();
            let metrics_rtmp = rtmp.clone();
            let health_engine = engine.clone();
            let options = http::ServeOptions {
                auth: auth.clone(),
                metrics: Some(std::rc::Rc::new(move || {
                    metrics_engine.render_metrics()
                        + &sluice_protocols::admission::render()
                        + &sluice_analytics::metrics::render()
                        + &metrics_firehose.render_metrics()
                        + &metrics_rtsp.render_metrics()
                        + &metrics_rtmp.render_metrics()
                })),
                health: Some(std::rc::Rc::new(move || {
                    let health = health_engine.health();
                    http::HealthReport {
                        degraded: health.degraded,
                        json: health.json,
                    }
                })),
                tls,
                idle_timeout: (admission.idle_timeout_ms > 0)
                    .then(|| std::time::Duration::from_millis(admission.idle_timeout_ms)),
                header_timeout: (admission.header_timeout_ms > 0)
                    .then(|| std::time::Duration::from_millis(admission.header_timeout_ms)),
                admission: Some(core_admission),
                analytics: Some(analytics),
                firehose: Some(sluice_sinks::Firehose::new(firehose, engine.storage())),
                video: Some(sluice_video::service::VideoService::new(
                    &video,
                    engine.storage(),
                    Arc::new(|duration| Box::pin(glommio::timer::sleep(duration))),
                    Arc::new(wall_clock_ms),
                )),
            };
            let fan_out = sluice_protocols::kinesis::efo::EnhancedFanOut::new(
                engine.storage(),
                subscription_leases,
            );
            http::serve_with(listener, engine, fan_out, options).await;
        }
    };
    sluice_io::engine::run_with_services(engine_config, per_core, services)?;
    Ok(())
}

/// The wall clock in epoch milliseconds, as the video service stamps fragments.
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the service cores run: on every service core, the analytics supervisor of the
/// applications placed on it (`sluice_analytics::runner::placement`); on service core 0 also
/// Firehose delivery. Both need the tokio runtime, the default: aws-sdk-s3 and the
/// applications' clocks are tokio's.
fn service_core_tasks(
    analytics: sluice_analytics::api::AnalyticsService<sluice_io::storage::StorageHandle>,
    firehose: Arc<sluice_sinks::Registry>,
    firehose_s3: std::collections::BTreeMap<String, sluice_sinks::s3::S3Endpoint>,
    service_cores: usize,
) -> sluice_io::service::ServiceStarter {
    use sluice_io::service::{ServiceContext, ServiceRuntime};
    Arc::new(move |context: ServiceContext| {
        let analytics = analytics.clone();
        let firehose = firehose.clone();
        let firehose_s3 = firehose_s3.clone();
        Box::pin(async move {
            let core = context.service_core_id;
            if context.runtime != ServiceRuntime::Tokio {
                if core != 0 {
                    return std::future::pending::<()>().await;
                }
                tracing::error!(
                    "Analytics applications and Firehose delivery run on a tokio service core (--service-runtime tokio); with glommio they do not run."
                );
                return std::future::pending::<()>().await;
            }
            let storage = context.storage;
            // The invoker's HTTP client is built here, inside the service core's runtime.
            analytics.attach_functions(Arc::new(peers::LambdaFunctions(
                sluice_sinks::transform::Invoker::from_env(),
            )));
            let supervisor = sluice_analytics::runner::supervise(
                analytics,
                storage.clone(),
                core,
                service_cores,
            );
            if core == 0 {
                futures_lite::future::zip(
                    supervisor,
                    sluice_sinks::delivery::run(firehose, storage, firehose_s3),
                )
                .await;
            } else {
                supervisor.await;
            }
            std::future::pending::<()>().await
        })
    })
}

/// Checks that nothing listens on `addr` and resolves port 0 to a concrete port.
///
/// Two leftovers of a killed predecessor make a plain bind fail on a fixed port although the
/// executors' SO_REUSEPORT binds would succeed: its connections linger in TIME_WAIT, and its
/// listening socket outlives the process for a moment while the kernel tears down the
/// io_uring that still held an accept on it. Refusing to restart after a crash would be wrong,
/// so when the plain bind fails a listener counts as a clash only if it still accepts
/// connections after [`PROBE_GRACE`].
fn probe_port(addr: SocketAddr, what: &str) -> anyhow::Result<SocketAddr> {
    let in_use = || format!("cannot listen on {addr} ({what}): is another server using that port?");
    let target = if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(loopback, addr.port())
    } else {
        addr
    };
    let started = std::time::Instant::now();
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(probe) => return probe.local_addr().context("cannot read the bound address"),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 => {
                let accepted =
                    std::net::TcpStream::connect_timeout(&target, PROBE_CONNECT_TIMEOUT).is_ok();
                if !accepted {
                    return Ok(addr);
                }
                if started.elapsed() > PROBE_GRACE {
                    return Err(error).with_context(in_use);
                }
                std::thread::sleep(PROBE_RETRY);
            }
            Err(error) => return Err(error).with_context(in_use),
        }
    }
}

/// How long a listener found on a port may take to go away (a killed predecessor's).
const PROBE_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
const PROBE_RETRY: std::time::Duration = std::time::Duration::from_millis(50);
const PROBE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
