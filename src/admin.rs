//! The admin API: Envoy's admin endpoints, with Envoy's paths, parameters and output shapes,
//! because `istioctl`, pilot-agent, Prometheus and Kubernetes probes already speak them.
//!
//! The admin server runs on a thread and runtime of its own, so a busy data path cannot starve
//! it (and a slow `/config_dump` cannot slow the data path). It reads snapshots and stats
//! only; its few writes go through the [`ListenerManager`] (drain), the [`ServerStatus`]
//! (health check, quit) and the logging setup.

mod certs;
mod clusters;
pub mod config_dump;
mod endpoints;
pub mod json;
pub mod status;

pub use status::ServerStatus;

use crate::config::Address;
use crate::listener::{self, ListenerManager, Socket};
use crate::server::Options;
use crate::snapshot::World;
use bytes::Bytes;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// What the admin endpoints read.
pub struct AdminCtx {
    /// The compiled world (snapshots and stats).
    pub world: Arc<World>,
    /// The running listeners.
    pub listeners: Arc<ListenerManager>,
    /// The bootstrap as loaded.
    pub bootstrap: Arc<Bootstrap>,
    /// The command line.
    pub options: Options,
    /// Worker threads in use.
    pub concurrency: usize,
    /// Lifecycle and admin switches.
    pub status: Arc<ServerStatus>,
    /// The xDS client, once started.
    pub xds: OnceLock<crate::xds::Xds>,
}

/// The running admin server.
pub struct Admin {
    local: Option<SocketAddr>,
    stop: watch::Sender<bool>,
}

impl Admin {
    /// The bound TCP address (the real port when the bootstrap said 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Bind `address` and serve the admin API on a thread of its own. Also refreshes the
/// `server.*` stats once a second.
pub fn start(address: &Address, ctx: Arc<AdminCtx>) -> io::Result<Admin> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let socket = {
        let _guard = rt.enter();
        listener::bind_address(address, false, 128)
    };
    // `start` runs inside the main runtime, where dropping another runtime would panic: shut
    // this one down without waiting.
    let socket = match socket {
        Ok(s) => s,
        Err(e) => {
            rt.shutdown_background();
            return Err(e);
        }
    };
    let local = socket.local_addr();
    info!(address = %address, ?local, "admin listening");
    let (stop, stop_rx) = watch::channel(false);
    std::thread::Builder::new()
        .name("tern-admin".into())
        .spawn(move || rt.block_on(serve(socket, ctx, stop_rx)))?;
    Ok(Admin { local, stop })
}

async fn serve(socket: Socket, ctx: Arc<AdminCtx>, mut stop: watch::Receiver<bool>) {
    // Envoy counts admin connections as the listener `admin`.
    let cx_total = ctx
        .world
        .stats
        .counter("listener.admin.downstream_cx_total");
    let cx_active = ctx.world.stats.gauge("listener.admin.downstream_cx_active");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {
                ctx.status.refresh(&ctx.world.stats);
                continue;
            }
            a = accept(&socket) => a,
        };
        match accepted {
            Ok(io) => {
                let ctx = ctx.clone();
                cx_total.inc();
                let active = ActiveConnection::new(&cx_active);
                tokio::spawn(async move {
                    let _active = active;
                    let svc = hyper::service::service_fn(move |req| {
                        let ctx = ctx.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(req, &ctx)) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if let Err(e) = builder.serve_connection(io, svc).await {
                        debug!(error = %e, "admin connection");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One open admin connection in `listener.admin.downstream_cx_active`.
struct ActiveConnection(crate::stats::Gauge);

impl ActiveConnection {
    fn new(g: &crate::stats::Gauge) -> Self {
        g.inc();
        ActiveConnection(g.clone())
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An accepted admin connection, TCP or Unix.
type Io = TokioIo<Box<dyn Stream>>;

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

async fn accept(socket: &Socket) -> io::Result<Io> {
    Ok(match socket {
        Socket::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            TokioIo::new(Box::new(s) as Box<dyn Stream>)
        }
        Socket::Unix(l) => TokioIo::new(Box::new(l.accept().await?.0) as Box<dyn Stream>),
    })
}

/// One admin request: method, path and the decoded query parameters in order.
#[derive(Debug, Clone)]
pub struct AdminRequest {
    /// The method.
    pub method: Method,
    /// The path without the query.
    pub path: String,
    /// `?a=b&c` → `[("a", "b"), ("c", "")]`, percent-decoded.
    pub params: Vec<(String, String)>,
    /// The raw query, if any.
    pub query: Option<String>,
}

impl AdminRequest {
    /// Whether the parameter is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.params.iter().any(|(k, _)| k == name)
    }
    /// The parameter's value, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An admin answer: status, content type, body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// `text/plain; charset=UTF-8`, `application/json`, `text/html; charset=UTF-8`…
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

/// Envoy's text content type.
pub const TEXT: &str = "text/plain; charset=UTF-8";
/// Envoy's JSON content type.
pub const JSON: &str = "application/json";

impl Reply {
    /// 200 with a text body.
    pub fn text(body: impl Into<Bytes>) -> Reply {
        Reply::with(StatusCode::OK, TEXT, body)
    }
    /// 200 with a JSON body.
    pub fn json(body: impl Into<Bytes>) -> Reply {
        Reply::with(StatusCode::OK, JSON, body)
    }
    /// Any status, type and body.
    pub fn with(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
        }
    }
    /// 400 with the reason as text.
    pub fn bad_request(reason: impl std::fmt::Display) -> Reply {
        Reply::with(StatusCode::BAD_REQUEST, TEXT, format!("{reason}\n"))
    }
}

fn handle(req: Request<Incoming>, ctx: &AdminCtx) -> Response<Full<Bytes>> {
    let query = req.uri().query().map(str::to_owned);
    let r = AdminRequest {
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        params: query
            .as_deref()
            .map(crate::protocol::query::parse)
            .unwrap_or_default(),
        query,
    };
    let reply = endpoints::dispatch(&r, ctx);
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}
