//! The server's lifecycle as the admin reports it (`/ready`, `/server_info`, `server.state`),
//! and the `server.*` stats, refreshed once a second and before every stats answer.

use crate::stats::{Gauge, Store};
use envoy_types::pb::envoy::admin::v3::server_info::State;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Instant, SystemTime};

/// Where the server is in its life, and the admin's switches on it.
#[derive(Debug)]
pub struct ServerStatus {
    /// Initialization: PRE_INITIALIZING, INITIALIZING, then LIVE.
    init: AtomicU8,
    /// `/healthcheck/fail` (until `/healthcheck/ok`).
    health_failed: AtomicBool,
    /// A drain sequence started (`/drain_listeners`, SIGTERM).
    draining: AtomicBool,
    /// When the server started.
    pub started: Instant,
    /// The same, on the wall clock.
    pub started_at: SystemTime,
    /// Fired by `/quitquitquit`: the process exits.
    pub quit: tokio::sync::Notify,
    stats: ServerStats,
}

#[derive(Debug)]
struct ServerStats {
    state: Gauge,
    live: Gauge,
    uptime: Gauge,
    concurrency: Gauge,
    memory_allocated: Gauge,
    memory_heap_size: Gauge,
    memory_physical_size: Gauge,
    total_connections: Gauge,
    hot_restart_epoch: Gauge,
    version: Gauge,
    days_until_first_cert_expiring: Gauge,
    workers_started: Gauge,
}

impl ServerStatus {
    /// A server that has not started initializing; `concurrency` and `restart_epoch` are
    /// reported as `server.concurrency` and `server.hot_restart_epoch`.
    pub fn new(store: &Store, concurrency: usize, restart_epoch: u32) -> Self {
        let g = |n: &str| store.gauge(n);
        let stats = ServerStats {
            state: g("server.state"),
            live: g("server.live"),
            uptime: g("server.uptime"),
            concurrency: g("server.concurrency"),
            memory_allocated: g("server.memory_allocated"),
            memory_heap_size: g("server.memory_heap_size"),
            memory_physical_size: g("server.memory_physical_size"),
            total_connections: g("server.total_connections"),
            hot_restart_epoch: g("server.hot_restart_epoch"),
            version: g("server.version"),
            days_until_first_cert_expiring: g("server.days_until_first_cert_expiring"),
            workers_started: g("listener_manager.workers_started"),
        };
        stats.concurrency.set(concurrency as i64);
        stats.hot_restart_epoch.set(i64::from(restart_epoch));
        stats.version.set(version_number());
        // No certificate loaded: Envoy reports the maximum (u32::MAX) days.
        stats
            .days_until_first_cert_expiring
            .set(i64::from(u32::MAX));
        stats.workers_started.set(0);
        let s = Self {
            init: AtomicU8::new(State::PreInitializing as u8),
            health_failed: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            started: Instant::now(),
            started_at: SystemTime::now(),
            quit: tokio::sync::Notify::new(),
            stats,
        };
        s.refresh(store);
        s
    }

    /// The state Envoy would report: DRAINING once draining or health-check failed, else the
    /// initialization state.
    pub fn state(&self) -> State {
        if self.health_failed.load(Ordering::Relaxed) || self.draining.load(Ordering::Relaxed) {
            return State::Draining;
        }
        match self.init.load(Ordering::Relaxed) {
            x if x == State::Initializing as u8 => State::Initializing,
            x if x == State::Live as u8 => State::Live,
            _ => State::PreInitializing,
        }
    }

    /// Initialization has begun (static configuration loaded, dynamic being fetched).
    pub fn set_initializing(&self) {
        let _ = self.init.compare_exchange(
            State::PreInitializing as u8,
            State::Initializing as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Initialization is done: the server is live and its workers serve.
    pub fn set_live(&self) {
        self.init.store(State::Live as u8, Ordering::Relaxed);
        self.stats.workers_started.set(1);
    }

    /// `/healthcheck/fail` (true) or `/healthcheck/ok` (false).
    pub fn set_health_failed(&self, failed: bool) {
        self.health_failed.store(failed, Ordering::Relaxed);
    }

    /// Whether `/healthcheck/fail` is in force.
    pub fn health_failed(&self) -> bool {
        self.health_failed.load(Ordering::Relaxed)
    }

    /// A drain sequence has started.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Refresh the `server.*` gauges that change by themselves.
    pub fn refresh(&self, store: &Store) {
        let s = &self.stats;
        let state = self.state();
        s.state.set(state as i64);
        s.live.set(i64::from(state == State::Live));
        s.uptime.set(self.started.elapsed().as_secs() as i64);
        let mem = crate::server::memory::usage();
        s.memory_allocated.set(mem.allocated as i64);
        s.memory_heap_size.set(mem.heap_size as i64);
        s.memory_physical_size.set(mem.resident as i64);
        let connections: i64 = store
            .gauges()
            .into_iter()
            .filter(|(n, _)| n.starts_with("listener.") && n.ends_with(".downstream_cx_active"))
            .map(|(_, v)| v)
            .sum();
        s.total_connections.set(connections);
    }
}

/// The version as one number, as Envoy's `server.version` (its revision's first 24 bits);
/// tern has no revision: major, minor and patch in 8 bits each.
fn version_number() -> i64 {
    let part = |s: &str| s.parse::<i64>().unwrap_or(0) & 0xff;
    (part(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
        | (part(env!("CARGO_PKG_VERSION_MINOR")) << 8)
        | part(env!("CARGO_PKG_VERSION_PATCH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_follows_envoy() {
        let store = Store::new();
        let s = ServerStatus::new(&store, 2, 0);
        assert_eq!(s.state(), State::PreInitializing);
        assert_eq!(store.counter_value("server.state"), None);
        let gauge = |n: &str| {
            store
                .gauges()
                .into_iter()
                .find(|(k, _)| k == n)
                .map(|x| x.1)
        };
        assert_eq!(gauge("server.state"), Some(2));
        s.set_initializing();
        assert_eq!(s.state(), State::Initializing);
        s.set_live();
        s.refresh(&store);
        assert_eq!(gauge("server.state"), Some(0));
        assert_eq!(gauge("server.live"), Some(1));
        assert_eq!(gauge("listener_manager.workers_started"), Some(1));
        s.set_health_failed(true);
        assert_eq!(s.state(), State::Draining);
        s.refresh(&store);
        assert_eq!(gauge("server.live"), Some(0));
        s.set_health_failed(false);
        assert_eq!(s.state(), State::Live);
        assert_eq!(gauge("server.concurrency"), Some(2));
    }
}
