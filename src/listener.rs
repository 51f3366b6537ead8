//! The network layer: bind listening sockets (TCP on IPv4/IPv6, Unix `pipe`), accept
//! connections, choose a filter chain and hand the connection to its network filter. Listeners
//! are added, updated and removed as the listener snapshot changes: an updated listener keeps
//! its socket (new connections get the new filter chains, open ones finish on the old), a
//! removed one stops accepting and its connections drain.

use crate::config::Address;
use crate::proxy::{self, Drain, DrainMode};
use crate::snapshot::{Listener, ListenerMap, World};
use arc_swap::ArcSwap;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, warn};

mod conn;
mod inspect;
use conn::Io;

/// A bound listening socket.
#[derive(Debug)]
pub enum Socket {
    /// TCP.
    Tcp(TcpListener),
    /// Unix domain socket.
    Unix(UnixListener),
}

/// Bind a listener's address with its socket options.
pub fn bind(l: &Listener) -> io::Result<Socket> {
    bind_address(&l.address, l.reuse_port, l.backlog)
}

/// Bind `address` (TCP or Unix socket) and listen. Must run inside a tokio runtime (the socket
/// is registered with its reactor).
pub fn bind_address(address: &Address, reuse_port: bool, backlog: u32) -> io::Result<Socket> {
    match address {
        Address::Tcp(addr) => {
            use socket2::{Domain, Protocol, Socket as S, Type};
            let sock = S::new(
                Domain::for_address(*addr),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            sock.set_reuse_address(true)?;
            if reuse_port {
                sock.set_reuse_port(true)?;
            }
            if addr.is_ipv6() {
                sock.set_only_v6(!addr.ip().is_unspecified())?;
            }
            sock.set_nonblocking(true)?;
            sock.bind(&(*addr).into())?;
            sock.listen(backlog.min(i32::MAX as u32) as i32)?;
            Ok(Socket::Tcp(TcpListener::from_std(sock.into())?))
        }
        Address::Pipe(path) => {
            let s = path.to_string_lossy();
            if let Some(name) = s.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                let std = std::os::unix::net::UnixListener::bind_addr(&addr)?;
                std.set_nonblocking(true)?;
                Ok(Socket::Unix(UnixListener::from_std(std)?))
            } else {
                // A stale socket file from an earlier run would make bind fail.
                if std::fs::symlink_metadata(path).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                }) {
                    let _ = std::fs::remove_file(path);
                }
                Ok(Socket::Unix(UnixListener::bind(path)?))
            }
        }
        Address::Internal(name) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("internal listener {name} has no socket"),
        )),
    }
}

impl Socket {
    /// The bound address (with the real port when the config said 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Socket::Tcp(l) => l.local_addr().ok(),
            Socket::Unix(_) => None,
        }
    }
}

/// One generation of a running listener: its config and, per filter chain (the default chain
/// last), the drain signal of the connections it accepted. An in-place update starts a new
/// generation: chains that are unchanged keep their drain signal, so their connections go on
/// untouched (as Envoy's filter-chain-only update); connections of changed or removed chains
/// drain.
struct Generation {
    listener: Arc<Listener>,
    drains: Vec<Drain>,
}

/// The drain trigger of one filter chain, with the chain's proto to tell it from a changed one.
struct ChainDrain {
    source: Option<listener_pb::FilterChain>,
    trigger: watch::Sender<DrainMode>,
}

struct Running {
    config: Arc<ArcSwap<Generation>>,
    stop: watch::Sender<bool>,
    drains: Vec<ChainDrain>,
    local: Option<SocketAddr>,
}

/// The chain protos of a listener, in the order of its compiled chains, the default chain last.
fn chain_sources(l: &Listener) -> Vec<Option<listener_pb::FilterChain>> {
    let mut v: Vec<Option<listener_pb::FilterChain>> =
        l.source.filter_chains.iter().cloned().map(Some).collect();
    v.resize(l.chains.len(), None);
    v.push(l.source.default_filter_chain.clone());
    v
}

/// Owns the running listeners. Every listening socket of the process is reachable from here
/// (for drain and, later, hand-over to a new process).
pub struct ListenerManager {
    world: Arc<World>,
    running: Mutex<HashMap<String, Running>>,
    drain_time: Duration,
    runtime: tokio::runtime::Handle,
    /// `listener_manager.listener_stopped`.
    stopped: crate::stats::Counter,
}

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("listener {name}: cannot bind {address}: {source}")]
pub struct BindError {
    /// Listener name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Why.
    #[source]
    pub source: io::Error,
}

impl ListenerManager {
    /// A manager with no listeners. `drain_time` is `--drain-time-s`. Must be called inside
    /// the data path's runtime: accept loops are spawned there, whichever thread applies an
    /// update.
    pub fn new(world: Arc<World>, drain_time: Duration) -> Arc<Self> {
        Arc::new(Self {
            running: Mutex::new(HashMap::new()),
            drain_time,
            runtime: tokio::runtime::Handle::current(),
            stopped: world.stats.counter("listener_manager.listener_stopped"),
            world,
        })
    }

    /// Bring the running listeners in line with `listeners`: bind new ones, swap the config of
    /// changed ones (same address), drain removed ones.
    pub fn apply(&self, listeners: &ListenerMap) -> Result<(), BindError> {
        let removed: Vec<String> = {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running
                .keys()
                .filter(|k| !listeners.contains_key(*k))
                .cloned()
                .collect()
        };
        for name in removed {
            self.remove(&name);
        }
        for (name, l) in listeners {
            self.upsert(name, l)?;
        }
        Ok(())
    }

    /// Stop a listener: it stops accepting and its connections drain.
    pub fn remove(&self, name: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = running.remove(name) {
            info!(listener = %name, "listener removed; draining");
            self.retire(r);
        }
    }

    /// Start a listener, or update a running one. With the same address the socket is kept:
    /// new connections get the new filter chains and the connections of the old config are
    /// told to drain. A changed address rebinds.
    pub fn upsert(&self, name: &str, l: &Arc<Listener>) -> Result<(), BindError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = running.get_mut(name) {
            let cur = r.config.load();
            if Arc::ptr_eq(&cur.listener, l) || cur.listener.source == l.source {
                return Ok(());
            }
            if cur.listener.address == l.address && cur.listener.bind_to_port == l.bind_to_port {
                let mut old = std::mem::take(&mut r.drains);
                let mut drains = Vec::new();
                let mut generation = Vec::new();
                let mut kept = 0;
                for source in chain_sources(l) {
                    let same = old
                        .iter()
                        .position(|d| source.is_some() && d.source == source);
                    let trigger = match same {
                        Some(i) => {
                            kept += 1;
                            old.swap_remove(i).trigger
                        }
                        None => watch::channel(DrainMode::None).0,
                    };
                    generation.push(Drain::from_trigger(&trigger, self.drain_time));
                    drains.push(ChainDrain { source, trigger });
                }
                debug!(listener = %name, kept, drained = old.len(), "listener updated in place");
                r.config.store(Arc::new(Generation {
                    listener: l.clone(),
                    drains: generation,
                }));
                r.drains = drains;
                for d in old {
                    let _ = d.trigger.send(DrainMode::Graceful);
                }
                return Ok(());
            }
            if let Some(r) = running.remove(name) {
                self.retire(r);
            }
        }
        let mut drains = Vec::new();
        let mut generation = Vec::new();
        for source in chain_sources(l) {
            let trigger = watch::channel(DrainMode::None).0;
            generation.push(Drain::from_trigger(&trigger, self.drain_time));
            drains.push(ChainDrain { source, trigger });
        }
        let config = Arc::new(ArcSwap::from_pointee(Generation {
            listener: l.clone(),
            drains: generation,
        }));
        let (stop, stop_rx) = watch::channel(false);
        if !l.bind_to_port || matches!(l.address, Address::Internal(_)) {
            // Reached only by hand-off from a use_original_dst listener, or (internal
            // listeners) from an internal upstream connection: both come with the sidecar
            // work.
            running.insert(
                name.to_string(),
                Running {
                    config,
                    stop,
                    drains,
                    local: None,
                },
            );
            return Ok(());
        }
        let socket = {
            // Binding registers the socket with the reactor of the current runtime.
            let _guard = self.runtime.enter();
            bind(l).map_err(|source| BindError {
                name: name.to_string(),
                address: l.address.to_string(),
                source,
            })?
        };
        let local = socket.local_addr();
        info!(listener = %name, address = %l.address, ?local, "listening");
        self.runtime.spawn(accept_loop(
            socket,
            config.clone(),
            self.world.clone(),
            stop_rx,
        ));
        running.insert(
            name.to_string(),
            Running {
                config,
                stop,
                drains,
                local,
            },
        );
        Ok(())
    }

    fn retire(&self, r: Running) {
        let _ = r.stop.send(true);
        for d in &r.drains {
            let _ = d.trigger.send(DrainMode::Graceful);
        }
    }

    /// The bound address of a listener (useful when the config asked for port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.running.lock().ok()?.get(name).and_then(|r| r.local)
    }

    /// Stop accepting on every listener and tell open connections to drain.
    pub fn drain_all(&self) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for r in running.values() {
            let _ = r.stop.send(true);
            for d in &r.drains {
                let _ = d.trigger.send(DrainMode::Now);
            }
        }
    }

    /// The admin's `/drain_listeners`: on every listener (with `inbound_only`, those whose
    /// `traffic_direction` is INBOUND), stop accepting at once; or, `graceful`, tell their
    /// connections to drain (HTTP/1 responses get `Connection: close`, HTTP/2 a GOAWAY) while
    /// still accepting, and stop accepting after `--drain-time-s` unless `skip_exit`.
    pub fn drain_listeners(&self, inbound_only: bool, graceful: bool, skip_exit: bool) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let inbound = envoy_types::pb::envoy::config::core::v3::TrafficDirection::Inbound as i32;
        let mut stops = Vec::new();
        for (name, r) in running.iter() {
            if inbound_only && r.config.load().listener.source.traffic_direction != inbound {
                continue;
            }
            info!(listener = %name, graceful, "draining listener (admin)");
            if graceful {
                for d in &r.drains {
                    let _ = d.trigger.send(DrainMode::Graceful);
                }
                if !skip_exit {
                    stops.push(r.stop.clone());
                }
            } else {
                let _ = r.stop.send(true);
                self.stopped.inc();
            }
        }
        if stops.is_empty() {
            return;
        }
        let drain_time = self.drain_time;
        let stopped = self.stopped.clone();
        self.runtime.spawn(async move {
            tokio::time::sleep(drain_time).await;
            for s in stops {
                let _ = s.send(true);
                stopped.inc();
            }
        });
    }

    /// `--drain-time-s`.
    pub fn drain_time(&self) -> Duration {
        self.drain_time
    }
}

async fn accept_loop(
    socket: Socket,
    config: Arc<ArcSwap<Generation>>,
    world: Arc<World>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = accept(&socket) => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (io, local, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let generation = config.load_full();
        let id = proxy::next_conn_id();
        let span =
            tracing::debug_span!("conn", listener = %generation.listener.name, id, peer = ?remote);
        let accepted = conn::Accepted {
            io,
            id,
            local,
            remote,
        };
        tokio::spawn(conn::run(accepted, generation, world.clone()).instrument(span));
    }
}

async fn accept(socket: &Socket) -> io::Result<(Io, Option<SocketAddr>, Option<SocketAddr>)> {
    match socket {
        Socket::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            let local = s.local_addr().ok();
            Ok((Io::Tcp(s), local, Some(peer)))
        }
        Socket::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok((Io::Unix(s), None, None))
        }
    }
}
