//! The xDS client: tern follows a control plane (istiod, or pilot-agent's XDS socket) over
//! gRPC, state of the world or delta, with ADS or one stream per source, and from files
//! (`path_config_source`). It is the only writer of the dynamic part of [`World`].
//!
//! Pieces:
//! - [`source`]: the bootstrap's `dynamic_resources` and every `ConfigSource` resolved to a
//!   [`source::SourceKey`] (ADS, a gRPC stream to a static cluster, or a file).
//! - [`store`]: the resources tern holds, their versions, warming, dependencies (CDS→EDS,
//!   LDS→RDS, both →SDS) and initialization; each accepted update compiles and swaps snapshots.
//! - [`mux`]: one gRPC stream (SotW or delta) with its nonces, versions, ACK/NACK and
//!   subscriptions; reconnects with jittered exponential back-off.
//! - [`file`]: LDS/CDS from a file, reloaded when it changes.
//!
//! Everything here runs on its own thread with its own runtime, so compiling a large push never
//! takes a worker thread from the data path; the data path only sees the `ArcSwap` stores.

pub mod file;
mod grpc;
pub mod mux;
pub mod node;
pub mod source;
pub mod stats;
pub mod store;

use crate::listener::ListenerManager;
use crate::snapshot::World;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub use source::SourceKey;
pub use store::{InitState, Store};

/// A resource type tern subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// CDS: `envoy.config.cluster.v3.Cluster`.
    Cluster,
    /// EDS: `envoy.config.endpoint.v3.ClusterLoadAssignment`.
    Endpoint,
    /// LDS: `envoy.config.listener.v3.Listener`.
    Listener,
    /// RDS: `envoy.config.route.v3.RouteConfiguration`.
    Route,
    /// SDS: `envoy.extensions.transport_sockets.tls.v3.Secret`.
    Secret,
}

impl Kind {
    /// Every kind, in the order Envoy subscribes on a fresh stream (CDS, EDS, LDS, RDS, SDS).
    pub const ALL: [Kind; 5] = [
        Kind::Cluster,
        Kind::Endpoint,
        Kind::Listener,
        Kind::Route,
        Kind::Secret,
    ];

    /// The v3 type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            Kind::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Kind::Endpoint => "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            Kind::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            Kind::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            Kind::Secret => "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        }
    }

    /// The kind of a type URL.
    pub fn from_type_url(url: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_url() == url)
    }

    /// Whether a state-of-the-world response lists every resource of this kind, so that an
    /// absent one is removed (LDS, CDS), rather than only the subscribed ones (RDS, EDS, SDS).
    pub fn is_wildcard(self) -> bool {
        matches!(self, Kind::Cluster | Kind::Listener)
    }

    /// Short name for logs: `cds`, `eds`, `lds`, `rds`, `sds`.
    pub fn short(self) -> &'static str {
        match self {
            Kind::Cluster => "cds",
            Kind::Endpoint => "eds",
            Kind::Listener => "lds",
            Kind::Route => "rds",
            Kind::Secret => "sds",
        }
    }
}

/// What the xDS tasks share: the store (behind a mutex held only while an update is applied,
/// never by the data path) and a signal that fires whenever the set of resources tern wants
/// changes, so each stream can update its subscriptions.
pub struct Shared {
    /// Resources, warming and snapshots.
    pub store: Mutex<Store>,
    /// Bumped when [`Store::interest`] may have changed.
    pub interest: watch::Sender<u64>,
}

impl Shared {
    /// Run `f` on the store, then wake the streams if the interest changed.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut store);
        if store.take_interest_changed() {
            self.interest.send_modify(|g| *g += 1);
        }
        r
    }
}

/// A handle on the running xDS client.
#[derive(Clone)]
pub struct Xds {
    shared: Arc<Shared>,
    init: watch::Receiver<InitState>,
}

impl Xds {
    /// Resolve the bootstrap's `dynamic_resources`, and start the streams and file watchers on
    /// a thread of their own. Returns at once; [`Xds::wait_initialized`] waits for the first
    /// configuration. With no dynamic resources the client is initialized at once.
    pub fn start(
        bootstrap: &Bootstrap,
        world: Arc<World>,
        listeners: Arc<ListenerManager>,
    ) -> Result<Xds, crate::config::ConfigError> {
        let plan = source::Plan::from_bootstrap(bootstrap, &world)?;
        let node = node::node(bootstrap);
        let store = Store::new(world, listeners, plan.clone());
        let init = store.init_receiver();
        let (interest, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            interest,
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("tern-xds".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "xds: cannot start its runtime");
                        return;
                    }
                };
                rt.block_on(run(plan, node, thread_shared));
            })
            .map_err(|e| crate::config::ConfigError::new("dynamic_resources", e.to_string()))?;
        Ok(Xds { shared, init })
    }

    /// Wait until the first configuration (and what it depends on) is in, or every initial
    /// fetch timed out.
    pub async fn wait_initialized(&self) {
        let mut rx = self.init.clone();
        let _ = rx.wait_for(|s| *s == InitState::Initialized).await;
    }

    /// The current initialization state.
    pub fn init_state(&self) -> InitState {
        *self.init.borrow()
    }

    /// Run `f` on the store (for the admin endpoints and tests).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        self.shared.with_store(f)
    }
}

async fn run(
    plan: source::Plan,
    node: envoy_types::pb::envoy::config::core::v3::Node,
    shared: Arc<Shared>,
) {
    let node = Arc::new(node);
    let mut started: std::collections::HashSet<(SourceKey, Option<Kind>)> = Default::default();
    let mut interest = shared.interest.subscribe();
    // Warming deadlines and initial fetch timeouts.
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A stream (or file watch) for every source something is wanted from; ADS carries
        // every type on one stream, other sources one stream per type.
        let wanted = shared.with_store(|s| s.sources());
        for (src, kind) in wanted {
            let unit = match src {
                SourceKey::Ads => (SourceKey::Ads, None),
                _ => (src.clone(), Some(kind)),
            };
            if !started.insert(unit) {
                continue;
            }
            match &src {
                SourceKey::Ads | SourceKey::Grpc { .. } => {
                    let Some(settings) = plan.grpc_settings(&src) else {
                        continue;
                    };
                    let kinds = match src {
                        SourceKey::Ads => Kind::ALL.to_vec(),
                        _ => vec![kind],
                    };
                    tokio::spawn(mux::run(src, kinds, settings, node.clone(), shared.clone()));
                }
                SourceKey::Path(path) => {
                    tokio::spawn(file::watch(path.clone(), kind, shared.clone()));
                }
            }
        }
        tokio::select! {
            _ = tick.tick() => shared.with_store(|s| s.expire(std::time::Instant::now())),
            _ = interest.changed() => {}
        }
    }
}
