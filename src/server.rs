//! Process wiring: command line, logging, runtime, start order, signals and drain.

pub(crate) mod memory;
pub mod options;

pub use options::Options;

use crate::config::{self, BootstrapSource, ConfigError};
use crate::listener::{BindError, ListenerManager};
use crate::snapshot::World;
use crate::stats::Store;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The bootstrap is invalid.
    #[error("invalid bootstrap: {0}")]
    Config(#[from] ConfigError),
    /// A listener could not bind.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// The runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Load the bootstrap named by the options, with the CLI's node overrides applied.
pub fn load_bootstrap(opts: &Options) -> Result<Bootstrap, ServerError> {
    let src = BootstrapSource {
        path: opts.config_path.as_ref().map(Into::into),
        yaml: opts.config_yaml.clone(),
        allow_unknown_fields: opts.allow_unknown_static_fields,
    };
    let mut b = config::load_bootstrap(&src)?;
    let node = b.node.get_or_insert_with(Default::default);
    if let Some(c) = &opts.service_cluster {
        node.cluster = c.clone();
    }
    if let Some(n) = &opts.service_node {
        node.id = n.clone();
    }
    if let Some(z) = &opts.service_zone {
        node.locality.get_or_insert_with(Default::default).zone = z.clone();
    }
    Ok(b)
}

/// A running server.
pub struct Server {
    /// The compiled world.
    pub world: Arc<World>,
    /// The listeners.
    pub listeners: Arc<ListenerManager>,
    /// The bootstrap as loaded.
    pub bootstrap: Bootstrap,
    /// The command line.
    pub options: Options,
    /// The xDS client, when the bootstrap has `dynamic_resources`.
    pub xds: Option<crate::xds::Xds>,
}

impl Server {
    /// Load, compile and start listening. Must run inside a tokio runtime.
    pub async fn start(options: Options) -> Result<Server, ServerError> {
        let bootstrap = load_bootstrap(&options)?;
        crate::proxy::hcm::set_local_address_ipv6(options.local_address_ip_version == "v6");
        if options.file_flush_interval_msec > 0 {
            crate::access_log::set_flush_interval(Duration::from_millis(
                options.file_flush_interval_msec,
            ));
        }
        let world = World::new(Store::new());
        world.load_static(&bootstrap)?;
        let listeners =
            ListenerManager::new(world.clone(), Duration::from_secs(options.drain_time_s));
        listeners.apply(&world.listeners.load())?;
        let xds = match &bootstrap.dynamic_resources {
            Some(_) => Some(crate::xds::Xds::start(
                &bootstrap,
                world.clone(),
                listeners.clone(),
            )?),
            None => None,
        };
        memory::release_free_memory();
        info!(version = env!("CARGO_PKG_VERSION"), "tern started");
        Ok(Server {
            world,
            listeners,
            bootstrap,
            options,
            xds,
        })
    }

    /// Wait until the first dynamic configuration is in (at once without xDS).
    pub async fn wait_initialized(&self) {
        if let Some(x) = &self.xds {
            x.wait_initialized().await;
        }
    }

    /// The bound address of a listener (the real port when the config said 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.local_addr(name)
    }

    /// Stop accepting, tell connections to drain, and give them `drain_time` to finish.
    pub async fn drain(&self, drain_time: Duration) {
        self.listeners.drain_all();
        let deadline = tokio::time::Instant::now() + drain_time;
        loop {
            let active: i64 = self
                .world
                .stats
                .gauges()
                .into_iter()
                .filter(|(n, _)| n.starts_with("listener.") && n.ends_with(".downstream_cx_active"))
                .map(|(_, v)| v)
                .sum();
            if active <= 0 || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Set up logging from `-l`, `--component-log-level`, `--log-format` and `--log-path`.
pub fn init_logging(opts: &Options) -> Result<(), ServerError> {
    let directives = options::log_directives(opts).map_err(ServerError::Usage)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .map_err(|e| ServerError::Usage(e.to_string()))?;
    let json = opts
        .log_format
        .as_deref()
        .is_some_and(|f| f.trim_start().starts_with('{'));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(true);
    let writer: Box<dyn Fn() -> Box<dyn std::io::Write> + Send + Sync> = match &opts.log_path {
        Some(p) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            let file = Arc::new(std::sync::Mutex::new(file));
            Box::new(move || Box::new(SharedFile(file.clone())) as Box<dyn std::io::Write>)
        }
        None => Box::new(|| Box::new(std::io::stderr()) as Box<dyn std::io::Write>),
    };
    let res = if json {
        builder.json().with_writer(writer).try_init()
    } else {
        builder.with_writer(writer).try_init()
    };
    res.map_err(|e| ServerError::Usage(format!("logging: {e}")))
}

struct SharedFile(Arc<std::sync::Mutex<std::fs::File>>);

impl std::io::Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// Run tern as a process: `--mode validate` checks the configuration and returns; `serve`
/// runs until SIGTERM (drain, then exit) or SIGINT (exit at once).
pub fn run(options: Options) -> Result<(), ServerError> {
    if options.mode == "validate" {
        let b = load_bootstrap(&options)?;
        let world = World::new(Store::new());
        let (clusters, _) = world.compile_static(&b)?;
        world.clusters.store(Arc::new(clusters));
        crate::xds::source::Plan::from_bootstrap(&b, &world)?;
        return Ok(());
    }
    let threads = options
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // One worker: a current-thread runtime (no work-stealing, no cross-thread wake-ups), as
    // Envoy's `--concurrency 1` runs one worker thread.
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("tern-worker")
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let server = Server::start(options).await?;
        if server.options.mode == "init_only" {
            return Ok(());
        }
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {
                info!("SIGTERM: draining");
                server.drain(Duration::from_secs(server.options.drain_time_s)).await;
            }
            _ = int.recv() => info!("SIGINT: exiting"),
        }
        crate::access_log::flush_all();
        Ok(())
    })
}
