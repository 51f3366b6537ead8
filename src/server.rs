//! Process wiring: command line, logging, runtime, start order, signals and drain.

pub mod logging;
pub(crate) mod memory;
pub mod options;

pub use logging::init_logging;

pub use options::Options;

use crate::admin::{self, Admin, AdminCtx, ServerStatus};
use crate::config::{self, BootstrapSource, ConfigError, Within};
use crate::listener::{BindError, ListenerManager};
use crate::snapshot::World;
use crate::stats::{StatsSettings, Store};
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

/// The stats store of a bootstrap: its `stats_config` (tag extraction, stats matcher).
pub fn stats_store(b: &Bootstrap) -> Result<Arc<Store>, ServerError> {
    let settings = match &b.stats_config {
        Some(c) => StatsSettings::from_proto(c)
            .map_err(|e| ConfigError::new(format!("stats_config.{}", e.field), e.message))?,
        None => StatsSettings::default(),
    };
    let store = Store::with_settings(settings);
    if let Some(node) = &b.node {
        store.init_istio(crate::stats::istio::NodeInfo::from_node(node));
    }
    Ok(store)
}

/// End a stats flush interval every `stats_flush_interval` (default 5 s) for as long as the
/// store lives: the interval quantiles of `/stats` cover the last complete interval.
fn start_stats_flush(b: &Bootstrap, store: &Arc<Store>) {
    let every = b
        .stats_flush_interval
        .as_ref()
        .and_then(|d| config::duration(Some(d)))
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(5));
    let store = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(s) = store.upgrade() else { return };
            s.flush();
        }
    });
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
    /// Lifecycle (what `/ready` and `/server_info` report) and the admin's switches.
    pub status: Arc<ServerStatus>,
    /// The admin server, when the bootstrap has an `admin.address`.
    pub admin: Option<Admin>,
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
        let stats = stats_store(&bootstrap)?;
        start_stats_flush(&bootstrap, &stats);
        let world = World::new(stats);
        let concurrency = worker_threads(&options);
        let status = Arc::new(ServerStatus::new(
            &world.stats,
            concurrency,
            options.restart_epoch,
        ));
        world.load_static(&bootstrap)?;
        let listeners =
            ListenerManager::new(world.clone(), Duration::from_secs(options.drain_time_s));
        let admin_ctx = Arc::new(AdminCtx {
            world: world.clone(),
            listeners: listeners.clone(),
            bootstrap: Arc::new(bootstrap.clone()),
            options: options.clone(),
            concurrency,
            status: status.clone(),
            xds: Default::default(),
        });
        // The admin answers (503 on /ready) while the rest starts.
        let admin = match bootstrap.admin.as_ref().and_then(|a| a.address.as_ref()) {
            Some(a) => {
                let address = config::Address::from_proto(a).within("admin.address")?;
                Some(
                    admin::start(&address, admin_ctx.clone()).map_err(|source| BindError {
                        name: "admin".into(),
                        address: address.to_string(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        status.set_initializing();
        listeners.apply(&world.listeners.load())?;
        let xds = match &bootstrap.dynamic_resources {
            Some(_) => Some(crate::xds::Xds::start(
                &bootstrap,
                world.clone(),
                listeners.clone(),
            )?),
            None => None,
        };
        match &xds {
            Some(x) => {
                let _ = admin_ctx.xds.set(x.clone());
                let (x, status) = (x.clone(), status.clone());
                tokio::spawn(async move {
                    x.wait_initialized().await;
                    status.set_live();
                });
            }
            None => status.set_live(),
        }
        memory::release_free_memory();
        info!(version = env!("CARGO_PKG_VERSION"), "tern started");
        Ok(Server {
            world,
            listeners,
            bootstrap,
            options,
            xds,
            status,
            admin,
        })
    }

    /// The admin's bound TCP address (the real port when the bootstrap said 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(Admin::local_addr)
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

/// `--concurrency`, or one worker per CPU.
fn worker_threads(options: &Options) -> usize {
    options
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Run tern as a process: `--mode validate` checks the configuration and returns; `serve`
/// runs until SIGTERM (drain, then exit) or SIGINT (exit at once).
pub fn run(options: Options) -> Result<(), ServerError> {
    if options.mode == "validate" {
        let b = load_bootstrap(&options)?;
        let world = World::new(stats_store(&b)?);
        let (clusters, _) = world.compile_static(&b)?;
        world.clusters.store(Arc::new(clusters));
        crate::xds::source::Plan::from_bootstrap(&b, &world)?;
        return Ok(());
    }
    let threads = worker_threads(&options);
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
        // SIGUSR1 reopens the access log files, as in Envoy (after logrotate moved them).
        let mut usr1 = signal(SignalKind::user_defined1())?;
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                info!("SIGUSR1: reopening access logs");
                crate::access_log::reopen_all();
            }
        });
        tokio::select! {
            _ = term.recv() => {
                info!("SIGTERM: draining");
                server.drain(Duration::from_secs(server.options.drain_time_s)).await;
            }
            _ = int.recv() => info!("SIGINT: exiting"),
            _ = server.status.quit.notified() => info!("quitquitquit: exiting"),
        }
        crate::access_log::flush_all();
        Ok(())
    })
}
